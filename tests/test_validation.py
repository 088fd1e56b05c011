"""Body parsing and field validation (no I/O)."""

from __future__ import annotations

import pytest

from messenger import validation
from messenger.errors import MalformedJson, ValidationFailed


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b"{'a': 1}", b"nul"])
def test_malformed_json(raw: bytes) -> None:
    with pytest.raises(MalformedJson):
        validation.parse_json_object(raw)


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"x"', b"null", b""])
def test_body_must_be_object(raw: bytes) -> None:
    with pytest.raises(ValidationFailed) as err:
        validation.parse_json_object(raw)
    assert err.value.field == "body"


@pytest.mark.parametrize(
    ("raw", "field"),
    [(b'{"$where": 1}', "$where"), (b'{"a": {"$ne": null}}', "a.$ne"),
     (b'{"a": [{"$gt": 1}]}', "a.$gt")],
)
def test_operator_keys_refused(raw: bytes, field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        validation.parse_json_object(raw)
    assert err.value.field == field


def test_email_normalised_and_checked() -> None:
    assert validation.email({"email": "  Ann@Example.COM "}) == "ann@example.com"
    for bad in ("ann", "ann@", "@x.com", "a b@x.com", "ann@example", {"$ne": None}, 5, None):
        with pytest.raises(ValidationFailed) as err:
            validation.email({"email": bad})
        assert err.value.field == "email"


def test_password_limits_in_bytes() -> None:
    assert validation.password({"password": "12345678"}) == "12345678"
    assert validation.password({"password": "é" * 36}) == "é" * 36  # 72 bytes
    for bad in ("1234567", "é" * 37, 12345678, None):
        with pytest.raises(ValidationFailed):
            validation.password({"password": bad})


def test_integer_rejects_bool_and_strings() -> None:
    assert validation.integer({"seq": 3}, "seq") == 3
    assert validation.integer({"seq": 3.0}, "seq") == 3  # JSON Schema: 3.0 is an integer
    for bad in (True, "3", 3.5, float("inf"), 1e300, -1, None):
        with pytest.raises(ValidationFailed):
            validation.integer({"seq": bad}, "seq")


def test_message_text() -> None:
    assert validation.message_text({"text": " hi "}, 10) == " hi "
    for bad in ("", "   ", "x" * 11, 5, None):
        with pytest.raises(ValidationFailed):
            validation.message_text({"text": bad}, 10)


def test_query_int() -> None:
    kw = {"default": 50, "minimum": 1, "maximum": 200}
    assert validation.query_int(None, "limit", **kw) == 50
    assert validation.query_int("200", "limit", **kw) == 200
    for bad in ("0", "201", "abc", "-1", "1e3", ""):
        with pytest.raises(ValidationFailed):
            validation.query_int(bad, "limit", **kw)
