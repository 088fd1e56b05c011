"""The sans-I/O parts of the real-time layer: client frames, event bytes, the token bucket."""

from __future__ import annotations

import orjson
import pytest

from messenger.ratelimit import TokenBucket
from messenger.realtime import frames, protocol

CHAT = "6745a1f0c2b9e81d4a3f0c21"


def parse(frame: object | str) -> protocol.ClientFrame:
    data = frame if isinstance(frame, str) else orjson.dumps(frame).decode()
    return protocol.parse_client_frame(data, max_bytes=1024, max_text=100)


def error_of(frame: object | str) -> tuple[str, str | None]:
    with pytest.raises(protocol.FrameError) as info:
        parse(frame)
    return info.value.error.code, info.value.ref


def test_commands_parse_into_typed_frames() -> None:
    assert parse({"type": "send_message", "chat_id": CHAT, "text": "hi",
                  "client_msg_id": "k"}) == protocol.SendMessage(CHAT, "hi", "k", (), "k")
    assert parse({"type": "typing_start", "chat_id": CHAT}) == protocol.Typing(CHAT, True)
    assert parse({"type": "typing_stop", "chat_id": CHAT, "ref": "r"}) == protocol.Typing(
        CHAT, False, "r")
    assert parse({"type": "mark_read", "chat_id": CHAT, "seq": 4}) == protocol.MarkRead(CHAT, 4)
    assert parse({"type": "ping"}) == protocol.Ping()


@pytest.mark.parametrize(("frame", "code", "ref"), [
    ("{", "malformed_json", None),
    ("[]", "validation_error", None),
    ({"type": 3}, "validation_error", None),
    ({"type": "fly", "ref": "r"}, "unknown_type", "r"),
    ({"type": "send_message", "chat_id": "x", "text": "a", "client_msg_id": "k"},
     "validation_error", "k"),
    ({"type": "send_message", "chat_id": CHAT, "text": " ", "client_msg_id": "k"},
     "validation_error", "k"),
    ({"type": "send_message", "chat_id": CHAT, "text": "a" * 101, "client_msg_id": "k"},
     "validation_error", "k"),
    ({"type": "send_message", "chat_id": CHAT, "text": "a"}, "validation_error", None),
    ({"type": "mark_read", "chat_id": CHAT, "seq": -1}, "validation_error", None),
    ({"type": "mark_read", "chat_id": CHAT, "seq": True}, "validation_error", None),
    ({"type": "typing_start", "chat_id": CHAT, "x": {"$gt": 1}}, "validation_error", None),
    ("x" * 2000, "frame_too_large", None),
])
def test_bad_frames_name_the_problem_and_echo_the_ref(
    frame: object, code: str, ref: str | None
) -> None:
    assert error_of(frame) == (code, ref)


@pytest.mark.parametrize("levels", [33, 1000, 5000])
def test_deeply_nested_frames_are_validation_errors(levels: int) -> None:
    deep = '{"type":"ping","ref":"deep","x":' + "[" * levels + "]" * levels + "}"
    with pytest.raises(protocol.FrameError) as info:
        protocol.parse_client_frame(deep, max_bytes=1_000_000, max_text=100)
    error = info.value.error
    assert (error.code, error.details["field"]) == ("validation_error", "frame")
    assert "nested deeper than 32 levels" in error.message
    # the ref is echoed when orjson could read the frame (it reads up to 1,024 levels)
    assert info.value.ref == ("deep" if levels < 1024 else None)
    unclosed = "[" * levels
    with pytest.raises(protocol.FrameError) as info:
        protocol.parse_client_frame(unclosed, max_bytes=1_000_000, max_text=100)
    assert info.value.error.code == "validation_error"
    assert protocol.parse_client_frame(
        '{"type":"ping","x":' + "[" * 31 + "]" * 31 + "}", max_bytes=1024, max_text=100,
    ) == protocol.Ping()
    with pytest.raises(protocol.FrameError):
        protocol.parse_client_frame('{"type":"ping","x":[[]]}', max_bytes=1024, max_text=100,
                                    max_depth=2)


def test_control_frames_carry_the_cursor_as_event_id() -> None:
    assert orjson.loads(frames.control("pong", "v1.e1.7", ref="r")) == {
        "event_id": "v1.e1.7", "type": "pong", "ref": "r"}
    assert orjson.loads(frames.typing(CHAT, "u1", True)) == {
        "type": "typing", "chat_id": CHAT, "user_id": "u1", "is_typing": True}


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_ws_text_frame_lengths(size: int) -> None:
    frame = frames.ws_text_frame(b"a" * size)
    assert frame[0] == 0x81
    if size < 126:
        assert frame[1] == size and len(frame) == size + 2
    elif size < 65536:
        assert frame[1] == 126 and int.from_bytes(frame[2:4]) == size
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10]) == size


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.consume() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.5
    assert bucket.consume() and not bucket.consume()
    now[0] = 100.0
    assert sum(bucket.consume() for _ in range(10)) == 3
