"""A real SMTP server for the tests (aiosmtpd on a loopback port) that keeps what it receives.

Recipients whose address contains ``reject`` are refused with a permanent 550, ``tempfail``
with a temporary 451. ``stop()`` and ``start()`` again (same port) stand for an SMTP outage.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.processes import free_port

TOKEN_IN_LINK = re.compile(r"#token=([A-Za-z0-9_-]+)")


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None, "no text/plain part"
        return str(body.get_content()).replace("\r\n", "\n")

    @property
    def token(self) -> str:
        """The token of the link in the email (verification, reset)."""
        found = TOKEN_IN_LINK.search(self.text)
        assert found, f"no link with a token in: {self.text!r}"
        return found.group(1)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if "reject" in address:
            return "550 5.1.1 no such user here"
        if "tempfail" in address:
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.sink.lock:
            self.sink.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 Message accepted for delivery"


class SmtpSink:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> SmtpSink:
        if self._controller is None:
            controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
            controller.start()
            self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [item for item in self.received if address in item.recipients]

    async def wait_for(self, address: str, count: int = 1, *, subject: str | None = None,
                       timeout: float = 20.0) -> list[Received]:
        """The first ``count`` emails to ``address`` (with ``subject`` in their subject),
        polling until they have arrived; fails after ``timeout`` seconds."""

        def found() -> list[Received]:
            return [item for item in self.to(address)
                    if subject is None or subject in item.subject]

        await until(lambda: len(found()) >= count, timeout,
                    f"{count} email(s) to {address} ({subject or 'any subject'})")
        return found()[:count]


async def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` (a function, or a coroutine function) until it returns something
    true, and return that; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)
