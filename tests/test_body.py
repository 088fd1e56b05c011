"""BoundedBody: the request-body size limit as a plain state machine."""

from __future__ import annotations

import pytest

from handlers.body import BoundedBody


def test_collects_up_to_the_limit() -> None:
    body = BoundedBody(limit=10, drain_limit=100)
    assert body.feed(b"12345") is False
    assert body.feed(b"67890") is False
    assert not body.too_large and body.data() == b"1234567890"


def test_past_the_limit_discards_then_cuts_past_the_drain_limit() -> None:
    body = BoundedBody(limit=10, drain_limit=30)
    assert body.feed(b"x" * 11) is False
    assert body.too_large and body.data() == b""
    assert body.feed(b"x" * 19) is False  # 30 seen: still draining
    assert body.feed(b"x") is True  # 31 seen: cut
    assert body.too_large


@pytest.mark.parametrize(
    ("header", "refused"),
    [(None, False), ("10", False), (" 10 ", False), ("11", True), ("-1", True), ("abc", True)],
)
def test_declared_length(header: str | None, refused: bool) -> None:
    body = BoundedBody(limit=10)
    assert body.declared_too_large(header) is refused
    assert body.too_large is refused
