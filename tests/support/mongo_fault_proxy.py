"""A TCP proxy in front of a MongoDB wire server that fails chosen writes, for failure tests.

The messenger talks to the proxy as to its database; the proxy forwards every byte both ways,
in its own thread and event loop, and reads the client's messages only far enough to see each
command's name and target. While ``refuse_inserts_into(collection)`` holds, an ``insert`` into
that collection is not forwarded: the proxy cuts that connection instead, as a network failure
between the two writes of a send would (the driver raises ``AutoReconnect``). With
``lose_answers_to_inserts_into(collection)`` the insert is forwarded and done, and the
connection is cut when its answer comes back: the client cannot tell it was written.
Everything else reaches the real server and comes back. ``allow_all()`` ends either.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading

import bson

from tests.support.processes import free_port

OP_MSG = 2013
_HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode


def command_of(body: bytes) -> dict[str, object] | None:
    """The command document of an ``OP_MSG`` body (after the header): its kind-0 section."""
    if len(body) < 9 or body[4] != 0:
        return None
    (length,) = struct.unpack_from("<i", body, 5)
    return bson.decode(body[5 : 5 + length])


class MongoFaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.refused: str | None = None  # the collection whose inserts are cut
        self.answer_lost: str | None = None  # the collection whose inserts' answers are cut
        self.cut = 0  # connections cut so far
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.wait(10)

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def refuse_inserts_into(self, collection: str) -> None:
        self.refused = collection

    def lose_answers_to_inserts_into(self, collection: str) -> None:
        self.answer_lost = collection

    def allow_all(self) -> None:
        self.refused = self.answer_lost = None

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port))
        started.set()
        self._loop.run_forever()

    async def _serve(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        swallowed: set[int] = set()  # request ids whose answers cut the connection
        back = asyncio.ensure_future(self._answers(up_r, client_w, swallowed))
        try:
            while True:
                header, body = await _read_message(client_r)
                _, request_id, _, op_code = _HEADER.unpack(header)
                command = command_of(body) if op_code == OP_MSG else None
                target = command.get("insert") if command is not None else None
                if target is not None and target == self.refused:
                    self.cut += 1
                    break
                if target is not None and target == self.answer_lost:
                    swallowed.add(request_id)
                up_w.write(header + body)
                await up_w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            back.cancel()
            for writer in (client_w, up_w):
                with contextlib.suppress(Exception):
                    writer.close()

    async def _answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       swallowed: set[int]) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError,
                                 asyncio.CancelledError):
            while True:
                header, body = await _read_message(reader)
                if _HEADER.unpack(header)[2] in swallowed:
                    self.cut += 1
                    break
                writer.write(header + body)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    header = await reader.readexactly(_HEADER.size)
    length = _HEADER.unpack(header)[0]
    return header, await reader.readexactly(length - _HEADER.size)


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    header = await reader.readexactly(_HEADER.size)
    length = _HEADER.unpack(header)[0]
    return header, await reader.readexactly(length - _HEADER.size)
    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()
