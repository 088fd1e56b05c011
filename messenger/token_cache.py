"""Access tokens this process has already verified, so a client's next request with the same
token costs a dictionary lookup instead of an HMAC and a claim-by-claim check (PyJWT's decode is
the largest single cost of a small authenticated request).

Exact rules: a token is remembered only after ``TokenCodec.decode`` accepted it in full; a
remembered token is answered from here only while ``time.time() < exp`` (PyJWT's own expiry rule
with no leeway), after which it is forgotten and refused as expired, exactly as decoding it again
would. Nothing else about an access token can change during its life (they are stateless, API
contract §2 rule 5), and whether its account exists is still the caller's check each time. At
most ``capacity`` tokens are kept; the oldest remembered one is dropped first. A caller that
checks a token once for a long time (a WebSocket handshake) asks without ``remember``: an idle
session does not keep its token here (~0.8 KiB each), and its REST calls, if any, remember it.
"""

from __future__ import annotations

import time

from messenger.errors import InvalidToken
from messenger.tokens import ACCESS, TokenClaims, TokenCodec

#: Tokens remembered per process (about 0.5 KiB each): one per active client is plenty.
VERIFIED_TOKENS_CAPACITY = 8192


class VerifiedAccessTokens:
    def __init__(self, codec: TokenCodec, capacity: int = VERIFIED_TOKENS_CAPACITY) -> None:
        self._codec = codec
        self._capacity = capacity
        self._known: dict[str, tuple[TokenClaims, float]] = {}

    def decode(self, token: str, remember: bool = True) -> TokenClaims:
        """``TokenCodec.decode(token, ACCESS)``, answered from memory when it was answered
        before and the token has not expired since; raises ``InvalidToken`` like it. Without
        ``remember``, a token not known yet is decoded and not kept."""
        known = self._known.get(token)
        if known is not None:
            claims, expires = known
            if time.time() < expires:
                return claims
            del self._known[token]
            raise InvalidToken("token has expired")
        claims = self._codec.decode(token, ACCESS)
        if not remember:
            return claims
        if len(self._known) >= self._capacity:
            del self._known[next(iter(self._known))]
        self._known[token] = (claims, claims.expires_at.timestamp())
        return claims

    def __len__(self) -> int:
        return len(self._known)
