"""JWT access and refresh tokens (PyJWT, HS256 pinned).

Claims: ``iss``, ``aud``, ``sub`` (user id), ``iat``, ``exp``, ``jti`` and ``typ`` ("access" or
"refresh"); refresh tokens also carry ``fam``, their rotation family. The algorithm list is fixed
here, never taken from the token header, and ``typ`` keeps a refresh token from ever being
accepted as an access token (RFC 8725).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from messenger.clock import utcnow
from messenger.errors import InvalidToken

ALGORITHM = "HS256"
ACCESS = "access"
REFRESH = "refresh"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: str
    jti: str
    token_type: str
    family_id: str | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    claims: TokenClaims


class TokenCodec:
    def __init__(
        self, secret: str, issuer: str, audience: str, access_ttl: int, refresh_ttl: int
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def issue_access(self, user_id: str) -> IssuedToken:
        return self._issue(user_id, ACCESS, None, self.access_ttl)

    def issue_refresh(self, user_id: str, family_id: str | None = None) -> IssuedToken:
        return self._issue(user_id, REFRESH, family_id or uuid.uuid4().hex, self.refresh_ttl)

    def _issue(self, user_id: str, token_type: str, family: str | None, ttl: int) -> IssuedToken:
        now = utcnow()
        expires_at = now + timedelta(seconds=ttl)
        claims = TokenClaims(user_id, uuid.uuid4().hex, token_type, family, expires_at)
        payload = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": user_id,
            "iat": now,
            "exp": claims.expires_at,
            "jti": claims.jti,
            "typ": token_type,
        }
        if family is not None:
            payload["fam"] = family
        return IssuedToken(jwt.encode(payload, self._secret, algorithm=ALGORITHM), claims)

    def decode(self, token: str, expected_type: str) -> TokenClaims:
        """Verify signature, ``exp``, ``iss``, ``aud`` and ``typ``; raise ``InvalidToken``."""
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti", "typ"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token has expired") from None
        except jwt.PyJWTError:
            raise InvalidToken("token is invalid") from None
        if payload.get("typ") != expected_type:
            raise InvalidToken(f"an {expected_type} token is required")
        family = payload.get("fam")
        if expected_type == REFRESH and not isinstance(family, str):
            raise InvalidToken("token is invalid")
        sub, jti = payload.get("sub"), payload.get("jti")
        if not isinstance(sub, str) or not isinstance(jti, str):
            raise InvalidToken("token is invalid")
        expires_at = datetime.fromtimestamp(payload["exp"], UTC)
        return TokenClaims(sub, jti, expected_type, family, expires_at)
