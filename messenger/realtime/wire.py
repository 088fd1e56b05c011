"""How a publication or a control message travels as one pub/sub message (sans-I/O).

A publication::

    P1["<node>","<stream>",<offset>,"<epoch>","<source>",<source offset>,<marker>,"<origin>",
       <payload length>,<ack length>]\\n<payload><ack>

A control message::

    C1["<node>","<kind>",{<data>}]

``P1`` / ``C1`` name the kind and the format's version. The header is a JSON array made by
orjson (no spaces, no raw newline: the first ``\\n`` ends it); ``node`` is the publishing
node's id (so a node can skip its own messages by a prefix test, ``is_from``). The payload
(already JSON) and the ``ack`` follow the header verbatim — no re-encoding, no base64 — cut
by their lengths; ``ack length`` is ``-1`` when there is no ``ack``. A message is exactly as
long as its header says: a truncated or padded one is a ``WireError``, like any malformed one.

The stream and the offset come right after the node, so that the message of a fan-out copy
(the same event into another user stream) is made by concatenation alone::

    head + stream + '",' + offset + tail

with ``head = publication_head(node)`` (``P1["<node>","``) and ``tail = publication_tail(pub)``
(``,"<epoch>",…]\\n<payload><ack>``), both shared by every copy of the event. That is what the
Redis broker's fan-out script does inside Redis (``publication_copy`` is the same rule here).
A stream key is ``[uc]:`` and 24 hex digits and an offset an integer: neither needs escaping.
"""

from __future__ import annotations

import orjson

from messenger.realtime.broker import (
    BrokerError,
    ControlMessage,
    InvalidBrokerInput,
    Publication,
)

PUBLICATION_TAG = b"P1"
CONTROL_TAG = b"C1"
#: The longest message ``decode`` accepts (Redis's own limit for a string is 512 MB).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_dumps = orjson.dumps
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


class WireError(BrokerError):
    """A pub/sub message that is not a publication or control message of this format."""

    code = "broker_wire_error"


def publication_head(node_id: str) -> bytes:
    """What every publication of ``node_id`` starts with, up to its stream key."""
    return PUBLICATION_TAG + b"[" + _dumps(node_id) + b',"'


def publication_tail(pub: Publication) -> bytes:
    """What follows the offset: the rest of the header, the payload and the ``ack``."""
    ack = pub.ack
    try:
        rest = _dumps([pub.epoch, pub.source, pub.source_offset, pub.marker, pub.origin,
                       len(pub.payload), -1 if ack is None else len(ack)])
    except orjson.JSONEncodeError as error:
        raise InvalidBrokerInput(f"a publication that JSON cannot carry: {error}") from None
    if ack is None:
        return b"," + rest[1:] + b"\n" + pub.payload
    return b"," + rest[1:] + b"\n" + pub.payload + ack


def publication_copy(head: bytes, stream: str, offset: int, tail: bytes) -> bytes:
    """The message of one copy of an event (what the fan-out script builds in Redis)."""
    return b"%s%s\",%d%s" % (head, stream.encode(), offset, tail)


def encode_publication(pub: Publication, node_id: str) -> bytes:
    return publication_copy(publication_head(node_id), pub.stream, pub.offset,
                            publication_tail(pub))


def encode_control(msg: ControlMessage, node_id: str) -> bytes:
    try:
        return CONTROL_TAG + _dumps([node_id, msg.kind.value, msg.data])
    except orjson.JSONEncodeError as error:
        raise InvalidBrokerInput(f"a control message that JSON cannot carry: {error}") from None


def own_marker(node_id: str) -> bytes:
    """``is_from(data, own_marker(node))``: whether ``data`` was published by ``node``."""
    return b"[" + _dumps(node_id) + b","


def is_from(data: bytes, marker: bytes) -> bool:
    """Whether a message (of either kind) names the node of ``marker`` (``own_marker``)."""
    return data.startswith(marker, 2)


def decode(data: bytes) -> tuple[str, Publication | ControlMessage]:
    """The publishing node's id and what ``data`` carries (``WireError`` if it is malformed).

    A control message's ``origin`` is its node."""
    if type(data) is not bytes:
        raise WireError(f"a message is bytes, not {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"a message of {len(data)} bytes is too long")
    tag = data[:2]
    if tag == PUBLICATION_TAG:
        return _decode_publication(data)
    if tag == CONTROL_TAG:
        return _decode_control(data)
    raise WireError(f"unknown message tag {tag!r}")


def _decode_publication(data: bytes) -> tuple[str, Publication]:
    end = data.find(b"\n", 2)
    if end < 0:
        raise WireError("a publication without the end of its header")
    try:
        header = _loads(data[2:end])
    except _JSONDecodeError:
        raise WireError("a publication whose header is not JSON") from None
    if type(header) is not list or len(header) != 10:
        raise WireError("a publication header is an array of 10 fields")
    node, stream, offset, epoch, source, source_offset, marker, origin, size, ack_size = header
    if not (type(node) is str and node and type(source) is str
            and type(source_offset) is int and type(marker) is bool and type(origin) is str
            and type(size) is int and size >= 0 and type(ack_size) is int and ack_size >= -1):
        raise WireError("a publication header with a field of the wrong type")
    start = end + 1
    payload_end = start + size
    if len(data) != payload_end + (ack_size if ack_size > 0 else 0):
        raise WireError(f"a publication of {len(data)} bytes, not as long as its header says")
    try:
        pub = Publication(stream, offset, epoch, data[start:payload_end], source,
                          source_offset, marker, origin,
                          None if ack_size < 0 else data[payload_end:])
    except InvalidBrokerInput as error:
        raise WireError(f"a malformed publication: {error}") from None
    return node, pub


def _decode_control(data: bytes) -> tuple[str, ControlMessage]:
    try:
        header = _loads(data[2:])
    except _JSONDecodeError:
        raise WireError("a control message that is not JSON") from None
    if type(header) is not list or len(header) != 3:
        raise WireError("a control message is an array of 3 fields")
    node, kind, fields = header
    if not (type(node) is str and node and type(kind) is str and type(fields) is dict):
        raise WireError("a control message with a field of the wrong type")
    try:
        return node, ControlMessage(kind, fields, node)  # type: ignore[arg-type]
    except InvalidBrokerInput as error:
        raise WireError(f"a malformed control message: {error}") from None
