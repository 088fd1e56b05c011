"""``GET /metrics`` (API_CONTRACT.md §4): real servers, real sockets, promtool on what they say.

* the exposition passes ``promtool check metrics`` (no lint problem), before and after traffic;
* the counters move as a conversation runs: messages accepted by exactly N, events delivered by
  at least N, the fan-out histogram and the store latency of ``append_messages`` observed,
  WebSocket and long-poll session gauges up while open and back down after;
* with ``METRICS_PORT`` the metrics are there only, and the public port answers 404;
* two processes on a real Redis: publications published on one and received on the other, and
  a Redis restart counted as a reconnect on both;
* the plain pieces: the bucket list, the measured store over a real SQLite store, and the
  fan-out clock (it waits for the node's queue and one more turn, and skips writes that
  wrote no frame here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from prometheus_client.parser import text_string_to_metric_families

from messenger.metrics.fanout import FanoutClock
from messenger.metrics.histogram import Histogram
from messenger.metrics.measured_store import OPERATIONS, MeasuredStore
from messenger.models import ChatType, MessageDraft
from messenger.store import StoreError
from messenger.store.base import Store
from tests.conftest import server_env
from tests.support.api import Api, expect_error
from tests.support.cluster import running_cluster, wait_until_ready
from tests.support.processes import MessengerServer, free_port
from tests.support.promtool import check_metrics
from tests.support.ws import WsClient, new_messages

pytestmark = pytest.mark.timeout(120)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
#: Seconds a condition on the metrics may take to come true.
PATIENCE = 15.0


def parse(text: bytes) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name{labels}``; 0 when it is not there (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(base_url: str) -> tuple[bytes, Samples]:
    resp = await Api(base_url).get("/metrics")
    assert resp.status == 200, resp.body[:300]
    assert resp.header("Content-Type").startswith("text/plain; version=0.0.4"), resp.headers
    return resp.body, parse(resp.body)


async def scrape_until(base_url: str, condition: Callable[[Samples], bool]) -> Samples:
    """Scrape until ``condition`` holds (or fail after ``PATIENCE`` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while True:
        _, samples = await scrape(base_url)
        if condition(samples):
            return samples
        if loop.time() > deadline:
            raise AssertionError(f"metrics never met the condition: {sorted(samples)[:40]}")
        await asyncio.sleep(0.05)


def assert_promtool_clean(text: bytes) -> None:
    code, printed = check_metrics(text)
    assert code == 0 and not printed.strip(), printed


def websockets(s: Samples) -> float:
    return value(s, "messenger_sessions", kind="websocket")


def long_polls(s: Samples) -> float:
    return value(s, "messenger_sessions", kind="long_poll")


def fanouts(s: Samples) -> float:
    return value(s, "messenger_fanout_seconds_count")


async def poll(api: Api, token: str, after: str | None, wait: float) -> dict[str, Any]:
    query = f"?timeout={wait}" + ("" if after is None else f"&last_event_id={quote(after)}")
    resp = await api.get("/api/events" + query, token=token)
    assert resp.status == 200, resp.body
    return resp.json


async def test_counters_move_as_a_conversation_runs(server: MessengerServer) -> None:
    sends = 5
    url = server.base_url
    api = Api(url)
    before = await scrape_until(url, lambda s: websockets(s) == 0 and long_polls(s) == 0)
    text, _ = await scrape(url)
    assert_promtool_clean(text)

    alice, bob = await api.register(), await api.register()
    chat_id = (await api.create_group(alice, bob))["id"]
    ws = await WsClient.connect(url, alice.access_token)
    await scrape_until(url, lambda s: websockets(s) == 1)
    bob_cursor = (await poll(api, bob.access_token, None, 0))["last_event_id"]
    waiting = asyncio.ensure_future(poll(api, bob.access_token, bob_cursor, 30))
    await scrape_until(url, lambda s: long_polls(s) == 1)

    for i in range(sends):
        answer = await ws.request({"type": "send_message", "chat_id": chat_id,
                                   "text": f"m{i}", "client_msg_id": f"m{i}"}, "message_sent")
        assert answer["type"] == "message_sent", answer
    replay = await ws.request({"type": "send_message", "chat_id": chat_id, "text": "m0",
                               "client_msg_id": "m0"}, "message_sent")
    assert replay["message"]["seq"] == 1  # a replay: stored once, counted once
    woken = await asyncio.wait_for(waiting, 20)
    assert woken["events"] and woken["events"][0]["type"] == "new_message"

    after = await scrape_until(url, lambda s: fanouts(s) > fanouts(before) and long_polls(s) == 0)
    text, _ = await scrape(url)
    assert_promtool_clean(text)
    accepted = "messenger_messages_accepted_total"
    assert value(after, accepted) - value(before, accepted) == sends
    delivered = "messenger_events_delivered_total"
    assert value(after, delivered) - value(before, delivered) >= sends + 1  # + bob's poll
    # the send path's store call: the messages with their events (one call per batch)
    appends = ("messenger_store_call_seconds_count", "append_messages_with_events")
    assert (value(after, appends[0], operation=appends[1])
            - value(before, appends[0], operation=appends[1])) >= sends
    assert value(after, "messenger_store_call_seconds_bucket", operation=appends[1],
                 le="+Inf") == value(after, appends[0], operation=appends[1])
    published = "messenger_broker_published_total"
    assert value(after, published) - value(before, published) >= 2 * sends  # both members
    received = "messenger_broker_received_total"
    assert value(after, received) - value(before, received) >= sends  # alice's own stream
    assert value(after, "messenger_broker_connected") == 1
    assert value(after, "messenger_actors", kind="chat") >= 1
    assert ("messenger_actor_inbox_depth", frozenset({("kind", "chat")})) in after
    assert ("messenger_actor_restarts_total", frozenset({("kind", "user")})) in after
    assert value(after, "messenger_http_connections") >= 1
    # two registrations queued two verification mails; the mailer's runs count what waits
    queued = "messenger_mail_queued_total"
    assert value(after, queued) - value(before, queued) == 2
    assert ("messenger_mail_outbox_pending", frozenset()) in after

    ws.close()
    await scrape_until(url, lambda s: websockets(s) == 0)


async def test_metrics_port_serves_metrics_and_the_public_port_answers_404(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    metrics_port = free_port()
    proc = MessengerServer({**server_env("sqlite", request, str(tmp_path)),
                            "METRICS_PORT": str(metrics_port)}).start()
    try:
        public = Api(proc.base_url)
        expect_error(await public.get("/metrics"), 404, "not_found")
        private = f"http://127.0.0.1:{metrics_port}"
        text, samples = await scrape(private)
        assert_promtool_clean(text)
        assert ("messenger_broker_connected", frozenset()) in samples
        expect_error(await Api(private).get("/api/healthz"), 404, "not_found")
        assert (await public.get("/api/healthz")).status == 200
    finally:
        proc.stop()


async def test_redis_broker_counts_publications_receipts_and_reconnects(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    sends = 5
    with running_cluster(server_env("sqlite", request, str(tmp_path)), 2) as cluster:
        node_0, node_1 = cluster.urls
        api = Api(node_0)
        alice, bob = await api.register(), await api.register()
        chat_id = (await api.create_group(alice, bob))["id"]
        a = await WsClient.connect(node_0, alice.access_token)
        b = await WsClient.connect(node_1, bob.access_token)
        _, before_0 = await scrape(node_0)
        _, before_1 = await scrape(node_1)
        for i in range(sends):
            await a.request({"type": "send_message", "chat_id": chat_id, "text": f"r{i}",
                             "client_msg_id": f"r{i}"}, "message_sent")
        await b.collect(new_messages(chat_id), sends)

        published, received = "messenger_broker_published_total", "messenger_broker_received_total"
        # fanout: alice's message_sent frames, written on node 0 where the events were stored
        after_0 = await scrape_until(node_0, lambda s: fanouts(s) > fanouts(before_0))
        after_1 = await scrape_until(
            node_1, lambda s: value(s, received) - value(before_1, received) >= sends)
        assert value(after_0, published) - value(before_0, published) >= 2 * sends
        delivered = "messenger_events_delivered_total"
        assert value(after_1, delivered) - value(before_1, delivered) >= sends
        assert value(after_0, "messenger_messages_accepted_total") == sends
        text, _ = await scrape(node_1)
        assert_promtool_clean(text)

        reconnects = "messenger_broker_reconnects_total"
        assert value(after_0, reconnects) == value(after_1, reconnects) == 0
        cluster.redis.stop()
        for url in cluster.urls:
            await wait_until_ready(url, 503)
            assert value((await scrape(url))[1], "messenger_broker_connected") == 0
        cluster.redis.start()
        for url in cluster.urls:
            await wait_until_ready(url, 200)
            samples = await scrape_until(url, lambda s: value(s, reconnects) >= 1)
            assert value(samples, "messenger_broker_connected") == 1
        a.close()
        b.close()


# -- the plain pieces --------------------------------------------------------------------------
def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    assert h.buckets() == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert (h.count, h.total) == (5, pytest.approx(8.65))
    with pytest.raises(ValueError):
        Histogram((1.0, 0.5))


async def test_measured_store_forwards_times_and_counts(tmp_path: Path) -> None:
    from messenger.store.sqlite import SQLiteStore

    assert set(OPERATIONS) == set(Store.__abstractmethods__)
    store = MeasuredStore(SQLiteStore(tmp_path / "db.sqlite3"))
    stored: list[int] = []
    store.events_stored = lambda: stored.append(1)
    await store.migrate()
    try:
        assert store.backend == "sqlite"
        ann = await store.create_user("ann@example.com", b"hash", "Ann")
        chat, _ = await store.create_chat(ChatType.GROUP, [ann.id], "t", None)
        draft = MessageDraft(ann.id, "hi", "c1")
        first = await store.append_messages(chat.id, [draft, draft])  # the second: a replay
        assert [r.created for r in first] == [True, False]  # type: ignore[union-attr]
        assert store.messages_accepted == 1
        assert (await store.get_chat(chat.id)).last_seq == 1  # type: ignore[union-attr]
        await store.append_chat_event(chat.id, b'{"type":"x"}', [ann.id])
        assert stored == [1]  # through the inherited method, timed as append_chat_events
        counts = {op: h.count for op, h in store.latency.items() if h.count}
        assert counts == {"migrate": 1, "create_user": 1, "create_chat": 1,
                          "append_messages": 1, "get_chat": 1, "append_chat_events": 1}
        with pytest.raises(StoreError):  # what the adapter raises, unchanged
            await store.append_messages("not-an-id", [draft])
        assert store.latency["append_messages"].count == 2  # failed calls are timed too
    finally:
        await store.close()


async def test_fanout_clock_observes_once_the_queue_is_handed_over_and_written() -> None:
    node = {"taken": 0, "pending": 0, "frames": 0}
    clock = FanoutClock(lambda: node["taken"], lambda: node["pending"], lambda: node["frames"],
                        Histogram())

    async def turns(count: int = 50) -> None:
        for _ in range(count):
            await asyncio.sleep(0)

    clock.stored()
    node["pending"] = 2  # the write's two publications, queued right after it
    await turns()
    assert clock.histogram.count == 0  # not handed over yet (the clock polls meanwhile)
    node.update(taken=2, pending=0, frames=2)
    await asyncio.sleep(0.01)
    await turns()
    assert clock.histogram.count == 1
    assert 0 < clock.histogram.total < 5

    clock.stored()  # a write that no session here follows: no frame, no observation
    await turns()
    assert clock.histogram.count == 1
