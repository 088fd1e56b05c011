"""The store as the broker's ``HistorySource``: what has been durably written to each stream.

Offsets have no holes (``Store.append_stream``), so a read after offset *n* returns *n + 1*,
*n + 2*, … or starts higher only because retention trimmed the stream (``read_history`` turns
that into ``HistoryTrimmed``).
"""

from __future__ import annotations

from typing import Protocol

from messenger.models import StreamEntry
from messenger.realtime.broker import Publication, StreamPosition


class StreamReader(Protocol):
    """The part of ``Store`` that history needs."""

    async def stream_epoch(self) -> str: ...

    async def read_stream(self, stream: str, after: int, limit: int) -> list[StreamEntry]: ...

    async def stream_bounds(self, streams: list[str]) -> dict[str, tuple[int, int]]: ...


class StoreHistory:
    def __init__(self, store: StreamReader) -> None:
        self._store = store
        self._epoch: str | None = None

    async def epoch(self) -> str:
        if self._epoch is None:
            self._epoch = await self._store.stream_epoch()
        return self._epoch

    async def history(self, stream: str, after_offset: int, limit: int) -> list[Publication]:
        epoch = await self.epoch()
        entries = await self._store.read_stream(stream, after_offset, limit)
        return [publication(entry, epoch) for entry in entries]

    async def position(self, stream: str) -> StreamPosition:
        epoch = await self.epoch()
        bounds = await self._store.stream_bounds([stream])
        return StreamPosition(bounds[stream][1], epoch)

    async def bounds(self, streams: list[str]) -> dict[str, tuple[int, int]]:
        """``{stream: (floor, head)}``: every offset in ``(floor, head]`` is stored."""
        return await self._store.stream_bounds(streams)


def publication(entry: StreamEntry, epoch: str) -> Publication:
    chat, chat_offset = entry.source if entry.source is not None else ("", 0)
    return Publication(entry.stream, entry.offset, epoch, entry.payload, chat, chat_offset,
                       entry.marker)
