"""Rate limits of the auth endpoints (API_CONTRACT.md §2), per client address and per account.

Plain logic over ``KeyedLimiter`` (no I/O); handlers call it before any bcrypt or database
work, and a refusal is 429 ``rate_limited`` with ``retry_after``. Each limit is a setting
``COUNT/SECONDS`` (``AUTH_LIMIT_*``): a burst of COUNT, then one more every SECONDS / COUNT.

* Addresses are the client address (``X-Forwarded-For`` only from ``TRUSTED_PROXIES``); an
  IPv6 address counts as its /64, which one host or home usually holds whole.
* The account of login, register and password-reset request is the normalised email as sent
  (whether or not an account has it, so a 429 tells nothing about existence); of refresh, the
  user of the (signature-checked) refresh token; of verification resend, the caller.
* Login's per-account limit counts **failed** logins only, and its default is well above what
  a person mistyping produces and above what one address may try (``AUTH_LIMIT_LOGIN_PER_IP``
  admits 10 a minute, so one address needs ten minutes to empty a burst of 100): locking an
  owner out takes a sustained run of failures at their email, the attacker gets 429s too, and
  the owner's open sessions keep refreshing and a password reset still works meanwhile.
* Password-reset confirm is limited per address only: its account is known only once its
  token (256 random bits, single use) has been found.
* A request refused by one limit takes nothing from the others (but refresh's per-address
  limit is counted before the token is decoded, its per-account limit after).

Limits are per process: with N processes behind a balancer a client may get up to N times each.
"""

from __future__ import annotations

import ipaddress
import math

from config import Settings
from messenger.errors import TooManyAttempts
from messenger.ratelimit import KeyedLimiter

Take = tuple[KeyedLimiter, str, str]  # limiter, key, what the message calls it


def address_key(address: str) -> str:
    """The key of a client address: IPv4 as is, IPv6 as its /64 network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class AuthLimits:
    def __init__(self, settings: Settings) -> None:
        size = settings.auth_limit_table_size

        def limiter(limit: tuple[int, float]) -> KeyedLimiter:
            return KeyedLimiter(limit[0], limit[1], max_keys=size)

        self.login_per_ip = limiter(settings.auth_limit_login_per_ip)
        self.login_failures_per_account = limiter(settings.auth_limit_login_failures_per_account)
        self.register_per_ip = limiter(settings.auth_limit_register_per_ip)
        self.register_per_email = limiter(settings.auth_limit_register_per_email)
        self.refresh_per_ip = limiter(settings.auth_limit_refresh_per_ip)
        self.refresh_per_account = limiter(settings.auth_limit_refresh_per_account)
        self.resend_per_ip = limiter(settings.auth_limit_resend_per_ip)
        self.resend_per_account = limiter(settings.auth_limit_resend_per_account)
        self.reset_per_ip = limiter(settings.auth_limit_reset_per_ip)
        self.reset_per_email = limiter(settings.auth_limit_reset_per_email)
        self.reset_confirm_per_ip = limiter(settings.auth_limit_reset_confirm_per_ip)

    # -- the endpoints -----------------------------------------------------------------------
    def login(self, address: str, email: str) -> None:
        """Before a login's password is checked; call ``login_failed`` when it is wrong."""
        self._admit(
            [(self.login_per_ip, address_key(address), "login attempts from this address")],
            check=[(self.login_failures_per_account, email, "failed logins for this account")],
        )

    def login_failed(self, email: str) -> None:
        self.login_failures_per_account.hit(email)

    def register(self, address: str, email: str) -> None:
        self._admit([
            (self.register_per_ip, address_key(address), "registrations from this address"),
            (self.register_per_email, email, "registrations for this email"),
        ])

    def refresh_from(self, address: str) -> None:
        """Before the refresh token is decoded."""
        self._admit([(self.refresh_per_ip, address_key(address), "refreshes from this address")])

    def refresh_of(self, user_id: str) -> None:
        """Once the refresh token's signature is checked, before the store is asked."""
        self._admit([(self.refresh_per_account, user_id, "refreshes for this account")])

    def resend(self, address: str, user_id: str) -> None:
        self._admit([
            (self.resend_per_ip, address_key(address), "verification emails from this address"),
            (self.resend_per_account, user_id, "verification emails for this account"),
        ])

    def reset_request(self, address: str, email: str) -> None:
        self._admit([
            (self.reset_per_ip, address_key(address), "password resets from this address"),
            (self.reset_per_email, email, "password resets for this email"),
        ])

    def reset_confirm(self, address: str) -> None:
        self._admit([(self.reset_confirm_per_ip, address_key(address),
                      "password changes from this address")])

    # -- plumbing ----------------------------------------------------------------------------
    @staticmethod
    def _admit(take: list[Take], check: list[Take] | None = None) -> None:
        """Refuse if any limit is reached (taking nothing); else count one in each of ``take``
        (``check`` limits are only looked at)."""
        wait, what = max((limiter.check(key), what) for limiter, key, what in take + (check or []))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyAttempts(f"too many {what}; try again in {seconds} s",
                                  retry_after=seconds)
        for limiter, key, _what in take:
            limiter.take(key)
