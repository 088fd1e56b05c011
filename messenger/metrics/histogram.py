"""A histogram as a plain list of bucket counts: what a hot path can afford (sans-I/O).

``observe`` is one ``bisect`` into the bucket bounds and two additions: no lock, no
``prometheus_client`` object (whose ``Histogram.observe`` takes a lock). Everything runs on the
event loop's thread, so the counts are read at scrape time as they are; ``buckets`` turns them
into the cumulative ``le`` buckets of the Prometheus format.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from prometheus_client.utils import floatToGoString

#: Seconds: from a tenth of a millisecond (a store call on SQLite's thread, a small fan-out)
#: to ten seconds (a database that is not answering).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Counts of observations per bucket: bucket *i* holds the values ``<= bounds[i]`` (and
    above ``bounds[i - 1]``), the last one every value above the largest bound (``+Inf``)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError("bucket bounds must be increasing and not empty")
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        """The cumulative buckets, ``(le, count of values <= le)``, ending with ``+Inf``."""
        cumulative: list[tuple[str, float]] = []
        seen = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            seen += count
            cumulative.append((floatToGoString(bound), seen))
        return cumulative
