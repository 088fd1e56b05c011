"""Registration, login, refresh-token rotation and bearer-token checks over real HTTP."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import jwt
import pytest

from tests.conftest import TEST_SECRET
from tests.support.api import Api, expect_error, is_json_response

ID = re.compile(r"^[0-9a-f]{24}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PASSWORD = "correct horse battery"


def new_email() -> str:
    return f"auth-{uuid.uuid4().hex[:12]}@example.com"


def check_token_body(body: dict[str, Any], email: str, display_name: str) -> None:
    assert set(body) == {"user", "access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert isinstance(body["access_token"], str) and body["access_token"]
    assert isinstance(body["refresh_token"], str) and body["refresh_token"]
    assert body["access_token"] != body["refresh_token"]
    user = body["user"]
    assert set(user) == {"id", "display_name", "created_at", "email", "email_verified"}
    assert user["email_verified"] is False
    assert ID.match(user["id"])
    assert user["email"] == email
    assert user["display_name"] == display_name
    assert TIMESTAMP.match(user["created_at"])


def forge(claims: dict[str, Any], secret: str = TEST_SECRET, algorithm: str = "HS256") -> str:
    now = int(time.time())
    payload = {
        "iss": "messenger",
        "aud": "messenger-clients",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "typ": "access",
    }
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm=algorithm)


# -- register ----------------------------------------------------------------------------------


async def test_register_returns_201_token_body(server) -> None:
    api = Api(server.base_url)
    email = new_email()
    resp = await api.post(
        "/api/auth/register", {"email": email, "password": PASSWORD, "display_name": "Ann Lee"}
    )
    assert resp.status == 201, resp.body
    assert is_json_response(resp)
    check_token_body(resp.json, email, "Ann Lee")
    # The access token works right away and names the same user.
    me = await api.get("/api/users/me", token=resp.json["access_token"])
    assert me.status == 200
    assert me.json == resp.json["user"]


async def test_register_accepts_password_of_exactly_72_bytes_and_name_of_64(server) -> None:
    api = Api(server.base_url)
    email = new_email()
    password = "é" * 36  # 72 UTF-8 bytes
    name = "n" * 64
    resp = await api.post(
        "/api/auth/register", {"email": email, "password": password, "display_name": name}
    )
    assert resp.status == 201, resp.body
    check_token_body(resp.json, email, name)
    login = await api.post("/api/auth/login", {"email": email, "password": password})
    assert login.status == 200, login.body


async def test_register_duplicate_email_409(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    resp = await api.post(
        "/api/auth/register",
        {"email": account.email, "password": "another password", "display_name": "Bob"},
    )
    expect_error(resp, 409, "email_taken")


async def test_register_duplicate_email_differently_cased_409(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    resp = await api.post(
        "/api/auth/register",
        {"email": account.email.upper(), "password": "another password", "display_name": "Bob"},
    )
    expect_error(resp, 409, "email_taken")


VALID = {"password": PASSWORD, "display_name": "Ann"}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "ann@"}, "email"),
        ({"email": "@example.com"}, "email"),
        ({"email": "ann@example"}, "email"),
        ({"email": ""}, "email"),
        ({"email": 12345}, "email"),
        ({"email": ["ann@example.com"]}, "email"),
        ({"email": None}, "email"),
        ({"password": "1234567"}, "password"),
        ({"password": ""}, "password"),
        ({"password": "é" * 36 + "a"}, "password"),  # 37 chars but 73 UTF-8 bytes
        ({"password": "a" * 73}, "password"),
        ({"password": 12345678}, "password"),
        ({"password": None}, "password"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": "x" * 65}, "display_name"),
        ({"display_name": 7}, "display_name"),
        ({"display_name": {"first": "Ann"}}, "display_name"),
        ({"display_name": None}, "display_name"),
        ({"display_name": True}, "display_name"),
    ],
)
async def test_register_invalid_input_422_names_field(server, override, field: str) -> None:
    api = Api(server.base_url)
    body = {"email": new_email(), **VALID, **override}
    expect_error(await api.post("/api/auth/register", body), 422, "validation_error", field)


@pytest.mark.parametrize("missing", ["email", "password", "display_name"])
async def test_register_missing_field_422(server, missing: str) -> None:
    api = Api(server.base_url)
    body = {"email": new_email(), **VALID}
    del body[missing]
    expect_error(await api.post("/api/auth/register", body), 422, "validation_error", missing)


async def test_register_invalid_input_creates_no_account(server) -> None:
    api = Api(server.base_url)
    email = new_email()
    bad = await api.post(
        "/api/auth/register", {"email": email, "password": "short", "display_name": "Ann"}
    )
    expect_error(bad, 422, "validation_error", "password")
    # The email is still free.
    ok = await api.post(
        "/api/auth/register", {"email": email, "password": PASSWORD, "display_name": "Ann"}
    )
    assert ok.status == 201, ok.body


# -- login -------------------------------------------------------------------------------------


async def test_login_200_token_body(server) -> None:
    api = Api(server.base_url)
    account = await api.register(name="Lee")
    resp = await api.post("/api/auth/login", {"email": account.email, "password": account.password})
    assert resp.status == 200, resp.body
    check_token_body(resp.json, account.email, "Lee")
    assert resp.json["user"]["id"] == account.id
    me = await api.get("/api/users/me", token=resp.json["access_token"])
    assert me.status == 200
    assert me.json["id"] == account.id


async def test_login_wrong_password_401(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    resp = await api.post(
        "/api/auth/login", {"email": account.email, "password": account.password + "x"}
    )
    expect_error(resp, 401, "invalid_credentials")


async def test_login_unknown_email_401_same_code(server) -> None:
    api = Api(server.base_url)
    resp = await api.post("/api/auth/login", {"email": new_email(), "password": PASSWORD})
    expect_error(resp, 401, "invalid_credentials")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": PASSWORD}, "email"),
        ({"email": "someone@example.com"}, "password"),
        ({"email": 5, "password": PASSWORD}, "email"),
        ({"email": "someone@example.com", "password": 12345678}, "password"),
    ],
)
async def test_login_invalid_input_422(server, body, field: str) -> None:
    api = Api(server.base_url)
    expect_error(await api.post("/api/auth/login", body), 422, "validation_error", field)


# -- refresh -----------------------------------------------------------------------------------


async def refresh(api: Api, token: str):
    return await api.post("/api/auth/refresh", {"refresh_token": token})


async def test_refresh_returns_a_new_working_pair(server) -> None:
    api = Api(server.base_url)
    account = await api.register(name="Ref")
    resp = await refresh(api, account.refresh_token)
    assert resp.status == 200, resp.body
    body = resp.json
    check_token_body(body, account.email, "Ref")
    assert body["user"]["id"] == account.id
    assert body["access_token"] != account.access_token
    assert body["refresh_token"] != account.refresh_token
    me = await api.get("/api/users/me", token=body["access_token"])
    assert me.status == 200
    assert me.json["id"] == account.id
    # The new refresh token refreshes in turn.
    again = await refresh(api, body["refresh_token"])
    assert again.status == 200, again.body
    assert again.json["refresh_token"] not in (body["refresh_token"], account.refresh_token)


async def test_refresh_reuse_revokes_the_family(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    first = await refresh(api, account.refresh_token)
    assert first.status == 200, first.body
    successor = first.json["refresh_token"]

    reused = await refresh(api, account.refresh_token)
    expect_error(reused, 401, "refresh_token_reused")

    # The pair issued from the spent token is dead too.
    expect_error(await refresh(api, successor), 401, "invalid_token")
    # And the original stays dead.
    resp = await refresh(api, account.refresh_token)
    assert resp.status == 401, resp.body


async def test_reuse_does_not_touch_other_sessions(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    login = await api.post(
        "/api/auth/login", {"email": account.email, "password": account.password}
    )
    other_session = login.json["refresh_token"]
    assert (await refresh(api, account.refresh_token)).status == 200
    expect_error(await refresh(api, account.refresh_token), 401, "refresh_token_reused")
    resp = await refresh(api, other_session)
    assert resp.status == 200, resp.body


async def test_access_token_given_to_refresh_401(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    expect_error(await refresh(api, account.access_token), 401, "invalid_token")
    # Nothing was spent: the real refresh token still works.
    assert (await refresh(api, account.refresh_token)).status == 200


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 500])
async def test_garbage_refresh_token_401(server, token: str) -> None:
    api = Api(server.base_url)
    expect_error(await refresh(api, token), 401, "invalid_token")


async def test_expired_refresh_token_401(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    now = int(time.time())
    token = forge(
        {
            "sub": account.id,
            "typ": "refresh",
            "fam": uuid.uuid4().hex,
            "iat": now - 7200,
            "exp": now - 3600,
        }
    )
    expect_error(await refresh(api, token), 401, "invalid_token")


async def test_refresh_missing_token_422(server) -> None:
    api = Api(server.base_url)
    resp = await api.post("/api/auth/refresh", {})
    expect_error(resp, 422, "validation_error", "refresh_token")
    resp = await api.post("/api/auth/refresh", {"refresh_token": 12})
    expect_error(resp, 422, "validation_error", "refresh_token")


# -- bearer tokens -----------------------------------------------------------------------------


async def test_refresh_token_used_as_bearer_401(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    resp = await api.get("/api/users/me", token=account.refresh_token)
    expect_error(resp, 401, "invalid_token")


async def test_missing_authorization_header_401(server) -> None:
    api = Api(server.base_url)
    expect_error(await api.get("/api/users/me"), 401, "unauthorized")
    expect_error(await api.get("/api/chats"), 401, "unauthorized")


@pytest.mark.parametrize("header", ["Token abc", "Bearer", "Basic dXNlcjpwYXNz", "bearer"])
async def test_malformed_authorization_header_401(server, header: str) -> None:
    api = Api(server.base_url)
    resp = await api.get("/api/users/me", headers={"Authorization": header})
    assert resp.status == 401, resp.body
    error = expect_error(resp, 401, resp.error_code)
    assert error["code"] in ("unauthorized", "invalid_token")


async def test_garbage_bearer_token_401(server) -> None:
    api = Api(server.base_url)
    expect_error(await api.get("/api/users/me", token="garbage"), 401, "invalid_token")


async def test_expired_access_token_401(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    now = int(time.time())
    token = forge({"sub": account.id, "iat": now - 7200, "exp": now - 3600})
    expect_error(await api.get("/api/users/me", token=token), 401, "invalid_token")


async def test_forged_valid_token_is_accepted_control(server) -> None:
    # Control for the forging tests: the same claims, unexpired, are accepted.
    api = Api(server.base_url)
    account = await api.register()
    resp = await api.get("/api/users/me", token=forge({"sub": account.id}))
    assert resp.status == 200, resp.body
    assert resp.json["id"] == account.id


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "someone-else"},
        {"aud": "other-clients"},
        {"typ": "refresh", "fam": "f" * 32},
        {"typ": "id"},
    ],
)
async def test_wrong_claims_401(server, claims) -> None:
    api = Api(server.base_url)
    account = await api.register()
    token = forge({"sub": account.id, **claims})
    expect_error(await api.get("/api/users/me", token=token), 401, "invalid_token")


async def test_wrong_secret_401(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    token = forge({"sub": account.id}, secret="another-secret-that-is-long-enough-0123456789")
    expect_error(await api.get("/api/users/me", token=token), 401, "invalid_token")


async def test_alg_none_401(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    token = forge({"sub": account.id}, secret="", algorithm="none")
    expect_error(await api.get("/api/users/me", token=token), 401, "invalid_token")


async def test_tampered_access_token_401(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    other = await api.register()
    header, payload, signature = account.access_token.split(".")
    # Swap the payload for another user's: the signature no longer matches.
    other_payload = other.access_token.split(".")[1]
    swapped = f"{header}.{other_payload}.{signature}"
    expect_error(await api.get("/api/users/me", token=swapped), 401, "invalid_token")
    # Flip one signature character.
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    tampered = f"{header}.{payload}.{flipped}"
    expect_error(await api.get("/api/users/me", token=tampered), 401, "invalid_token")


# -- logout (API_CONTRACT.md §2 rule 6, §4) ----------------------------------------------------


async def logout(api: Api, refresh_token: Any, **kw: Any):
    return await api.post("/api/auth/logout", {"refresh_token": refresh_token}, **kw)


async def login_pair(api: Api, email: str) -> dict[str, Any]:
    resp = await api.post("/api/auth/login", {"email": email, "password": PASSWORD})
    assert resp.status == 200, resp.body
    return resp.json


def expect_no_content(resp) -> None:
    assert resp.status == 204, (resp.status, resp.body)
    assert resp.body == b""


async def test_logout_revokes_the_family_and_keeps_the_access_token(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    expect_no_content(await logout(api, account.refresh_token))
    expect_error(await refresh(api, account.refresh_token), 401, "invalid_token")
    # access tokens are stateless: valid until they expire (§2 rule 5)
    me = await api.get("/api/users/me", token=account.access_token)
    assert me.status == 200, me.body


async def test_logout_with_a_spent_token_stops_its_successor(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    first = await refresh(api, account.refresh_token)
    assert first.status == 200, first.body
    expect_no_content(await logout(api, account.refresh_token))  # spent, but of the family
    expect_error(await refresh(api, first.json["refresh_token"]), 401, "invalid_token")


async def test_logout_is_idempotent(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    expect_no_content(await logout(api, account.refresh_token))
    expect_no_content(await logout(api, account.refresh_token))  # its family is revoked already
    # a family revoked by reuse detection logs out alike
    other = await login_pair(api, account.email)
    assert (await refresh(api, other["refresh_token"])).status == 200
    expect_error(await refresh(api, other["refresh_token"]), 401, "refresh_token_reused")
    expect_no_content(await logout(api, other["refresh_token"]))


async def test_logout_touches_no_other_session(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    phone = await login_pair(api, account.email)
    expect_no_content(await logout(api, account.refresh_token))
    resp = await refresh(api, phone["refresh_token"])
    assert resp.status == 200, resp.body


async def test_logout_needs_no_bearer_and_ignores_one(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    other = await api.register()
    expect_no_content(await logout(api, account.refresh_token, token="garbage"))
    expect_no_content(await logout(api, other.refresh_token, token=account.access_token))
    expect_error(await refresh(api, other.refresh_token), 401, "invalid_token")


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 500])
async def test_logout_with_garbage_is_401(server, token: str) -> None:
    api = Api(server.base_url)
    expect_error(await logout(api, token), 401, "invalid_token")


async def test_logout_refuses_what_is_no_valid_refresh_token(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    now = int(time.time())
    expired = forge({"sub": account.id, "typ": "refresh", "fam": uuid.uuid4().hex,
                     "iat": now - 7200, "exp": now - 3600})
    expect_error(await logout(api, expired), 401, "invalid_token")
    expect_error(await logout(api, account.access_token), 401, "invalid_token")
    header, payload, signature = account.refresh_token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    expect_error(await logout(api, f"{header}.{payload}.{flipped}"), 401, "invalid_token")
    # nothing was revoked: the real refresh token still works
    assert (await refresh(api, account.refresh_token)).status == 200


async def test_logout_validates_its_body(server) -> None:
    api = Api(server.base_url)
    expect_error(await api.post("/api/auth/logout", {}), 422, "validation_error", "refresh_token")
    expect_error(await logout(api, 12), 422, "validation_error", "refresh_token")
    expect_error(await logout(api, "x" * 4097), 422, "validation_error", "refresh_token")
    expect_error(await api.post("/api/auth/logout", body=b"{nope"), 400, "malformed_json")


async def test_logout_all_revokes_every_session_of_the_caller_only(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    laptop, phone = await login_pair(api, account.email), await login_pair(api, account.email)
    bystander = await api.register()

    expect_no_content(await api.post("/api/auth/logout-all", token=laptop["access_token"]))

    for token in (account.refresh_token, laptop["refresh_token"], phone["refresh_token"]):
        expect_error(await refresh(api, token), 401, "invalid_token")
    assert (await refresh(api, bystander.refresh_token)).status == 200
    # access tokens stay valid until they expire; logging out again is fine
    assert (await api.get("/api/users/me", token=phone["access_token"])).status == 200
    expect_no_content(await api.post("/api/auth/logout-all", token=phone["access_token"]))
    # a login afterwards starts a new, live family
    fresh = await login_pair(api, account.email)
    assert (await refresh(api, fresh["refresh_token"])).status == 200


async def test_logout_all_requires_a_bearer_token(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    expect_error(await api.post("/api/auth/logout-all"), 401, "unauthorized")
    resp = await api.post("/api/auth/logout-all", token=account.refresh_token)
    expect_error(resp, 401, "invalid_token")
    assert (await refresh(api, account.refresh_token)).status == 200  # nothing was revoked
