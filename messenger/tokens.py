"""JWT access and refresh tokens (PyJWT, HS256 pinned).

Claims: ``iss``, ``aud``, ``sub`` (user id), ``iat``, ``exp``, ``jti`` and ``typ`` ("access" or
"refresh"); refresh tokens also carry ``fam``, their rotation family. The algorithm list is fixed
here, never taken from the token header, and ``typ`` keeps a refresh token from ever being
accepted as an access token (RFC 8725).

A validly signed token is still checked claim by claim, since a leaked or misused secret, or a
token of an older version, must give 401 and never reach code that trusts its shape. PyJWT
checks the signature, that every required claim is present, ``iss``, ``aud`` (strictly: one
string, ours), that ``sub`` and ``jti`` are strings, and that ``exp`` / ``iat`` / ``nbf``
*convert* to integers and are not past / in the future. This module adds what PyJWT leaves open:
``exp``, ``iat`` and ``nbf`` must be JSON integers (not strings, floats or booleans), the token
must not live longer than its type's configured lifetime (``0 < exp - iat <= TTL``; so lowering
a TTL also refuses tokens issued earlier with a longer one), ``sub`` must be a well-formed user
id, ``jti`` and ``fam`` short non-empty strings, and ``typ`` the expected type. Whether ``sub``
names a user that exists is the caller's check (``messenger.known_users``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from messenger.clock import utcnow
from messenger.errors import InvalidToken
from messenger.ids import is_valid_id

ALGORITHM = "HS256"
ACCESS = "access"
REFRESH = "refresh"
#: Longest ``jti`` / ``fam`` accepted (issued ones are 32 hex digits).
OPAQUE_CLAIM_MAX = 64
_REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti", "typ"]


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

    def ttl(self, token_type: str) -> int:
        return self.access_ttl if token_type == ACCESS else self.refresh_ttl

    def decode(self, token: str, expected_type: str) -> TokenClaims:
        """Verify the signature and every claim (see the module docstring); raise
        ``InvalidToken``, never anything else."""
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": _REQUIRED, "strict_aud": True, "verify_sub": True,
                         "verify_jti": True},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token has expired") from None
        except jwt.PyJWTError:
            raise InvalidToken("token is invalid") from None
        if payload.get("typ") != expected_type:
            raise InvalidToken(f"an {expected_type} token is required")
        issued_at, expires = payload["iat"], payload["exp"]
        if not _is_int(issued_at) or not _is_int(expires) or (
            "nbf" in payload and not _is_int(payload["nbf"])
        ):
            raise InvalidToken("token is invalid: exp, iat and nbf must be integers")
        if not 0 < expires - issued_at <= self.ttl(expected_type):
            raise InvalidToken("token is invalid: its lifetime is out of range")
        sub, jti = payload["sub"], payload["jti"]
        if not is_valid_id(sub):
            raise InvalidToken("token is invalid: sub is not a user id")
        if not _is_opaque(jti):
            raise InvalidToken("token is invalid: malformed jti")
        family = payload.get("fam")
        if expected_type == REFRESH and not _is_opaque(family):
            raise InvalidToken("token is invalid: malformed fam")
        expires_at = datetime.fromtimestamp(expires, UTC)
        return TokenClaims(sub, jti, expected_type, family if expected_type == REFRESH else None,
                           expires_at)


def _is_int(value: object) -> bool:
    """A JSON integer (a bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_opaque(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= OPAQUE_CLAIM_MAX
