"""The Store contract for display names, name search and session revocation (base.py: "Display
names", ``revoke_token_family``, ``revoke_user_tokens``), on both adapters (SQLite and MongoDB
through mongoeco), plus each adapter's migration of users stored before name keys existed."""

from __future__ import annotations

import sqlite3
import uuid
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from messenger.clock import utcnow
from messenger.ids import new_id
from messenger.models import ChatType, RefreshSpend, User
from messenger.names import name_key, prefix_bounds
from messenger.store import Store


async def user(store: Store, name: str) -> User:
    return await store.create_user(f"u-{uuid.uuid4().hex[:12]}@example.com", b"hash", name)


async def group(store: Store, *members: User) -> str:
    chat, _ = await store.create_chat(ChatType.GROUP, [m.id for m in members], "g", None)
    return chat.id


async def names_found(store: Store, caller: User, prefix: str, limit: int = 50) -> list[str]:
    return [u.display_name for u in await store.search_contacts(caller.id, name_key(prefix),
                                                                 limit)]


# -- the key itself (no store) ------------------------------------------------------------------
def test_name_key_is_the_caseless_compatibility_form() -> None:
    assert name_key("ANN") == name_key("Ann") == name_key("ann") == "ann"
    assert name_key("Straße") == "strasse"
    assert name_key("ﬁona") == "fiona"  # a ligature
    assert name_key("e\u0301") == name_key("\u00e9")  # decomposed and composed é


@pytest.mark.parametrize("prefix", ["a", "ann", "z\uffff", "\ud7ff", "x\U0010ffff", "é"])
def test_prefix_bounds_hold_exactly_the_strings_with_the_prefix(prefix: str) -> None:
    low, high = prefix_bounds(prefix)
    assert high is not None
    inside = [prefix, prefix + "a", prefix + "\U0010ffff" + "zz", prefix + "\ue000"]
    outside = [prefix[:-1], high, high + "a", prefix[:-1] + chr(ord(prefix[-1]) - 1) + "z"]
    for text in inside:
        assert low <= text < high, text
    for text in outside:
        assert not (text.startswith(prefix)) and not (low <= text < high), text
    # the bound never is a lone surrogate (it must be storable as UTF-8)
    high.encode("utf-8")


def test_prefix_bounds_without_an_upper_end() -> None:
    assert prefix_bounds("\U0010ffff") == ("\U0010ffff", None)


# -- display names -------------------------------------------------------------------------------
async def test_set_display_name_changes_the_name_everywhere(store: Store) -> None:
    ann = await user(store, "Ann")
    renamed = await store.set_display_name(ann.id, "Annabel")
    assert renamed is not None
    assert renamed.display_name == "Annabel"
    assert (renamed.id, renamed.email, renamed.created_at) == (ann.id, ann.email, ann.created_at)
    assert await store.get_user(ann.id) == renamed
    assert await store.get_user_by_email(ann.email) == renamed
    assert await store.get_users([ann.id]) == [renamed]


async def test_set_display_name_of_no_user_is_none(store: Store) -> None:
    assert await store.set_display_name(new_id(), "Ghost") is None
    assert await store.set_display_name("not-an-id", "Ghost") is None


# -- search --------------------------------------------------------------------------------------
async def test_search_finds_only_contacts_never_strangers_or_the_caller(store: Store) -> None:
    ann = await user(store, "Ann")
    anna = await user(store, "Anna")
    annika = await user(store, "Annika")  # shares no chat with ann
    await user(store, "Anne")  # a stranger too
    await group(store, ann, anna)
    await group(store, annika)

    assert await names_found(store, ann, "ann") == ["Anna"]  # not herself, not strangers
    assert await names_found(store, anna, "ann") == ["Ann"]
    assert await names_found(store, annika, "ann") == []


async def test_search_is_caseless_and_by_prefix(store: Store) -> None:
    me = await user(store, "Me")
    people = [await user(store, name) for name in ("Straße Jo", "ANNA", "anna b", "Bob Ann")]
    await group(store, me, *people)
    assert await names_found(store, me, "STRASSE") == ["Straße Jo"]
    assert await names_found(store, me, "strasse j") == ["Straße Jo"]
    assert await names_found(store, me, "An") == ["ANNA", "anna b"]  # a prefix, not a substring
    assert await names_found(store, me, "ann") == ["ANNA", "anna b"]
    assert await names_found(store, me, "annab") == []
    assert await names_found(store, me, "bob a") == ["Bob Ann"]


