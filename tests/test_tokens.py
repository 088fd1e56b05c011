"""JWT codec: pinned algorithm, required claims, token types, expiry."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest

from messenger.errors import InvalidToken
from messenger.tokens import ACCESS, REFRESH, TokenCodec

SECRET = "s" * 64
USER = "6745a1f0c2b9e81d4a3f0b11"


def codec() -> TokenCodec:
    return TokenCodec(SECRET, "messenger", "clients", 900, 3600)


def test_access_round_trip() -> None:
    issued = codec().issue_access(USER)
    claims = codec().decode(issued.token, ACCESS)
    assert claims.user_id == USER and claims.token_type == ACCESS
    assert claims.jti == issued.claims.jti


def test_refresh_carries_family_and_rotates_within_it() -> None:
    first = codec().issue_refresh(USER)
    second = codec().issue_refresh(USER, first.claims.family_id)
    assert second.claims.family_id == first.claims.family_id
    assert second.claims.jti != first.claims.jti
    assert codec().decode(second.token, REFRESH).family_id == first.claims.family_id


def test_types_are_not_interchangeable() -> None:
    with pytest.raises(InvalidToken):
        codec().decode(codec().issue_refresh(USER).token, ACCESS)
    with pytest.raises(InvalidToken):
        codec().decode(codec().issue_access(USER).token, REFRESH)


def test_wrong_secret_issuer_audience_rejected() -> None:
    token = codec().issue_access(USER).token
    for other in (
        TokenCodec("t" * 40, "messenger", "clients", 900, 900),
        TokenCodec(SECRET, "someone-else", "clients", 900, 900),
        TokenCodec(SECRET, "messenger", "other-app", 900, 900),
    ):
        with pytest.raises(InvalidToken):
            other.decode(token, ACCESS)


def test_algorithm_is_pinned() -> None:
    payload = jwt.decode(codec().issue_access(USER).token, options={"verify_signature": False})
    for alg in ("HS512", "none"):
        forged = jwt.encode(payload, SECRET if alg != "none" else None, algorithm=alg)
        with pytest.raises(InvalidToken):
            codec().decode(forged, ACCESS)


def test_expired_token_rejected() -> None:
    payload = jwt.decode(codec().issue_access(USER).token, options={"verify_signature": False})
    payload["exp"] = int(time.time()) - 10
    with pytest.raises(InvalidToken, match="expired"):
        codec().decode(jwt.encode(payload, SECRET, algorithm="HS256"), ACCESS)


def test_missing_claim_rejected() -> None:
    payload = jwt.decode(codec().issue_access(USER).token, options={"verify_signature": False})
    del payload["typ"]
    with pytest.raises(InvalidToken):
        codec().decode(jwt.encode(payload, SECRET, algorithm="HS256"), ACCESS)


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def signed(payload: dict[str, Any]) -> str:
    """Sign any JSON payload (``jwt.encode`` itself refuses some malformed claims)."""
    return jwt.PyJWS().encode(json.dumps(payload).encode(), SECRET, algorithm="HS256")


NOW = int(time.time())

#: Validly signed tokens whose claims are not what this server issues; each must be refused
#: with InvalidToken (never a TypeError, OverflowError or ValueError from further down).
BAD_ACCESS_CLAIMS = [
    pytest.param({"exp": str(NOW + 600)}, id="exp-string"),
    pytest.param({"exp": "9999999999"}, id="exp-far-string"),
    pytest.param({"exp": 10**30}, id="exp-huge"),
    pytest.param({"exp": 9999999999}, id="exp-beyond-ttl"),
    pytest.param({"exp": float(NOW + 600)}, id="exp-float"),
    pytest.param({"exp": NOW + 600.5}, id="exp-fraction"),
    pytest.param({"exp": True}, id="exp-bool"),
    pytest.param({"exp": [NOW + 600]}, id="exp-list"),
    pytest.param({"exp": None}, id="exp-null"),
    pytest.param({"iat": str(NOW)}, id="iat-string"),
    pytest.param({"iat": 10**30}, id="iat-huge"),
    pytest.param({"iat": -(10**30)}, id="iat-huge-negative"),
    pytest.param({"iat": NOW + 3600, "exp": NOW + 3700}, id="iat-future"),
    pytest.param({"iat": NOW + 10, "exp": NOW + 5}, id="exp-before-iat"),
    pytest.param({"nbf": str(NOW)}, id="nbf-string"),
    pytest.param({"nbf": 10**30}, id="nbf-huge"),
    pytest.param({"nbf": NOW + 3600}, id="nbf-future"),
    pytest.param({"sub": ""}, id="sub-empty"),
    pytest.param({"sub": "abc"}, id="sub-not-an-id"),
    pytest.param({"sub": USER + "\n"}, id="sub-trailing-newline"),
    pytest.param({"sub": USER.upper()}, id="sub-upper-case"),
    pytest.param({"sub": 12345}, id="sub-number"),
    pytest.param({"sub": {"$ne": None}}, id="sub-object"),
    pytest.param({"jti": ""}, id="jti-empty"),
    pytest.param({"jti": "j" * 65}, id="jti-too-long"),
    pytest.param({"jti": 7}, id="jti-number"),
    pytest.param({"typ": "refresh"}, id="typ-refresh"),
    pytest.param({"typ": ["access"]}, id="typ-list"),
    pytest.param({"aud": ["clients", "others"]}, id="aud-list"),
    pytest.param({"iss": 1}, id="iss-number"),
]


@pytest.mark.parametrize("override", BAD_ACCESS_CLAIMS)
def test_malformed_claims_in_a_signed_token_are_invalid(override: dict[str, Any]) -> None:
    payload = {**claims_of(codec().issue_access(USER).token), "iat": NOW, "exp": NOW + 600}
    payload.update(override)
    with pytest.raises(InvalidToken):
        codec().decode(signed(payload), ACCESS)


@pytest.mark.parametrize("drop", ["exp", "iat", "iss", "aud", "sub", "jti", "typ"])
def test_every_issued_claim_is_required(drop: str) -> None:
    payload = claims_of(codec().issue_access(USER).token)
    del payload[drop]
    with pytest.raises(InvalidToken):
        codec().decode(signed(payload), ACCESS)


@pytest.mark.parametrize("family", ["", None, 5, "f" * 65])
def test_refresh_token_needs_a_well_formed_family(family: object) -> None:
    payload = claims_of(codec().issue_refresh(USER).token)
    payload["fam"] = family
    with pytest.raises(InvalidToken):
        codec().decode(signed(payload), REFRESH)


def test_lifetime_is_bounded_by_the_ttl_of_the_type() -> None:
    access = {**claims_of(codec().issue_access(USER).token), "iat": NOW, "exp": NOW + 900}
    assert codec().decode(signed(access), ACCESS).user_id == USER  # exactly the TTL: fine
    with pytest.raises(InvalidToken, match="lifetime"):
        codec().decode(signed({**access, "exp": NOW + 901}), ACCESS)
    refresh = claims_of(codec().issue_refresh(USER).token)  # 3600 s: more than access's 900
    assert codec().decode(signed(refresh), REFRESH).family_id == refresh["fam"]


def test_an_integer_nbf_in_the_past_is_accepted() -> None:
    payload = {**claims_of(codec().issue_access(USER).token), "nbf": NOW - 5}
    assert codec().decode(signed(payload), ACCESS).user_id == USER
