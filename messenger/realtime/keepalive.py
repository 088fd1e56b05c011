"""What keeps a WebSocket session alive, decided by one sweep over every session.

Sans-I/O. A session is closed with 1008 once its access token has expired, with 1001 after
``idle_timeout`` without any frame from the client, and with 1001 when a ping has gone
unanswered for ``ping_timeout``; it is pinged every ``ping_interval``. The hub's sweep runs every
``period`` seconds and asks each session (``Keepalive.check``) — one sweep instead of a timer or
a ping task per session (Tornado's own ping task costs ~1.4 KiB per connection).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: The sweep's longest period: also the bound on a close after the token's ``exp`` (§8).
MAX_PERIOD = 1.0


class Action(enum.Enum):
    NONE = "none"
    PING = "ping"
    TOKEN_EXPIRED = "token expired"  # close 1008
    IDLE = "idle timeout"  # close 1001
    PING_TIMED_OUT = "ping timed out"  # close 1001


#: The close code of each closing action.
CLOSE_CODES = {Action.TOKEN_EXPIRED: 1008, Action.IDLE: 1001, Action.PING_TIMED_OUT: 1001}


@dataclass(frozen=True, slots=True)
class KeepalivePolicy:
    idle_timeout: float
    ping_interval: float
    ping_timeout: float

    @property
    def period(self) -> float:
        """How often the sweep runs."""
        return min(MAX_PERIOD, self.idle_timeout / 4, self.ping_interval)


class Keepalive:
    """One session's keepalive state: when it was last heard from and its ping."""

    __slots__ = ("last_frame_at", "next_ping_at", "ping_sent_at")

    def __init__(self, now: float, policy: KeepalivePolicy) -> None:
        self.last_frame_at = now
        self.next_ping_at = now + policy.ping_interval
        self.ping_sent_at = 0.0  # 0: no ping unanswered

    def heard(self, now: float) -> None:
        """Any frame from the client."""
        self.last_frame_at = now

    def pong(self, now: float) -> None:
        self.last_frame_at = now
        self.ping_sent_at = 0.0

    def check(self, now: float, wall: float, token_expires_at: float,
              policy: KeepalivePolicy) -> Action:
        """What the sweep does with the session now (``wall``: ``time.time()``). A ``PING``
        is recorded as sent."""
        if wall >= token_expires_at:
            return Action.TOKEN_EXPIRED
        if now - self.last_frame_at > policy.idle_timeout:
            return Action.IDLE
        if self.ping_sent_at:
            if now - self.ping_sent_at > policy.ping_timeout:
                return Action.PING_TIMED_OUT
            return Action.NONE
        if now >= self.next_ping_at:
            self.ping_sent_at = now
            self.next_ping_at = now + policy.ping_interval
            return Action.PING
        return Action.NONE
