"""Rate limits of the auth endpoints (API_CONTRACT.md §2), against a server with low limits.

Clients bind their sockets to distinct loopback addresses (127.x.y.z all reach the server on
Linux), so the server sees distinct client addresses: one address can be flooded while another
is still served, and a per-account limit can be reached from many addresses.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import server_env
from tests.support.api import Response, expect_error
from tests.support.processes import MessengerServer

PASSWORD = "correct horse battery"
LIMITS = {
    "AUTH_LIMIT_LOGIN_PER_IP": "5/60",
    "AUTH_LIMIT_LOGIN_FAILURES_PER_ACCOUNT": "8/600",
    "AUTH_LIMIT_REGISTER_PER_IP": "4/3600",
    "AUTH_LIMIT_REGISTER_PER_EMAIL": "2/3600",
    "AUTH_LIMIT_REFRESH_PER_IP": "3/60",
    "AUTH_LIMIT_REFRESH_PER_ACCOUNT": "4/60",
    "AUTH_LIMIT_RESEND_PER_IP": "2/3600",
    "AUTH_LIMIT_RESEND_PER_ACCOUNT": "3/3600",
    "AUTH_LIMIT_RESET_PER_IP": "3/3600",
    "AUTH_LIMIT_RESET_PER_EMAIL": "2/3600",
    "AUTH_LIMIT_RESET_CONFIRM_PER_IP": "2/3600",
    "EMAIL_RESEND_INTERVAL_SECONDS": "0",  # only the limits under test refuse resends
}

_addresses = (f"127.{b}.{c}.{d}" for b in range(10, 250) for c in range(256)
              for d in range(1, 255))


def fresh_address() -> str:
    """A loopback address no other request of this module has used."""
    return next(_addresses)


def start(request: pytest.FixtureRequest, tmp: str, **extra: str) -> MessengerServer:
    return MessengerServer({**server_env("sqlite", request, tmp), **LIMITS, **extra}).start()


@pytest.fixture(scope="module")
def limited(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MessengerServer]:
    proc = start(request, str(tmp_path_factory.mktemp("limits")))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def slow_hash(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MessengerServer]:
    """Production's bcrypt cost: a login costs what it would in production."""
    proc = start(request, str(tmp_path_factory.mktemp("slow")), BCRYPT_ROUNDS="12")
    yield proc
    proc.stop()


