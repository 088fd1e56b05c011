"""The sans-I/O delivery cursor and the resume cursor (messenger/realtime)."""

from __future__ import annotations

import pytest

from messenger.realtime.cursor import StreamCursor, Verdict
from messenger.realtime.resume import (
    CursorError,
    OutdatedCursor,
    ResumeCursor,
    encode_cursor,
    encode_cursor_around,
)

EPOCH = "e1"


def deliver_all(cursor: StreamCursor[str], offsets: list[int], now: float = 0.0) -> list[Verdict]:
    return [cursor.accept(EPOCH, o, f"event {o}", now) for o in offsets]


def test_in_order_events_are_delivered_in_order() -> None:
    cursor: StreamCursor[str] = StreamCursor(EPOCH)
    assert deliver_all(cursor, [1, 2, 3]) == [Verdict.DELIVER] * 3
    assert cursor.take_ready() == [(1, "event 1"), (2, "event 2"), (3, "event 3")]
    assert cursor.take_ready() == []
    assert cursor.offset == 3 and cursor.missing() is None


def test_duplicates_are_skipped_live_or_held() -> None:
    cursor: StreamCursor[str] = StreamCursor(EPOCH, offset=5)
    assert deliver_all(cursor, [4, 5]) == [Verdict.SKIP, Verdict.SKIP]
    assert cursor.accept(EPOCH, 7, "seven", 0.0) is Verdict.GAP
    assert cursor.accept(EPOCH, 7, "seven again", 0.0) is Verdict.SKIP  # held already
    assert cursor.accept(EPOCH, 6, "six", 0.0) is Verdict.DELIVER
    assert cursor.take_ready() == [(6, "six"), (7, "seven")]
    assert cursor.accept(EPOCH, 6, "six again", 0.0) is Verdict.SKIP
    assert cursor.take_ready() == []


def test_a_gap_is_held_then_filled_in_order() -> None:
    cursor: StreamCursor[str] = StreamCursor(EPOCH, offset=10, hold=0.5)
    assert cursor.accept(EPOCH, 13, "13", 1.0) is Verdict.GAP
    assert cursor.accept(EPOCH, 14, "14", 1.1) is Verdict.GAP
    assert cursor.take_ready() == []  # nothing is delivered past a hole
    assert cursor.missing() == (11, 12)
    assert cursor.fill_due(1.2) is None  # still within the hold: may arrive live
    assert cursor.accept(EPOCH, 11, "11", 1.3) is Verdict.DELIVER
    assert cursor.take_ready() == [(11, "11")]
    assert cursor.missing() == (12, 12)
    assert cursor.accept(EPOCH, 12, "12", 1.4) is Verdict.DELIVER
    assert cursor.take_ready() == [(12, "12"), (13, "13"), (14, "14")]
    assert cursor.held == 0 and cursor.fill_due(99.0) is None


def test_a_gap_past_the_hold_time_asks_for_the_store() -> None:
    cursor: StreamCursor[str] = StreamCursor(EPOCH, offset=0, hold=0.5)
    assert cursor.accept(EPOCH, 4, "4", 10.0) is Verdict.GAP
    assert cursor.fill_due(10.49) is None
    assert cursor.fill_due(10.5) == (1, 3)
    # what the store returns for 1..3, plus a live copy of 2 racing it
    assert cursor.accept(EPOCH, 1, "1 (store)", 10.6) is Verdict.DELIVER
    assert cursor.accept(EPOCH, 2, "2 (live)", 10.6) is Verdict.DELIVER
    assert cursor.accept(EPOCH, 2, "2 (store)", 10.6) is Verdict.SKIP
    assert cursor.accept(EPOCH, 3, "3 (store)", 10.6) is Verdict.DELIVER
    assert [o for o, _ in cursor.take_ready()] == [1, 2, 3, 4]
    assert cursor.fill_due(11.0) is None


def test_the_hold_runs_from_the_arrival_of_the_first_event_past_the_gap() -> None:
    cursor: StreamCursor[str] = StreamCursor(EPOCH, hold=0.5)
    cursor.accept(EPOCH, 2, "2", 0.0)
    cursor.accept(EPOCH, 4, "4", 0.2)
    assert cursor.accept(EPOCH, 1, "1", 0.4) is Verdict.DELIVER  # 1, 2 go; 3 is still missing
    assert cursor.missing() == (3, 3)
    # 4 has waited since 0.2: a second gap costs no second full hold
    assert cursor.fill_due(0.65) is None and cursor.fill_due(0.75) == (3, 3)


def test_an_epoch_change_or_too_much_held_means_resync() -> None:
    cursor: StreamCursor[str] = StreamCursor(EPOCH, offset=3)
    assert cursor.accept("e2", 4, "4", 0.0) is Verdict.RESYNC
    assert cursor.accept(EPOCH, 4, "4", 0.0) is Verdict.RESYNC  # broken for good
    small: StreamCursor[str] = StreamCursor(EPOCH, max_held=2)
    assert deliver_all(small, [3, 4]) == [Verdict.GAP, Verdict.GAP]
    assert small.accept(EPOCH, 5, "5", 0.0) is Verdict.RESYNC


def test_resume_cursor_round_trips_and_is_opaque_text() -> None:
    chat, other = "ab" * 12, "01" * 12
    cursor = ResumeCursor("e1", 7, {chat: 42, other: 0})
    text = cursor.encode()
    assert text.startswith("v1.") and text.isascii() and " " not in text
    assert text == f"v1.e1.7.{other}-0.{chat}-42"  # chat ids in order: one text per position
    assert ResumeCursor.decode(text) == cursor
    assert ResumeCursor.decode(ResumeCursor("e1").encode()) == ResumeCursor("e1", 0, {})


def test_cursors_of_another_version_are_told_apart_from_garbage() -> None:
    for text in ("7", "123456", "v2.abc.1", "v10.x"):
        with pytest.raises(OutdatedCursor):
            ResumeCursor.decode(text)


@pytest.mark.parametrize("text", [
    "", "-7", "v2 x", "vx.1", "v1.", "v1.e1", "v1.!!!.1", "v1.e1.-1", "v1.e1.01", "v1.E1.1",
    "v1.e1." + "1" * 17, "v1.e1." + str(2**60), "v1.e1.1." + "ab" * 12,
    "v1.e1.1." + "ab" * 12 + "-1." + "ab" * 12 + "-2",  # the same chat twice
    "v1.e1.1.xyz-1", "v1.e1.1." + "ab" * 12 + "-", "v1.e1.1.." + "A" * 9000,
    "v1.e1.1" + "".join(f".{i:024x}-1" for i in range(257)),
])
def test_resume_cursor_refuses_what_it_did_not_make(text: str) -> None:
    with pytest.raises(CursorError):
        ResumeCursor.decode(text)


def test_resume_cursor_refuses_what_is_not_text() -> None:
    for value in (None, 7, b"v1.e1.1", ["v1.e1.1"]):
        with pytest.raises(CursorError):
            ResumeCursor.decode(value)


def test_the_text_around_one_chats_offset_is_the_cursor_for_any_offset() -> None:
    chats = {"ab" * 12: 3, "01" * 12: 9, "ff" * 12: 1}
    for chat in chats:
        before, after = encode_cursor_around("e1", 7, chats, chat)
        for offset in (0, 5, 123456):
            assert before + str(offset) + after == encode_cursor(
                "e1", 7, {**chats, chat: offset})
