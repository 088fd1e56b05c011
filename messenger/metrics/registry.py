"""``Metrics``: one application's ``CollectorRegistry`` and what it watches.

Each ``MessengerApp`` makes its own (never the global default registry: tests run several
applications in one process, each with its own numbers). It holds the ``MessengerCollector``,
the standard process, platform and GC collectors of ``prometheus_client``, and — when the
services' store is a ``MeasuredStore`` — the ``FanoutClock`` that store starts after each write
of chat events. ``render`` is the body of ``GET /metrics`` in the format the scraper asked for.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from messenger.http_server import LimitedHTTPServer
from messenger.metrics.collector import MessengerCollector
from messenger.metrics.fanout import FanoutClock
from messenger.metrics.histogram import Histogram
from messenger.metrics.measured_store import MeasuredStore
from messenger.realtime.broker import Broker, InProcessBroker
from messenger.realtime.redis_broker import RedisBroker
from messenger.services import Services


class Metrics:
    def __init__(self, services: Services) -> None:
        self.registry = CollectorRegistry()
        self.collector = MessengerCollector(services)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.fanout: FanoutClock | None = None
        store, hub = services.store, services.realtime
        taken = handed_over(hub.broker)
        if isinstance(store, MeasuredStore) and taken is not None:
            node = hub.node
            self.fanout = FanoutClock(taken, lambda: hub.broker.pending,
                                      lambda: node.frames_delivered, Histogram())
            store.events_stored = self.fanout.stored
            self.collector.fanout = self.fanout.histogram

    def watch_server(self, server: LimitedHTTPServer) -> None:
        """Report the open connections of the application's public HTTP server."""
        self.collector.server = server

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition in the format ``accept`` asks for (default: the Prometheus text
        format 0.0.4), and its ``Content-Type``."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def handed_over(broker: Broker) -> Callable[[], int] | None:
    """How many items the broker has handed to its node so far, ever (None: unknown)."""
    if isinstance(broker, RedisBroker):
        return lambda: broker.received + broker.looped_back - broker.pending
    if isinstance(broker, InProcessBroker):
        return lambda: broker.received - broker.pending
    return None
