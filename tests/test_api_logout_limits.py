"""Logout shares refresh's rate limits (API_CONTRACT.md §2 "Rate limits"), against a server with
low ones: per client address before the token is decoded, per account after.

Requests come from distinct loopback addresses (127.x.y.z all reach the server on Linux), so
one address can be emptied while the others are still served.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import server_env
from tests.support.api import Response, expect_error
from tests.support.processes import MessengerServer

LIMITS = {"AUTH_LIMIT_REFRESH_PER_IP": "3/60", "AUTH_LIMIT_REFRESH_PER_ACCOUNT": "4/60"}

_addresses = (f"127.{b}.{c}.{d}" for b in range(60, 250) for c in range(256)
              for d in range(1, 255))


@pytest.fixture(scope="module")
def limited(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MessengerServer]:
    env = {**server_env("sqlite", request, str(tmp_path_factory.mktemp("logout"))), **LIMITS}
    proc = MessengerServer(env).start()
    yield proc
    proc.stop()


async def post(server: MessengerServer, address: str, path: str, body: Any) -> Response:
    resp = await AsyncHTTPClient().fetch(
        HTTPRequest(server.base_url + path, method="POST", body=orjson.dumps(body),
                    headers={"Content-Type": "application/json"}, network_interface=address,
                    request_timeout=30),
        raise_error=False,
    )
    if resp.code == 599:
        raise ConnectionError(f"POST {path} from {address}: {resp.error}")
    return Response(resp.code, resp.body or b"", dict(resp.headers))


async def register(server: MessengerServer) -> dict[str, Any]:
    email = f"out-{uuid.uuid4().hex[:12]}@example.com"
    resp = await post(server, next(_addresses), "/api/auth/register",
                      {"email": email, "password": "correct horse battery", "display_name": "O"})
    assert resp.status == 201, resp.body
    return resp.json


def expect_limited(resp: Response) -> None:
    error = expect_error(resp, 429, "rate_limited")
    assert int(resp.header("Retry-After")) == error["retry_after"] >= 1


async def test_logouts_and_refreshes_share_the_per_address_limit(limited: MessengerServer) -> None:
    address = next(_addresses)
    first, second = await register(limited), await register(limited)
    resp = await post(limited, address, "/api/auth/refresh",
                      {"refresh_token": first["refresh_token"]})
    assert resp.status == 200, resp.body
    for account in (first, second):
        resp = await post(limited, address, "/api/auth/logout",
                          {"refresh_token": account["refresh_token"]})
        assert resp.status == 204, resp.body
    # the address's 3 are used: checked before the token is decoded, so garbage gets 429 too
    third = await register(limited)
    expect_limited(await post(limited, address, "/api/auth/logout",
                              {"refresh_token": third["refresh_token"]}))
    expect_limited(await post(limited, address, "/api/auth/logout", {"refresh_token": "junk"}))
    expect_limited(await post(limited, address, "/api/auth/refresh",
                              {"refresh_token": third["refresh_token"]}))
    # another address is served, and the refused logout revoked nothing
    resp = await post(limited, next(_addresses), "/api/auth/refresh",
                      {"refresh_token": third["refresh_token"]})
    assert resp.status == 200, resp.body


async def test_logouts_count_against_the_per_account_limit(limited: MessengerServer) -> None:
    account = await register(limited)
    token = account["refresh_token"]
    for _ in range(3):  # each from its own address: only the account's limit fills
        resp = await post(limited, next(_addresses), "/api/auth/refresh", {"refresh_token": token})
        assert resp.status == 200, resp.body
        token = resp.json["refresh_token"]
    resp = await post(limited, next(_addresses), "/api/auth/logout", {"refresh_token": token})
    assert resp.status == 204, resp.body  # the account's 4th
    expect_limited(await post(limited, next(_addresses), "/api/auth/logout",
                              {"refresh_token": token}))
    # per account: another account's logout from a fresh address is served
    other = await register(limited)
    resp = await post(limited, next(_addresses), "/api/auth/logout",
                      {"refresh_token": other["refresh_token"]})
    assert resp.status == 204, resp.body