async def test_search_orders_by_key_then_id_and_respects_the_limit(store: Store) -> None:
    me = await user(store, "Me")
    same = [await user(store, "Kim") for _ in range(3)]
    others = [await user(store, name) for name in ("kim b", "KIM A", "Kimberly")]
    await group(store, me, *same, *others)
    await group(store, me, same[0])  # in two chats with me: still once

    found = await store.search_contacts(me.id, name_key("kim"), 50)
    expected = sorted([*same, *others], key=lambda u: (name_key(u.display_name), u.id))
    assert [u.id for u in found] == [u.id for u in expected]
    assert [u.display_name for u in found][:3] == ["Kim", "Kim", "Kim"]  # "kim" < "kim a"
    assert [u.id for u in found][:3] == sorted(u.id for u in same)
    first_two = await store.search_contacts(me.id, name_key("kim"), 2)
    assert [u.id for u in first_two] == [u.id for u in expected[:2]]
    assert await store.search_contacts(me.id, name_key("kim"), 0) == []


async def test_search_sees_direct_chats_and_current_membership(store: Store) -> None:
    me = await user(store, "Me")
    dora = await user(store, "Dora")
    dave = await user(store, "Dave")
    await store.create_chat(ChatType.DIRECT, [me.id, dora.id], None, f"{me.id}:{dora.id}")
    chat_id = await group(store, me, dave)
    assert await names_found(store, me, "d") == ["Dave", "Dora"]
    await store.remove_member(chat_id, dave.id)  # dave left: no longer a contact
    assert await names_found(store, me, "d") == ["Dora"]
    await store.add_members(chat_id, [dave.id])
    assert await names_found(store, me, "d") == ["Dave", "Dora"]


async def test_search_follows_a_rename(store: Store) -> None:
    me = await user(store, "Me")
    pat = await user(store, "Pat")
    await group(store, me, pat)
    await store.set_display_name(pat.id, "Quinn")
    assert await names_found(store, me, "pat") == []
    assert await names_found(store, me, "QUI") == ["Quinn"]


async def test_search_of_a_user_without_chats_or_a_malformed_id(store: Store) -> None:
    loner = await user(store, "Loner")
    await user(store, "Lou")
    assert await store.search_contacts(loner.id, "l", 20) == []
    assert await store.search_contacts("not-an-id", "l", 20) == []


# -- revocation (logout, logout everywhere) ------------------------------------------------------
def expiry() -> datetime:
    return utcnow() + timedelta(days=1)


async def test_revoking_a_family_by_a_spent_token_stops_its_live_one(store: Store) -> None:
    ann = await user(store, "Ann")
    await store.add_refresh_token("t1", "fam", ann.id, expiry())
    assert (await store.spend_refresh_token("t1")).outcome is RefreshSpend.SPENT
    await store.add_refresh_token("t2", "fam", ann.id, expiry())
    await store.add_refresh_token("other", "fam-2", ann.id, expiry())

    await store.revoke_token_family("fam")
    await store.revoke_token_family("fam")  # idempotent

    assert (await store.spend_refresh_token("t2")).outcome is RefreshSpend.REVOKED
    assert (await store.spend_refresh_token("other")).outcome is RefreshSpend.SPENT


async def test_a_rotation_after_revocation_adds_a_dead_token(store: Store) -> None:
    """A refresh in flight (spent before the logout, its next token stored after) does not bring
    the family back."""
    ann = await user(store, "Ann")
    await store.add_refresh_token("t1", "fam", ann.id, expiry())
    assert (await store.spend_refresh_token("t1")).outcome is RefreshSpend.SPENT
    await store.revoke_token_family("fam")
    await store.add_refresh_token("t2", "fam", ann.id, expiry())
    assert (await store.spend_refresh_token("t2")).outcome is RefreshSpend.REVOKED

    await store.add_refresh_token("u1", "fam-u", ann.id, expiry())
    await store.revoke_user_tokens(ann.id)
    await store.add_refresh_token("u2", "fam-u", ann.id, expiry())
    assert (await store.spend_refresh_token("u2")).outcome is RefreshSpend.REVOKED


