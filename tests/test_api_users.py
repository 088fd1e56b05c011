"""User lookups: /me carries the email, other users never do."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.support.api import Account, Api, Response, expect_error, is_json_response

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


# -- finding people: GET /api/users?email=… / ?q=… (API_CONTRACT.md §4) --------------------------
def users_path(**params: str) -> str:
    return "/api/users?" + urlencode(params)


async def find(api: Api, caller: Account, **params: str) -> list[dict[str, Any]]:
    resp = await api.get(users_path(**params), token=caller.access_token)
    assert resp.status == 200, resp.body
    assert is_json_response(resp)
    assert set(resp.json) == {"users"}
    return resp.json["users"]


async def names(api: Api, caller: Account, q: str, **params: str) -> list[str]:
    return [user["display_name"] for user in await find(api, caller, q=q, **params)]


async def test_email_lookup_finds_anyone_by_exact_address(server) -> None:
    api = Api(server.base_url)
    caller = await api.register()
    stranger = await api.register(name="Stranger")  # shares no chat with the caller
    assert await find(api, caller, email=stranger.email) == [{
        "id": stranger.id, "display_name": "Stranger", "created_at": stranger.user["created_at"],
    }]  # the public shape: no email


async def test_email_lookup_is_normalised_like_register(server) -> None:
    api = Api(server.base_url)
    caller = await api.register()
    bob = await api.register(name="Bob")
    shouted = f"  {bob.email.upper()}\t"
    assert [u["id"] for u in await find(api, caller, email=shouted)] == [bob.id]


async def test_email_lookup_miss_is_an_empty_list(server) -> None:
    api = Api(server.base_url)
    caller = await api.register()
    assert await find(api, caller, email=f"nobody-{caller.id}@example.com") == []
    # a prefix or a near miss of a real address finds nothing either
    assert await find(api, caller, email=caller.email.replace("@", "x@")) == []


async def test_email_lookup_of_the_own_address_finds_the_caller(server) -> None:
    api = Api(server.base_url)
    caller = await api.register(name="Self")
    assert [u["id"] for u in await find(api, caller, email=caller.email)] == [caller.id]


async def test_search_finds_co_members_never_strangers_nor_the_caller(server) -> None:
    api = Api(server.base_url)
    ann = await api.register(name="Ann")
    anna = await api.register(name="Anna")
    annika = await api.register(name="Annika")  # a stranger to ann, though her name matches
    await api.create_group(ann, anna)
    assert await names(api, ann, "ann") == ["Anna"]
    assert await names(api, anna, "ann") == ["Ann"]
    assert await names(api, annika, "ann") == []
    assert [u["id"] for u in await find(api, ann, q="Anna")] == [anna.id]
    found = (await find(api, ann, q="Anna"))[0]
    assert found == {"id": anna.id, "display_name": "Anna",
                     "created_at": anna.user["created_at"]}  # no email


async def test_search_counts_direct_chats_and_current_membership(server) -> None:
    api = Api(server.base_url)
    me = await api.register(name="Me")
    dora = await api.register(name="Dora")
    dave = await api.register(name="Dave")
    resp = await api.post("/api/chats", {"type": "direct", "member_ids": [dora.id]},
                          token=me.access_token)
    assert resp.status == 201, resp.body
    group = await api.create_group(me, dave)
    assert await names(api, me, "D") == ["Dave", "Dora"]
    resp = await api.request("DELETE", f"/api/chats/{group['id']}/members/{dave.id}",
                             token=dave.access_token)
    assert resp.status == 204, resp.body
    assert await names(api, me, "D") == ["Dora"]  # dave left: no longer found


async def test_search_ignores_case_in_unicode(server) -> None:
    api = Api(server.base_url)
    me = await api.register(name="Me")
    people = [await api.register(name=name) for name in ("Straße Jo", "ÉLodie", "bob ANN")]
    await api.create_group(me, *people)
    assert await names(api, me, "STRASSE") == ["Straße Jo"]
    assert await names(api, me, "straße j") == ["Straße Jo"]
    assert await names(api, me, "élo") == ["ÉLodie"]
    assert await names(api, me, "ÉLO") == ["ÉLodie"]
    assert await names(api, me, "BOB a") == ["bob ANN"]
    assert await names(api, me, "ann") == []  # a prefix of the name, not a word in it


async def test_search_orders_by_name_then_id_and_respects_the_limit(server) -> None:
    api = Api(server.base_url)
    me = await api.register(name="Me")
    twins = [await api.register(name="Kim") for _ in range(2)]
    others = [await api.register(name=name) for name in ("kim b", "KIM A", "Kimberly")]
    await api.create_group(me, *others, *twins)
    await api.create_group(me, twins[0])  # shares two chats with me: still listed once
    found = await find(api, me, q="kim")
    twin_ids = sorted(twin.id for twin in twins)
    assert [(u["display_name"], u["id"]) for u in found] == [
        ("Kim", twin_ids[0]), ("Kim", twin_ids[1]),
        ("KIM A", others[1].id), ("kim b", others[0].id), ("Kimberly", others[2].id),
    ]
    assert [u["id"] for u in await find(api, me, q="kim", limit="2")] == twin_ids
    assert [u["id"] for u in await find(api, me, q="kim", limit="1")] == twin_ids[:1]


async def test_search_q_is_taken_as_given(server) -> None:
    api = Api(server.base_url)
    me = await api.register(name="Me")
    ann_b = await api.register(name="Ann B")
    anna = await api.register(name="Anna")
    await api.create_group(me, ann_b, anna)
    assert await names(api, me, "ann ") == ["Ann B"]  # the space is part of the prefix
    assert await names(api, me, " ann") == []  # names are trimmed, so none starts with one
    assert await names(api, me, "a" * 64) == []  # the longest q


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),  # neither
        ({"email": "a@example.com", "q": "a"}, "q"),  # both
        ({"email": "", "q": ""}, "q"),
        ({"email": ""}, "email"),
        ({"email": "not-an-address"}, "email"),
        ({"email": "a@b@example.com"}, "email"),
        ({"email": "x" * 250 + "@example.com"}, "email"),
        ({"q": ""}, "q"),
        ({"q": "a" * 65}, "q"),
        ({"q": "a", "limit": "0"}, "limit"),
        ({"q": "a", "limit": "51"}, "limit"),
        ({"q": "a", "limit": "-1"}, "limit"),
        ({"q": "a", "limit": "ten"}, "limit"),
        ({"q": "a", "limit": "2.5"}, "limit"),
        ({"email": "a@example.com", "limit": "0"}, "limit"),
    ],
)
async def test_finding_people_validates_the_query(server, params: dict[str, str],
                                                  field: str) -> None:
    api = Api(server.base_url)
    caller = await api.register()
    resp = await api.get(users_path(**params), token=caller.access_token)
    expect_error(resp, 422, "validation_error", field=field)


async def test_finding_people_requires_auth(server) -> None:
    api = Api(server.base_url)
    expect_error(await api.get(users_path(q="a")), 401, "unauthorized")
    expect_error(await api.get(users_path(email="a@example.com")), 401, "unauthorized")


async def test_email_lookups_are_limited_per_caller(server) -> None:
    """30 lookups per 600 s per caller (a burst of 30); refused before the store is asked; other
    callers, and name searches, are not affected."""
    api = Api(server.base_url)
    caller, other = await api.register(), await api.register(name="Other")
    for _ in range(30):
        assert await find(api, caller, email=other.email) != []
    resp = await api.get(users_path(email=other.email), token=caller.access_token)
    error = expect_error(resp, 429, "rate_limited")
    assert int(resp.header("Retry-After")) == error["retry_after"]
    assert 1 <= error["retry_after"] <= 20  # one more lookup every 20 s
    # a bad query is refused by its checks first, and takes nothing
    resp = await api.get(users_path(email="bad"), token=caller.access_token)
    expect_error(resp, 422, "validation_error", field="email")
    assert await find(api, other, email=caller.email) != []  # per caller
    assert await find(api, caller, q="zzz") == []  # searches by name are not limited


# -- PATCH /api/users/me ---------------------------------------------------------------------------
async def patch_me(api: Api, account: Account, body: Any = None, **kw: Any) -> Response:
    return await api.request("PATCH", "/api/users/me", body, token=account.access_token, **kw)


async def test_patch_me_changes_the_display_name_everywhere(server) -> None:
    api = Api(server.base_url)
    pat = await api.register(name="Pat")
    friend = await api.register(name="Friend")
    await api.create_group(friend, pat)

    resp = await patch_me(api, pat, {"display_name": "  Quinn Q  ", "unknown": [1, 2]})
    assert resp.status == 200, resp.body
    assert resp.json == {**pat.user, "display_name": "Quinn Q"}  # UserWithEmail, trimmed
    me = await api.get("/api/users/me", token=pat.access_token)
    assert me.json["display_name"] == "Quinn Q"
    seen = await api.get(f"/api/users/{pat.id}", token=friend.access_token)
    assert seen.json == {"id": pat.id, "display_name": "Quinn Q",
                         "created_at": pat.user["created_at"]}
    assert await names(api, friend, "quinn") == ["Quinn Q"]
    assert await names(api, friend, "pat") == []
    assert [u["display_name"] for u in await find(api, friend, email=pat.email)] == ["Quinn Q"]


async def test_patch_me_with_the_longest_name(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    resp = await patch_me(api, account, {"display_name": "é" * 64})
    assert resp.status == 200, resp.body
    assert resp.json["display_name"] == "é" * 64


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"nickname": "x"}, "body"),  # unknown keys only
        ({"display_name": None}, "body"),  # null means not given
        ([], "body"),
        ("Ann", "body"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "x" * 65}, "display_name"),
        ({"display_name": "bad\u0007name"}, "display_name"),
        ({"display_name": 42}, "display_name"),
        ({"display_name": {"$set": "x"}}, "display_name.$set"),
        ({"$where": "1"}, "$where"),
    ],
)
async def test_patch_me_refuses_bad_input(server, body: Any, field: str) -> None:
    api = Api(server.base_url)
    account = await api.register(name="Kept")
    expect_error(await patch_me(api, account, body), 422, "validation_error", field=field)
    resp = await api.get("/api/users/me", token=account.access_token)
    assert resp.json["display_name"] == "Kept"


async def test_patch_me_malformed_json_and_auth(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    resp = await api.request("PATCH", "/api/users/me", body=b"{not json",
                             token=account.access_token)
    expect_error(resp, 400, "malformed_json")
    resp = await api.request("PATCH", "/api/users/me", {"display_name": "X"})
    expect_error(resp, 401, "unauthorized")
