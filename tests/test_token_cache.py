"""VerifiedAccessTokens: a remembered access token is answered exactly as decoding it again
would be (same claims while live, refused once expired), and the memory is bounded."""

from __future__ import annotations

import time

import pytest

from messenger.errors import InvalidToken
from messenger.ids import new_id
from messenger.token_cache import VerifiedAccessTokens
from messenger.tokens import TokenCodec

SECRET = "token-cache-test-secret-" + "x" * 32


def codec(access_ttl: int = 900) -> TokenCodec:
    return TokenCodec(SECRET, "messenger", "messenger-clients", access_ttl, 3600)


def test_a_remembered_token_gives_the_same_claims() -> None:
    tokens = codec()
    cache = VerifiedAccessTokens(tokens)
    issued = tokens.issue_access(new_id())
    first = cache.decode(issued.token)
    assert first.user_id == issued.claims.user_id and len(cache) == 1
    assert cache.decode(issued.token) is first


def test_a_token_checked_without_remember_is_decoded_and_not_kept() -> None:
    tokens = codec()
    cache = VerifiedAccessTokens(tokens)
    issued = tokens.issue_access(new_id())
    assert cache.decode(issued.token, remember=False).user_id == issued.claims.user_id
    assert len(cache) == 0
    with pytest.raises(InvalidToken):
        cache.decode(tokens.issue_refresh(new_id()).token, remember=False)
    remembered = cache.decode(issued.token)  # a REST call with it: kept from now on
    assert cache.decode(issued.token, remember=False) is remembered and len(cache) == 1


def test_refused_tokens_are_not_remembered() -> None:
    tokens = codec()
    cache = VerifiedAccessTokens(tokens)
    refresh = tokens.issue_refresh(new_id())
    for token in ("garbage", refresh.token, tokens.issue_access(new_id()).token[:-2] + "xx"):
        with pytest.raises(InvalidToken):
            cache.decode(token)
    assert len(cache) == 0


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    tokens = codec(access_ttl=1)
    cache = VerifiedAccessTokens(tokens)
    issued = tokens.issue_access(new_id())
    cache.decode(issued.token)
    expires = issued.claims.expires_at.timestamp()
    deadline = time.monotonic() + 5
    while time.time() < expires:  # wait for the clock to pass exp (a condition, not a guess)
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(InvalidToken, match="expired"):
        cache.decode(issued.token)
    with pytest.raises(InvalidToken, match="expired"):  # and decoding it afresh agrees
        cache.decode(issued.token)
    assert len(cache) == 0


def test_memory_is_bounded_oldest_first() -> None:
    tokens = codec()
    cache = VerifiedAccessTokens(tokens, capacity=3)
    issued = [tokens.issue_access(new_id()) for _ in range(4)]
    for token in issued:
        cache.decode(token.token)
    assert len(cache) == 3
    for token in issued:  # the first was dropped and is simply verified again
        assert cache.decode(token.token).user_id == token.claims.user_id
    assert len(cache) == 3