async def test_revoke_user_tokens_twice_and_for_nobody_is_harmless(store: Store) -> None:
    ann = await user(store, "Ann")
    await store.add_refresh_token("a", "fam-a", ann.id, expiry())
    await store.revoke_user_tokens(ann.id)
    await store.revoke_user_tokens(ann.id)
    await store.revoke_user_tokens(new_id())
    await store.revoke_user_tokens("not-an-id")
    assert (await store.spend_refresh_token("a")).outcome is RefreshSpend.REVOKED


# -- migration of users stored before name keys ----------------------------------------------------
async def test_sqlite_upgrade_gives_existing_users_their_name_keys(tmp_path: Path) -> None:
    from messenger.store.sqlite import SQLiteStore
    from messenger.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "db.sqlite3"
    before = SCHEMA_VERSION - 1  # the schema of the release before name keys
    assert any("name_key" in statement for statement in MIGRATIONS[before])
    ids = [new_id() for _ in range(3)]
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for number, statements in enumerate(MIGRATIONS[:before]):
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
        for user_id, name in zip(ids, ("ÉMILE", "Straße", "Bob"), strict=True):
            conn.execute(
                "INSERT INTO users (id, email, display_name, password_hash, created_at)"
                " VALUES (?, ?, ?, x'00', 0)", (user_id, f"{user_id}@example.com", name))
        conn.execute("INSERT INTO chats (id, type, created_at, last_activity_at)"
                     " VALUES ('c', 'group', 0, 0)")
        conn.executemany("INSERT INTO chat_members (chat_id, user_id, position) VALUES (?, ?, ?)",
                         [("c", user_id, i) for i, user_id in enumerate(ids)])
    store = SQLiteStore(path)
    try:
        await store.migrate()
        bob = await store.get_user(ids[2])
        assert bob is not None
        assert await names_found(store, bob, "é") == ["ÉMILE"]
        assert await names_found(store, bob, "STRAS") == ["Straße"]
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        keys = dict(conn.execute("SELECT display_name, name_key FROM users").fetchall())
    assert keys == {"ÉMILE": "émile", "Straße": "strasse", "Bob": "bob"}


async def test_mongo_migrate_fills_missing_name_keys_only(request: pytest.FixtureRequest) -> None:
    from bson import ObjectId

    from messenger.store.mongo import MongoStore

    server = request.getfixturevalue("mongoeco")
    store = MongoStore(server.url, f"users_{uuid.uuid4().hex}", timeout_ms=3000)
    try:
        await store.migrate()
        me = await user(store, "Me")
        db = store._db  # type: ignore[attr-defined]  # documents as an older release left them
        old_ids = [ObjectId(), ObjectId()]
        await db.users.insert_many([
            {"_id": old_ids[0], "email": "old1@example.com", "display_name": "ÖLGA",
             "password_hash": b"h", "created_at": utcnow()},
            {"_id": old_ids[1], "email": "old2@example.com", "display_name": "Olaf",
             "password_hash": b"h", "created_at": utcnow()},
        ])
        await store.create_chat(ChatType.GROUP, [me.id, *map(str, old_ids)], "g", None)
        assert await names_found(store, me, "o") == []  # no key yet: not found

        await store.migrate()
        await store.migrate()  # idempotent

        assert await names_found(store, me, "öl") == ["ÖLGA"]
        assert await names_found(store, me, "o") == ["Olaf"]  # ö is not o (accents count)
        doc = await db.users.find_one({"_id": old_ids[0]})
        assert doc["name_key"] == "ölga"
        assert (await db.users.find_one({"_id": ObjectId(me.id)}))["name_key"] == "me"
    finally:
        await store.close()


async def test_sqlite_search_query_plan_starts_from_the_callers_memberships(
    tmp_path: Path,
) -> None:
    from messenger.store import sqlite as adapter

    store = adapter.SQLiteStore(tmp_path / "db.sqlite3")
    await store.migrate()
    await store.close()
    with closing(sqlite3.connect(tmp_path / "db.sqlite3")) as conn:
        params = {"user": "u", "low": "a", "high": "b", "limit": 20}
        plan = [row[3] for row in conn.execute(
            f"EXPLAIN QUERY PLAN {adapter.SQL_SEARCH_CONTACTS}", params)]
    # the only scan is of the contacts it built itself; users are read by primary key
    assert [step for step in plan if step.startswith("SCAN")] == ["SCAN contacts"], plan
    assert any(step.startswith("SEARCH mine USING") and "chat_members_user" in step
               for step in plan), plan
    assert any(step.startswith("SEARCH u USING") and "(id=?)" in step for step in plan), plan
