"""Body parsing and field validation (no I/O)."""

from __future__ import annotations

import time

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


def nested_object(levels: int, leaf: bytes = b"1") -> bytes:
    """``{"a": {"a": … leaf …}}``: ``levels`` objects, one inside the other."""
    return b'{"a":' * levels + leaf + b"}" * levels


@pytest.mark.parametrize("levels", [33, 1000, 1024, 1025, 5000, 100_000])
@pytest.mark.parametrize("shape", ["objects", "arrays", "unclosed"])
def test_nesting_deeper_than_the_limit_is_refused(levels: int, shape: str) -> None:
    raw = {"objects": nested_object(levels),
           "arrays": b'{"a":' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}",
           "unclosed": b"[" * levels}[shape]
    with pytest.raises(ValidationFailed) as err:
        validation.parse_json_object(raw)
    assert (err.value.code, err.value.field) == ("validation_error", "body")
    assert err.value.message == "JSON is nested deeper than 32 levels"


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert validation.parse_json_object(nested_object(32))["a"]["a"]
    assert validation.parse_json_object(b'{"a":' + b"[" * 31 + b"]" * 31 + b"}")
    with pytest.raises(ValidationFailed):
        validation.parse_json_object(nested_object(4), max_depth=3)
    assert validation.parse_json_object(nested_object(200), max_depth=200)


def test_depth_check_ignores_brackets_inside_strings() -> None:
    text = b'"' + b"[{" * 500 + b'\\\"' + b"[" * 500 + b'"'
    assert validation.parse_json_object(b'{"a":' + text + b"}")["a"].startswith("[{")
    # invalid JSON (a trailing comma) that is not deep is malformed, not too deep
    with pytest.raises(MalformedJson):
        validation.parse_json_object(b'{"a":' + text + b",}")
    assert not validation.nesting_exceeds(b'["' + b"[" * 100, 32)  # unterminated string
    assert validation.nesting_exceeds("[" * 33, 32) and not validation.nesting_exceeds("[]" * 99, 1)


def test_depth_scan_is_linear_on_hostile_text() -> None:
    """Unclosed strings full of escaped quotes and brackets: one pass, not one per quote."""
    hostile = b'["' + b'\\"[' * 300_000
    started = time.perf_counter()
    assert not validation.nesting_exceeds(hostile, 32)
    assert not validation.nesting_exceeds(b"[]," * 300_000, 32)
    assert time.perf_counter() - started < 5  # quadratic would be hours


def test_operator_keys_are_found_at_any_allowed_depth_in_document_order() -> None:
    raw = b'{"a": [1, {"b": {"ok": 1, "$x": 1}}], "$y": 2}'
    with pytest.raises(ValidationFailed) as err:
        validation.parse_json_object(raw)
    assert err.value.field == "a.b.$x"
    with pytest.raises(ValidationFailed) as err:
        validation.parse_json_object(nested_object(31, b'{"$ne": null}'))
    assert err.value.field == "a." * 31 + "$ne"


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