class Client:
    """Requests to one server from one source address."""

    def __init__(self, server: MessengerServer, address: str | None = None) -> None:
        self.base_url = server.base_url
        self.address = address or fresh_address()

    async def post(self, path: str, body: Any = None, *, token: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        resp = await AsyncHTTPClient().fetch(
            HTTPRequest(self.base_url + path, method="POST",
                        body=orjson.dumps(body) if body is not None else b"",
                        headers=hdrs, network_interface=self.address, request_timeout=60),
            raise_error=False,
        )
        if resp.code == 599:
            raise ConnectionError(f"POST {path} from {self.address}: {resp.error}")
        return Response(resp.code, resp.body or b"", dict(resp.headers))

    async def register(self, email: str | None = None) -> dict[str, Any]:
        email = email or new_email()
        resp = await self.post("/api/auth/register",
                               {"email": email, "password": PASSWORD, "display_name": "R"})
        assert resp.status == 201, resp.body
        return {**resp.json, "email": email}

    async def login(self, email: str, password: str = PASSWORD) -> Response:
        return await self.post("/api/auth/login", {"email": email, "password": password})


def new_email() -> str:
    return f"lim-{uuid.uuid4().hex[:12]}@example.com"


async def register(server: MessengerServer) -> dict[str, Any]:
    """A new account, registered from an address of its own (so no limit is touched)."""
    return await Client(server).register()


def expect_limited(resp: Response) -> int:
    """A 429 ``rate_limited`` with a Retry-After header equal to ``retry_after``; returns it."""
    error = expect_error(resp, 429, "rate_limited")
    retry_after = int(resp.header("Retry-After"))
    assert retry_after >= 1 and error["retry_after"] == retry_after, (resp.headers, error)
    return retry_after


# -- login -----------------------------------------------------------------------------------------
async def test_wrong_logins_from_one_address_get_429_and_others_are_served(
    limited: MessengerServer,
) -> None:
    victim = await register(limited)
    attacker = Client(limited)
    for _ in range(5):
        expect_error(await attacker.login(victim["email"], "wrong password"), 401,
                     "invalid_credentials")
    retry_after = expect_limited(await attacker.login(victim["email"], "wrong password"))
    assert retry_after <= 12  # 5 per 60 s: the next attempt is allowed within 12 s
    # Refused before the password is checked: the right password is refused the same way,
    # and a forged X-Forwarded-For from an untrusted peer changes nothing.
    expect_limited(await attacker.login(victim["email"]))
    spoofed = await attacker.post("/api/auth/login",
                                  {"email": victim["email"], "password": PASSWORD},
                                  headers={"X-Forwarded-For": "203.0.113.9"})
    expect_limited(spoofed)
    # Another address: the owner logs in (5 failures are below the per-account limit).
    resp = await Client(limited).login(victim["email"])
    assert resp.status == 200, resp.body


async def test_failed_logins_per_account_are_limited_across_addresses(
    limited: MessengerServer,
) -> None:
    victim, other = await register(limited), await register(limited)
    for _ in range(4):  # 4 addresses x 2 failures = the per-account limit of 8
        client = Client(limited)
        for _ in range(2):
            expect_error(await client.login(victim["email"], "guess"), 401,
                         "invalid_credentials")
    fresh = Client(limited)
    error_resp = await fresh.login(victim["email"], "guess")
    expect_limited(error_resp)
    assert "account" in error_resp.json["error"]["message"]
    expect_limited(await fresh.login(victim["email"]))  # the documented lock-out, for a while
    # Other accounts, from the same fresh address, are not affected.
    resp = await fresh.login(other["email"])
    assert resp.status == 200, resp.body


async def test_successful_logins_do_not_count_against_the_account(
    limited: MessengerServer,
) -> None:
    account = await register(limited)
    for _ in range(12):  # more than the 8 failures allowed, each from its own address
        resp = await Client(limited).login(account["email"])
        assert resp.status == 200, resp.body


async def test_a_login_flood_costs_no_bcrypt_and_a_real_login_stays_fast(
    slow_hash: MessengerServer,
) -> None:
    """16 concurrent loops of wrong logins from 127.0.0.1: after the burst of 5 each attempt
    gets 429 without hashing, so the owner's login from 127.0.0.2 takes what it takes alone."""
    victim = await Client(slow_hash, "127.0.0.3").register()
    owner = Client(slow_hash, "127.0.0.2")
    began = time.monotonic()
    resp = await owner.login(victim["email"])
    alone = time.monotonic() - began
    assert resp.status == 200, resp.body

    attacker = Client(slow_hash, "127.0.0.1")
    statuses: Counter[int] = Counter()
    stop = asyncio.Event()

    async def flood() -> None:
        while not stop.is_set():
            resp = await attacker.login(victim["email"], "wrong password")
            statuses[resp.status] += 1

    flood_began = time.monotonic()
    loops = [asyncio.create_task(flood()) for _ in range(16)]
    try:
        deadline = time.monotonic() + 30
        # The burst of 5 has been hashed and answered, and the flood is being refused.
        while statuses[401] < 5 or statuses[429] < 64:
            assert time.monotonic() < deadline, statuses
            assert not any(loop.done() for loop in loops), [loop for loop in loops if loop.done()]
            await asyncio.sleep(0.01)
        began = time.monotonic()
        resp = await owner.login(victim["email"])
        during = time.monotonic() - began
        assert resp.status == 200, resp.body
    finally:
        stop.set()
        await asyncio.gather(*loops)
    flood_seconds = time.monotonic() - flood_began
    # Only the burst (plus what refilled meanwhile, one per 12 s) reached bcrypt.
    assert statuses[401] <= 5 + 1 + flood_seconds / 12, statuses
    assert set(statuses) == {401, 429}, statuses
    assert during < max(1.5, 3 * alone), (during, alone, statuses)


# -- register --------------------------------------------------------------------------------------
async def test_registrations_are_limited_per_address_and_per_email(
    limited: MessengerServer,
) -> None:
    client = Client(limited)
    for _ in range(4):
        await client.register()
    refused = new_email()
    expect_limited(await client.post(
        "/api/auth/register", {"email": refused, "password": PASSWORD, "display_name": "R"}))
    # refused before anything was stored: the email is still free
    await Client(limited).register(refused)

    email = new_email()
    body = {"email": email, "password": PASSWORD, "display_name": "R"}
    assert (await Client(limited).post("/api/auth/register", body)).status == 201
    expect_error(await Client(limited).post("/api/auth/register", body), 409, "email_taken")
    expect_limited(await Client(limited).post("/api/auth/register", body))


# -- refresh ---------------------------------------------------------------------------------------
async def test_refreshes_are_limited_per_address_and_per_account(
    limited: MessengerServer,
) -> None:
    account = await register(limited)
    client = Client(limited)
    token = account["refresh_token"]
    for _ in range(3):
        resp = await client.post("/api/auth/refresh", {"refresh_token": token})
        assert resp.status == 200, resp.body
        token = resp.json["refresh_token"]
    expect_limited(await client.post("/api/auth/refresh", {"refresh_token": token}))
    # the refused token was not spent: it works from elsewhere (4th refresh of the account)
    resp = await Client(limited).post("/api/auth/refresh", {"refresh_token": token})
    assert resp.status == 200, resp.body
    token = resp.json["refresh_token"]
    # ...and that was the account's 4th in the window: the 5th is refused, from anywhere
    resp = await Client(limited).post("/api/auth/refresh", {"refresh_token": token})
    expect_limited(resp)
    assert "account" in resp.json["error"]["message"]
    other = await register(limited)
    resp = await Client(limited).post("/api/auth/refresh",
                                      {"refresh_token": other["refresh_token"]})
    assert resp.status == 200, resp.body


# -- verification resend ---------------------------------------------------------------------------
async def test_verification_resends_are_limited_per_address_and_per_account(
    limited: MessengerServer,
) -> None:
    first, second = await register(limited), await register(limited)
    client = Client(limited)
    for who in (first, second):
        resp = await client.post("/api/auth/verify/resend", token=who["access_token"])
        assert resp.status == 202, resp.body
    expect_limited(await client.post("/api/auth/verify/resend", token=first["access_token"]))

    account = await register(limited)
    for _ in range(3):
        resp = await Client(limited).post("/api/auth/verify/resend",
                                          token=account["access_token"])
        assert resp.status == 202, resp.body
    expect_limited(await Client(limited).post("/api/auth/verify/resend",
                                              token=account["access_token"]))


# -- password reset --------------------------------------------------------------------------------
async def test_reset_requests_are_limited_per_address_and_per_email(
    limited: MessengerServer,
) -> None:
    client = Client(limited)
    for _ in range(3):
        resp = await client.post("/api/auth/password-reset/request", {"email": new_email()})
        assert resp.status == 202, resp.body
    expect_limited(await client.post("/api/auth/password-reset/request", {"email": new_email()}))

    # per email, whether or not an account has it (a 429 tells nothing about accounts)
    for email in (new_email(), (await register(limited))["email"]):
        for _ in range(2):
            resp = await Client(limited).post("/api/auth/password-reset/request",
                                              {"email": email})
            assert resp.status == 202, resp.body
        expect_limited(await Client(limited).post("/api/auth/password-reset/request",
                                                  {"email": email}))


async def test_reset_confirms_are_limited_per_address(limited: MessengerServer) -> None:
    client = Client(limited)
    body = {"token": "x" * 43, "password": PASSWORD}
    for _ in range(2):
        expect_error(await client.post("/api/auth/password-reset/confirm", body), 400,
                     "invalid_email_token")
    expect_limited(await client.post("/api/auth/password-reset/confirm", body))
    expect_error(await Client(limited).post("/api/auth/password-reset/confirm", body), 400,
                 "invalid_email_token")


# -- order of checks -------------------------------------------------------------------------------
async def test_field_checks_come_before_the_limits(limited: MessengerServer) -> None:
    """Malformed requests get 422 and are not counted (they cost nothing)."""
    client = Client(limited)
    for _ in range(10):
        resp = await client.post("/api/auth/login", {"email": "not-an-email", "password": "x"})
        expect_error(resp, 422, "validation_error", field="email")
    account = await register(limited)
    resp = await client.login(account["email"])
    assert resp.status == 200, resp.body

