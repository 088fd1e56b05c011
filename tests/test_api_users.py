"""User lookups: /me carries the email, other users never do."""

from __future__ import annotations

import re

import pytest

from tests.support.api import Api, expect_error, is_json_response

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


async def test_me_includes_email(server) -> None:
    api = Api(server.base_url)
    account = await api.register(name="Mia")
    resp = await api.get("/api/users/me", token=account.access_token)
    assert resp.status == 200, resp.body
    assert is_json_response(resp)
    body = resp.json
    assert set(body) == {"id", "display_name", "created_at", "email", "email_verified"}
    assert body["id"] == account.id
    assert body["email"] == account.email
    assert body["display_name"] == "Mia"
    assert TIMESTAMP.match(body["created_at"])
    assert body["created_at"] == account.user["created_at"]


async def test_other_user_has_no_email(server) -> None:
    api = Api(server.base_url)
    caller = await api.register()
    other = await api.register(name="Oskar")
    resp = await api.get(f"/api/users/{other.id}", token=caller.access_token)
    assert resp.status == 200, resp.body
    assert resp.json == {
        "id": other.id,
        "display_name": "Oskar",
        "created_at": other.user["created_at"],
    }
    assert "email" not in resp.json


async def test_own_record_by_id(server) -> None:
    api = Api(server.base_url)
    account = await api.register(name="Self")
    resp = await api.get(f"/api/users/{account.id}", token=account.access_token)
    assert resp.status == 200, resp.body
    assert resp.json["id"] == account.id
    assert resp.json["display_name"] == "Self"


async def test_unknown_user_404(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    # Well-formed id of no user: a real id's timestamp with a process/counter part of zeros.
    missing = account.id[:8] + "0" * 16
    resp = await api.get(f"/api/users/{missing}", token=account.access_token)
    expect_error(resp, 404, "user_not_found")
    resp = await api.get("/api/users/" + "f" * 24, token=account.access_token)
    expect_error(resp, 404, "user_not_found")


@pytest.mark.parametrize(
    "user_id",
    ["nope", "123", "g" * 24, "A" * 24, "a" * 23, "a" * 25, "%24ne", "null", "0x" + "a" * 22],
)
async def test_malformed_user_id_404(server, user_id: str) -> None:
    api = Api(server.base_url)
    account = await api.register()
    resp = await api.get(f"/api/users/{user_id}", token=account.access_token)
    expect_error(resp, 404, "user_not_found")


async def test_users_require_auth(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    expect_error(await api.get("/api/users/me"), 401, "unauthorized")
    expect_error(await api.get(f"/api/users/{account.id}"), 401, "unauthorized")
