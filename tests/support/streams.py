"""What the stream and fan-out contract tests share: ids, and reading a whole stream."""

from __future__ import annotations

from messenger.models import StreamEntry
from messenger.store import Store

CHAT = "c" * 24
OTHER_CHAT = "d" * 24
ANN, BOB, CID = "a" * 24, "b" * 24, "e" * 24
MEMBERS = (ANN, BOB, CID)


async def entries(store: Store, stream: str) -> list[StreamEntry]:
    """Every stored entry of ``stream`` (the tests keep streams short)."""
    return await store.read_stream(stream, 0, 1000)
