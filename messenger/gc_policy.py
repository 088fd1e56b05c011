"""When the process runs full garbage collections: on a schedule, not whenever it happens to.

With thousands of sessions a process tracks millions of long-lived objects (handlers, streams,
feeds), and CPython's full (oldest-generation) collection walks all of them: ~300 ms at 5,000
WebSocket sessions here, collecting nothing, at moments the allocation counters pick — in the
middle of a fan-out. ``GC_FULL_COLLECTION_SECONDS`` > 0 takes those collections off the
allocation counters (the young generations are still collected as usual: they are cheap) and
runs one full collection every that many seconds instead, so the pause is one per interval,
and cyclic garbage that reached the oldest generation is freed within the interval. 0 keeps
CPython's own policy.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger("messenger.gc")

#: The oldest generation's threshold while full collections are scheduled: never reached.
NEVER = 2**31 - 1


class ScheduledFullCollections:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._thresholds = gc.get_threshold()

    def start(self) -> ScheduledFullCollections:
        if self.interval > 0:
            young, middle, _ = self._thresholds
            gc.set_threshold(young, middle, NEVER)
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            gc.set_threshold(*self._thresholds)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            started = time.perf_counter()
            freed = gc.collect()
            log.debug("full collection: %d objects freed in %.0f ms", freed,
                      1000 * (time.perf_counter() - started))
