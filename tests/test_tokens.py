"""JWT codec: pinned algorithm, required claims, token types, expiry."""

from __future__ import annotations

import time

import jwt
import pytest

from messenger.errors import InvalidToken
from messenger.tokens import ACCESS, REFRESH, TokenCodec

SECRET = "s" * 64


def codec() -> TokenCodec:
    return TokenCodec(SECRET, "messenger", "clients", 900, 3600)


def test_access_round_trip() -> None:
    issued = codec().issue_access("abc")
    claims = codec().decode(issued.token, ACCESS)
    assert claims.user_id == "abc" and claims.token_type == ACCESS
    assert claims.jti == issued.claims.jti


def test_refresh_carries_family_and_rotates_within_it() -> None:
    first = codec().issue_refresh("abc")
    second = codec().issue_refresh("abc", first.claims.family_id)
    assert second.claims.family_id == first.claims.family_id
    assert second.claims.jti != first.claims.jti
    assert codec().decode(second.token, REFRESH).family_id == first.claims.family_id


def test_types_are_not_interchangeable() -> None:
    with pytest.raises(InvalidToken):
        codec().decode(codec().issue_refresh("abc").token, ACCESS)
    with pytest.raises(InvalidToken):
        codec().decode(codec().issue_access("abc").token, REFRESH)


def test_wrong_secret_issuer_audience_rejected() -> None:
    token = codec().issue_access("abc").token
    for other in (
        TokenCodec("t" * 40, "messenger", "clients", 900, 900),
        TokenCodec(SECRET, "someone-else", "clients", 900, 900),
        TokenCodec(SECRET, "messenger", "other-app", 900, 900),
    ):
        with pytest.raises(InvalidToken):
            other.decode(token, ACCESS)


def test_algorithm_is_pinned() -> None:
    payload = jwt.decode(codec().issue_access("abc").token, options={"verify_signature": False})
    for alg in ("HS512", "none"):
        forged = jwt.encode(payload, SECRET if alg != "none" else None, algorithm=alg)
        with pytest.raises(InvalidToken):
            codec().decode(forged, ACCESS)


def test_expired_token_rejected() -> None:
    payload = jwt.decode(codec().issue_access("abc").token, options={"verify_signature": False})
    payload["exp"] = int(time.time()) - 10
    with pytest.raises(InvalidToken, match="expired"):
        codec().decode(jwt.encode(payload, SECRET, algorithm="HS256"), ACCESS)


def test_missing_claim_rejected() -> None:
    payload = jwt.decode(codec().issue_access("abc").token, options={"verify_signature": False})
    del payload["typ"]
    with pytest.raises(InvalidToken):
        codec().decode(jwt.encode(payload, SECRET, algorithm="HS256"), ACCESS)
