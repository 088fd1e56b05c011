"""The pub/sub message format (messenger/realtime/wire.py): round trips, the fan-out
concatenation rule, and refusal of garbage, truncation and padding with a typed error."""

from __future__ import annotations

import os
import random

import orjson
import pytest

from messenger.ids import new_id
from messenger.realtime.broker import (
    ControlKind,
    ControlMessage,
    InvalidBrokerInput,
    Publication,
    chat_stream,
    user_stream,
)
from messenger.realtime.wire import (
    WireError,
    decode,
    encode_control,
    encode_publication,
    is_from,
    own_marker,
    publication_copy,
    publication_head,
    publication_tail,
)

EPOCH = "0123456789abcdef"
PAYLOAD = b'{"type":"new_message","message":{"text":"h\\u00e9llo \\n \\"q\\""}}'


def publications() -> list[Publication]:
    chat = new_id()
    return [
        Publication(user_stream(new_id()), 7, EPOCH, PAYLOAD, chat, 3, False, "sess-1",
                    b'{"type":"message_sent"}'),
        Publication(chat_stream(chat), 1, EPOCH, b"{}"),
        Publication(user_stream(new_id()), 2, EPOCH, PAYLOAD, chat, 9, True),
        Publication(user_stream(new_id()), 0, "", b'{"type":"typing"}', new_id()),  # ephemeral
        Publication(user_stream(new_id()), 5, EPOCH, b"", ack=b""),  # empty payload and ack
        Publication(user_stream(new_id()), 2**62, EPOCH, b"\n\n\x00\xff" * 10, "",
                    origin="\u00e9\n\"]"),  # bytes and strings that need care
    ]


@pytest.mark.parametrize("pub", publications(), ids=lambda p: f"{p.stream[0]}{p.offset}")
def test_a_publication_round_trips(pub: Publication) -> None:
    data = encode_publication(pub, "node-1")
    node, back = decode(data)
    assert node == "node-1"
    assert back == pub and back.ack == pub.ack and back.origin == pub.origin
    assert type(back.payload) is bytes


def test_the_payload_is_carried_verbatim_after_a_json_header() -> None:
    pub = publications()[0]
    data = encode_publication(pub, "n")
    header, _, rest = data.partition(b"\n")
    assert header.startswith(b"P1[")
    assert orjson.loads(header[2:]) == [
        "n", pub.stream, 7, EPOCH, pub.source, 3, False, "sess-1", len(PAYLOAD),
        len(b'{"type":"message_sent"}')]
    assert rest == PAYLOAD + b'{"type":"message_sent"}'  # no escaping, no base64


def test_a_big_payload_round_trips() -> None:
    payload = b'{"blob":"' + os.urandom(3_000_000).hex().encode() + b'"}'
    pub = Publication(user_stream(new_id()), 1, EPOCH, payload, ack=payload[:1000])
    data = encode_publication(pub, "n")
    assert len(data) < len(payload) + 1200
    assert decode(data)[1] == pub


def test_a_fan_out_copy_is_the_head_the_stream_the_offset_and_the_shared_tail() -> None:
    chat = new_id()
    event = Publication(user_stream(new_id()), 1, EPOCH, PAYLOAD, chat, 4, False, "s",
                        b'{"a":1}')
    head, tail = publication_head("node-\u00e9"), publication_tail(event)
    for offset in (1, 12, 99999):
        stream = user_stream(new_id())
        copy = Publication(stream, offset, EPOCH, PAYLOAD, chat, 4, False, "s", b'{"a":1}')
        # what the Lua script concatenates inside Redis
        lua = head + stream.encode() + b'",' + str(offset).encode() + tail
        assert lua == publication_copy(head, stream, offset, tail)
        assert lua == encode_publication(copy, "node-\u00e9")
        assert decode(lua) == ("node-\u00e9", copy)


def test_a_control_message_round_trips_with_its_node_as_origin() -> None:
    msg = ControlMessage(ControlKind.MEMBER_REMOVED,
                         {"chat_id": new_id(), "n": 3, "flag": True, "none": None, "s": "\n"})
    data = encode_control(msg, "node-2")
    node, back = decode(data)
    assert node == "node-2"
    assert back == ControlMessage(msg.kind, msg.data, "node-2")


