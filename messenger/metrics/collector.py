"""``MessengerCollector``: every ``messenger_*`` metric, read from the running parts at scrape time.

The parts count in plain ints of their own (see ``messenger/metrics/__init__.py``); this
collector only reads them when ``collect`` is called (on the event loop's thread, like the
parts, so it reads consistent values) and makes the Prometheus families of API_CONTRACT.md
§4 "``GET /metrics``". A part that is not there reports nothing: no HTTP server watched (the
connections gauge), a store that is not a ``MeasuredStore`` (messages, mail, store latency,
fan-out), a broker that is not the Redis broker (reconnects).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from actors.runtime import Actor, ActorRegistry
from messenger.http_server import LimitedHTTPServer
from messenger.metrics.histogram import Histogram
from messenger.metrics.measured_store import MeasuredStore
from messenger.realtime.redis_broker import RedisBroker
from messenger.services import Services


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def histogram(name: str, documentation: str, of: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, documentation, buckets=of.buckets(), sum_value=of.total)


class MessengerCollector(Collector):
    def __init__(self, services: Services) -> None:
        self.services = services
        #: The public HTTP server, once watched (``Metrics.watch_server``).
        self.server: LimitedHTTPServer | None = None
        #: ``messenger_fanout_seconds``, when the store is measured.
        self.fanout: Histogram | None = None

    def collect(self) -> Iterable[Metric]:
        yield from self._connections()
        yield from self._store()
        yield from self._delivery()
        yield from self._actors()
        yield from self._broker()
        yield from self._outbox()

    def _outbox(self) -> Iterator[Metric]:
        mailer = self.services.mail_workers.mailer
        if mailer is not None:
            yield gauge("messenger_mail_outbox_pending",
                        "Mail waiting in the outbox (all processes' mail), as of the end of "
                        "this process's mailer's last run.", mailer.mailer.outbox_pending)

    def _connections(self) -> Iterator[Metric]:
        hub = self.services.realtime
        if self.server is not None:
            yield gauge("messenger_http_connections",
                        "Open HTTP connections on the public port (WebSockets included).",
                        self.server.open_connections)
        sessions = GaugeMetricFamily(
            "messenger_sessions", "Open WebSocket sessions and long polls in progress.",
            labels=["kind"])
        sessions.add_metric(["websocket"], len(hub.websocket_sessions()))
        sessions.add_metric(["long_poll"], hub.open_polls)
        yield sessions

    def _store(self) -> Iterator[Metric]:
        store = self.services.store
        if not isinstance(store, MeasuredStore):
            return
        yield counter("messenger_messages_accepted",
                      "New messages stored by this process (replays and refusals not counted).",
                      store.messages_accepted)
        latency = HistogramMetricFamily(
            "messenger_store_call_seconds",
            "Duration of store calls by store method (failed calls too).",
            labels=["operation"])
        for operation, times in store.latency.items():
            if times.count:
                latency.add_metric([operation], times.buckets(), times.total)
        yield latency
        yield counter("messenger_mail_queued", "Mail this process put into the outbox.",
                      store.mail_queued)
        yield counter("messenger_mail_sent", "Mail this process's mailer sent.", store.mail_sent)
        failures = CounterMetricFamily(
            "messenger_mail_send_failures",
            "Failed send attempts of this process's mailer: due again later (retry), or "
            "given up (failed).", labels=["outcome"])
        failures.add_metric(["retry"], store.mail_retried)
        failures.add_metric(["failed"], store.mail_failed)
        yield failures

    def _delivery(self) -> Iterator[Metric]:
        node = self.services.realtime.node
        yield counter("messenger_events_delivered",
                      "Event frames this process handed to its sessions (WebSocket and long "
                      "poll, live and read back from the store).", node.frames_delivered)
        if self.fanout is not None:
            yield histogram(
                "messenger_fanout_seconds",
                "From a store write of chat events on this process to the moment its "
                "sessions' frames of them were written here (an upper bound).", self.fanout)
        yield counter("messenger_history_reads",
                      "Stream history pages read from the store (catch-ups, gap fills, repairs).",
                      node.history_reads)
        yield counter("messenger_gap_fills",
                      "Held gaps (an event past a missing offset) filled from the store.",
                      node.gap_fills)

    def _actors(self) -> Iterator[Metric]:
        services = self.services
        hub = services.realtime
        workers = services.mail_workers
        groups: list[tuple[str, Sequence[Actor], int]] = [
            ("chat", *registry_view(hub.chats)),
            ("user", *registry_view(hub.users)),
        ]
        for kind, single in (("mailer", workers.mailer), ("digests", workers.digests),
                             ("uploads", services.upload_cleaner)):
            groups.append((kind, [] if single is None else [single], 0))
        live = GaugeMetricFamily("messenger_actors", "Live actors by kind.", labels=["kind"])
        depth = GaugeMetricFamily("messenger_actor_inbox_depth",
                                  "Messages waiting in the inboxes of the actors of a kind.",
                                  labels=["kind"])
        restarts = CounterMetricFamily(
            "messenger_actor_restarts",
            "Actor failures handled by a restart (the one past too many stops the actor).",
            labels=["kind"])
        for kind, actors, restarts_before in groups:
            live.add_metric([kind], sum(1 for actor in actors if actor.alive))
            depth.add_metric([kind], sum(actor.inbox_depth for actor in actors))
            restarts.add_metric([kind], restarts_before + sum(a.restarts for a in actors))
        yield live
        yield depth
        yield restarts

    def _broker(self) -> Iterator[Metric]:
        broker = self.services.realtime.broker
        yield counter("messenger_broker_published",
                      "Publications this process handed to its broker.",
                      getattr(broker, "published", 0))
        yield counter("messenger_broker_received",
                      "Publications and control messages the broker received (in process: "
                      "every one queued for this node; over Redis: other nodes' ones).",
                      getattr(broker, "received", 0))
        if isinstance(broker, RedisBroker):
            yield counter("messenger_broker_reconnects",
                          "Connections to Redis made again after one was lost.",
                          broker.reconnects)
        yield gauge("messenger_broker_connected", "1 while the broker is connected.",
                    1 if broker.connected else 0)
        yield gauge("messenger_broker_pending",
                    "Publications received and not yet handed to this process's sessions.",
                    broker.pending)


def registry_view(registry: ActorRegistry[str, Any]) -> tuple[list[Actor], int]:
    """The actors of ``registry`` now, and the restarts of those that left it."""
    return registry.values(), registry.restarts_of_stopped
