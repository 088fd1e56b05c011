"""clock.iso_millis renders exactly what isoformat(from_millis(...)) does, for any instant."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from messenger.clock import from_millis, iso_millis, isoformat, to_millis, utcnow


@given(st.integers(min_value=0, max_value=253_402_300_799_999))  # up to 9999-12-31T23:59:59.999
def test_iso_millis_equals_isoformat(millis: int) -> None:
    assert iso_millis(millis) == isoformat(from_millis(millis))


def test_iso_millis_of_now_round_trips() -> None:
    now = utcnow()
    assert iso_millis(to_millis(now)) == isoformat(now)
    assert iso_millis(0) == "1970-01-01T00:00:00.000Z"