def test_a_node_recognises_its_own_messages_by_prefix() -> None:
    pub = publications()[1]
    msg = ControlMessage(ControlKind.CHAT_CHANGED, {"chat_id": new_id()})
    mine, theirs = own_marker("node-1"), own_marker("node-10")
    for data in (encode_publication(pub, "node-1"), encode_control(msg, "node-1")):
        assert is_from(data, mine) and not is_from(data, theirs)
    assert not is_from(encode_publication(pub, "node-10"), mine)


def test_what_json_cannot_carry_is_refused_on_encode() -> None:
    with pytest.raises(InvalidBrokerInput):
        encode_publication(Publication(user_stream(new_id()), 1, EPOCH, b"{}", "x", 2**64),
                           "n")
    with pytest.raises(InvalidBrokerInput):
        encode_control(ControlMessage(ControlKind.CHAT_CHANGED, {"n": 2**64}), "n")


def good() -> bytes:
    return encode_publication(publications()[0], "n")


def header_of(fields: list) -> bytes:
    return b"P1" + orjson.dumps(fields) + b"\n{}"


VALID = ["n", user_stream("0" * 24), 1, EPOCH, "", 0, False, "", 2, -1]


@pytest.mark.parametrize("data", [
    b"",
    b"P",
    b"P1",
    b"X1[]",
    b"P2" + good()[2:],  # another version
    b"P1[\"n\"",  # no end of header
    b"P1{not json}\n",
    b"P1{}\n{}",  # not an array
    header_of(VALID[:-1]),  # 9 fields
    header_of([*VALID, 0]),  # 11 fields
    header_of(["", *VALID[1:]]),  # no node
    header_of([*VALID[:2], "1", *VALID[3:]]),  # offset as a string
    header_of([*VALID[:2], -1, *VALID[3:]]),  # negative offset
    header_of([*VALID[:2], 1.5, *VALID[3:]]),
    header_of([VALID[0], "x:" + "0" * 24, *VALID[2:]]),  # not a stream key
    header_of([*VALID[:3], "", *VALID[4:]]),  # a stored offset without epoch
    header_of([*VALID[:5], "0", *VALID[6:]]),  # source offset as a string
    header_of([*VALID[:6], 0, *VALID[7:]]),  # marker not a bool
    header_of([*VALID[:8], -1, -1]),  # negative payload length
    header_of([*VALID[:9], -2]),  # ack length below -1
    header_of([*VALID[:8], 3, -1]),  # payload truncated
    header_of([*VALID[:8], 1, -1]),  # padded
    header_of([*VALID[:9], 1]),  # ack truncated
    header_of(VALID).replace(b',1,"', b',18446744073709551616,"', 1),  # > 64 bits: a float
    b"C1",
    b"C1[\"n\",\"chat_changed\"]",
    b"C1[\"n\",\"chat_changed\",[]]",
    b"C1[\"\",\"chat_changed\",{}]",
    b"C1[\"n\",\"no_such_kind\",{}]",
    b"C1[\"n\",\"chat_changed\",{\"x\":{\"nested\":1}}]",
    b"C1[\"n\",\"chat_changed\",{\"x\":1.5}]",
    b"C1[\"n\",\"chat_changed\",{}]junk",
])
def test_a_malformed_message_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(WireError) as refused:
        decode(data)
    assert refused.value.code == "broker_wire_error"


def test_every_truncation_and_random_garbage_is_a_typed_error() -> None:
    data = good()
    for cut in range(len(data)):
        with pytest.raises(WireError):
            decode(data[:cut])
    with pytest.raises(WireError):
        decode(data + b"x")
    rng = random.Random(7)
    for _ in range(2000):
        junk = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            junk[rng.randrange(len(junk))] = rng.randrange(256)
        try:
            node, pub = decode(bytes(junk))
        except WireError:
            continue
        assert isinstance(node, str) and isinstance(pub, Publication)  # a valid message still
    with pytest.raises(WireError):
        decode("P1[]\n")  # type: ignore[arg-type]
