"""The embedded SQLite store shared by several OS processes on one file (issue 10, ``make
cluster``): real processes (``subprocess``, each its own ``SQLiteStore`` and connection), not
threads or store objects in one process.

* Three processes append into one chat at once, each batch followed by its messages' events
  (``append_chat_events`` with ``message_seq``, as the send path does): the chat's seqs are
  1..N, each once; a ``client_msg_id`` all three send is stored once, and all three get the same
  message back; the chat log and every member's stream are gap-free with each message's event
  exactly once; a plain ``append_stream`` shared by the three is gap-free too.
* A process that lists a user's chats while another adds and removes the user from one of them
  never gets a chat without that user among its members: the rows and the members are read in
  one snapshot (before, hundreds of a thousand lists mixed two).
* A write that meets another process's write lock waits for it, and then succeeds, instead of
  failing with ``SQLITE_BUSY``.
* Processes that open one fresh file at the same moment and migrate it (the start of ``make
  cluster`` or of several replicas): every one succeeds, the file gets one epoch and the same
  schema a lone process makes. Before the store retried the switch to WAL, some of them failed
  with "database is locked".

Each worker is this module run as a script (``python -m tests.test_store_sqlite_processes``);
workers load and open their store first, then wait for one line on stdin, so all of them start
working at the same moment; the appending ones also wait, after their first round, until every
one has done its first round (through the store), so their work overlaps however the OS
schedules them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest

from messenger.models import ChatEvent, ChatType, MessageDraft
from messenger.store.sqlite import SQLiteStore
from messenger.store.sqlite_schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 3
ROUNDS = 40  # per worker; each round one batch of 4 drafts, then their events
MEMBERS = 4
SHARED_STREAM = "c:" + "f" * 24  # a plain stream all workers append to
MIGRATORS = 4
MIGRATION_ROUNDS = 40  # without the WAL retry, about one round in five failed
LISTINGS = 1000


# -- workers (run in their own processes) -----------------------------------------------------
async def append_worker(path: Path, chat_id: str, worker: int, members: list[str]) -> dict:
    """Rounds of: one batch into the chat (two drafts every worker sends, with the same sender
    and client_msg_id; one keyed draft of this worker's own; one without a key), then the
    events of every message the batch returned, created here or not, then three entries of
    the shared stream."""
    store = SQLiteStore(path)
    await store.ping()  # the connection is open before the start signal
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    results: list[list[Any]] = []
    events: list[list[Any]] = []
    offsets: list[int] = []
    try:
        for r in range(ROUNDS):
            drafts = [
                MessageDraft(members[r % MEMBERS], f"shared {r}.{j}", f"shared-{r}-{j}")
                for j in range(2)
            ] + [
                MessageDraft(members[(worker + r) % MEMBERS], f"w{worker} {r}", f"w{worker}-{r}"),
                MessageDraft(members[(worker + r + 1) % MEMBERS], f"w{worker} {r} plain"),
            ]
            appended = await store.append_messages(chat_id, drafts)
            messages = []
            for draft, outcome in zip(drafts, appended, strict=True):
                message = outcome.message  # every sender is a member: no SenderNotMember
                results.append([draft.client_msg_id, message.id, message.seq, outcome.created])
                messages.append(message)
            writes = await store.append_chat_events(chat_id, [
                ChatEvent(orjson.dumps({"seq": m.seq, "id": m.id}), members, message_seq=m.seq)
                for m in messages
            ])
            events += [[m.seq, w.chat_offset, w.existed, w.user_offsets]
                       for m, w in zip(messages, writes, strict=True)]
            offsets += await store.append_stream(
                SHARED_STREAM, [f"{worker}.{r}.{k}".encode() for k in range(3)])
            if r == 0:  # every worker is under way before any goes on: they overlap
                await wait_for_head(store, SHARED_STREAM, WORKERS * 3)
    finally:
        await store.close()
    return {"results": results, "events": events, "stream": offsets}


async def wait_for_head(store: SQLiteStore, stream: str, head: int) -> None:
    deadline = time.monotonic() + 30
    while (await store.stream_bounds([stream]))[stream][1] < head:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{stream} did not reach {head}")
        await asyncio.sleep(0.002)


async def migrate_worker() -> None:
    """For each path read from stdin: open a store on it, migrate, report, close."""
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        store = SQLiteStore(Path(line))
        try:
            await store.migrate()
            report = {"epoch": await store.stream_epoch()}
        except Exception as exc:  # reported to the test, which fails on it
            report = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            await store.close()
        print(json.dumps(report), flush=True)


async def toggle_worker(path: Path, chat_id: str, user_id: str) -> None:
    """Add ``user_id`` to the chat and remove them again, from one line on stdin to the next."""
    store = SQLiteStore(path, synchronous="normal")
    await store.ping()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    stop = loop.run_in_executor(None, sys.stdin.readline)
    toggles = 0
    try:
        while not stop.done():
            await store.add_members(chat_id, [user_id])
            await store.remove_member(chat_id, user_id)
            toggles += 1
    finally:
        await store.close()
    print(json.dumps({"toggles": toggles}), flush=True)


async def list_worker(path: Path, chat_id: str, user_id: str) -> None:
    """Lists of the user's chats, at least ``LISTINGS`` and until the toggled chat was in
    ``LISTINGS // 10`` of them and missing from as many (30 s at most): how many had a chat
    without the user among its members, how many had the toggled chat and how many not."""
    store = SQLiteStore(path)
    await store.ping()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    mixed = with_chat = without_chat = 0
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and (
                with_chat + without_chat < LISTINGS
                or min(with_chat, without_chat) < LISTINGS // 10):
            views = await store.list_chat_views(user_id, 100)
            mixed += sum(user_id not in view.chat.member_ids for view in views)
            if any(view.chat.id == chat_id for view in views):
                with_chat += 1
            else:
                without_chat += 1
    finally:
        await store.close()
    print(json.dumps({"mixed": mixed, "with": with_chat, "without": without_chat}), flush=True)


def hold_lock_worker(path: Path) -> None:
    """Hold the file's write lock (``BEGIN IMMEDIATE``) until stdin has a line."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        print("ready", flush=True)
        sys.stdin.readline()
        conn.execute("COMMIT")


def worker_main(argv: list[str]) -> None:
    if argv[0] == "append":
        path, chat_id, worker, members = argv[1:]
        report = asyncio.run(append_worker(Path(path), chat_id, int(worker), members.split(",")))
        print(json.dumps(report), flush=True)
    elif argv[0] == "migrate":
        asyncio.run(migrate_worker())
    elif argv[0] in ("toggle", "list"):
        worker = toggle_worker if argv[0] == "toggle" else list_worker
        asyncio.run(worker(Path(argv[1]), argv[2], argv[3]))
    elif argv[0] == "hold":
        hold_lock_worker(Path(argv[1]))
    else:
        raise SystemExit(f"unknown worker mode {argv[0]!r}")


# -- the test side ----------------------------------------------------------------------------
def spawn(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.test_store_sqlite_processes", *args], cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"worker did not start: {line!r}")
    return proc


def go(procs: list[subprocess.Popen[str]], line: str) -> None:
    """Write ``line`` to every worker, one right after the other."""
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()


def answer(proc: subprocess.Popen[str]) -> Any:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"worker exited with {proc.wait()}"
    return json.loads(line)


def finish(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        try:
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def seqs_of(payloads: list[bytes]) -> list[int]:
    return [orjson.loads(payload)["seq"] for payload in payloads]


@pytest.mark.timeout(90)
async def test_three_processes_append_into_one_chat_gap_free_and_exactly_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.sqlite3"
    store = SQLiteStore(path)
    await store.migrate()
    members = [(await store.create_user(f"m{i}@example.com", b"x", f"M{i}")).id
               for i in range(MEMBERS)]
    chat, _ = await store.create_chat(ChatType.GROUP, members, "one chat", None)

    procs = [spawn("append", str(path), chat.id, str(w), ",".join(members))
             for w in range(WORKERS)]
    try:
        go(procs, "go")
        reports = [answer(proc) for proc in procs]
    finally:
        finish(procs)

    # The chat: seqs 1..N, each once, N = the shared drafts once plus every worker's own two.
    expected = ROUNDS * 2 + WORKERS * ROUNDS * 2
    stored = await store.messages_in_seq_range(chat.id, 1, expected + 10)
    assert [m.seq for m in stored] == list(range(1, expected + 1))
    assert len({m.id for m in stored}) == expected
    assert (await store.get_chat(chat.id)).last_seq == expected
    by_seq = {m.seq: m for m in stored}
    for report in reports:  # what each process was told is what is stored
        for _key, message_id, seq, _created in report["results"]:
            assert by_seq[seq].id == message_id

    # client_msg_id across processes: one creation per key, the same message for everyone.
    keyed: dict[str, list[tuple[str, int, bool]]] = {}
    for report in reports:
        for key, message_id, seq, created in report["results"]:
            if key is not None:
                keyed.setdefault(key, []).append((message_id, seq, created))
    assert len(keyed) == ROUNDS * 2 + WORKERS * ROUNDS
    for key, answers in keyed.items():
        assert sum(created for _, _, created in answers) == 1, key
        assert len({(message_id, seq) for message_id, seq, _ in answers}) == 1, key
        assert len(answers) == (WORKERS if key.startswith("shared-") else 1), key
    assert Counter(m.client_msg_id for m in stored if m.client_msg_id) == dict.fromkeys(keyed, 1)

    # Each message's event once: written by one process, found (existed) by the others.
    writers = Counter(seq for r in reports for seq, _, existed, _ in r["events"] if not existed)
    assert writers == dict.fromkeys(range(1, expected + 1), 1)

    # The chat log and every member's stream: offsets 1..N, each message's event once.
    log = await store.read_stream(f"c:{chat.id}", 0, expected + 10)
    assert [e.offset for e in log] == list(range(1, expected + 1))
    assert sorted(seqs_of([e.payload for e in log])) == list(range(1, expected + 1))
    offset_of_seq = {seq: e.offset for seq, e in zip(seqs_of([e.payload for e in log]), log,
                                                     strict=True)}
    for report in reports:  # the chat offset each process was given is the stored one
        for seq, chat_offset, _, _ in report["events"]:
            assert offset_of_seq[seq] == chat_offset
    for member in members:
        entries = await store.read_stream(f"u:{member}", 0, expected + 10)
        assert [e.offset for e in entries] == list(range(1, expected + 1))
        assert sorted(seqs_of([e.payload for e in entries])) == list(range(1, expected + 1))
        assert sorted(e.source[1] for e in entries) == list(range(1, expected + 1))

    # The shared plain stream: every worker's offsets together are 1..3*3*ROUNDS, once each.
    total = WORKERS * ROUNDS * 3
    taken = sorted(o for r in reports for o in r["stream"])
    assert taken == list(range(1, total + 1))
    assert (await store.stream_bounds([SHARED_STREAM]))[SHARED_STREAM] == (0, total)
    await store.close()

    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def schema(path: Path) -> list[tuple[str, str, str]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name != 'sqlite_sequence'"
            " ORDER BY type, name").fetchall()


@pytest.mark.timeout(90)
async def test_processes_opening_one_fresh_file_at_once_all_migrate_it(tmp_path: Path) -> None:
    reference = tmp_path / "reference.sqlite3"
    lone = SQLiteStore(reference)
    await lone.migrate()
    await lone.close()

    procs = [spawn("migrate") for _ in range(MIGRATORS)]
    try:
        for n in range(MIGRATION_ROUNDS):
            path = tmp_path / f"fresh-{n}.sqlite3"
            go(procs, str(path))
            reports = [answer(proc) for proc in procs]
            assert [r.get("error") for r in reports] == [None] * MIGRATORS, f"round {n}"
            assert len({r["epoch"] for r in reports}) == 1, f"round {n}"
            with closing(sqlite3.connect(path)) as conn:
                assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
                assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
                assert conn.execute("SELECT count(*) FROM store_meta").fetchone() == (1,)
            assert schema(path) == schema(reference), f"round {n}"
    finally:
        finish(procs)


@pytest.mark.timeout(60)
async def test_a_chat_list_is_one_snapshot_while_another_process_changes_members(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.sqlite3"
    store = SQLiteStore(path)
    await store.migrate()
    ann, bob = [(await store.create_user(f"{n}@example.com", b"x", n)).id for n in ("a", "b")]
    toggled, _ = await store.create_chat(ChatType.GROUP, [ann], "toggled", None)
    for n in range(20):
        await store.create_chat(ChatType.GROUP, [ann, bob], f"steady {n}", None)
    await store.close()

    toggler = spawn("toggle", str(path), toggled.id, bob)
    lister = spawn("list", str(path), toggled.id, bob)
    try:
        go([toggler, lister], "go")
        listed = answer(lister)
        go([toggler], "stop")
        assert answer(toggler)["toggles"] > 0
    finally:
        finish([toggler, lister])
    assert listed["with"] > 0 and listed["without"] > 0  # the lists did race the changes
    assert listed["mixed"] == 0


@pytest.mark.timeout(60)
async def test_a_write_waits_for_another_process_lock_then_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    store = SQLiteStore(path)
    await store.migrate()
    user = await store.create_user("a@example.com", b"x", "A")
    chat, _ = await store.create_chat(ChatType.GROUP, [user.id], "t", None)
    holder = spawn("hold", str(path))
    try:
        send = asyncio.ensure_future(store.append_messages(chat.id, [MessageDraft(user.id, "hi")]))
        done, _ = await asyncio.wait([send], timeout=0.3)
        assert not done  # waiting for the other process's lock, not failed
        go([holder], "commit")
        [result] = await asyncio.wait_for(send, 10)
        assert result.created and result.message.seq == 1
    finally:
        finish([holder])
        await store.close()


if __name__ == "__main__":
    worker_main(sys.argv[1:])
