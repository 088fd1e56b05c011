"""Who is online across nodes: entries ``(user, node)`` that expire unless their node refreshes.

Cut like Centrifuge's ``PresenceManager`` (``presence.go``), keyed by user and node instead of
channel and client: a node adds an entry when a user's first local session opens, removes it
when the last one goes (after its own grace period), and refreshes all of its entries on a
heartbeat. Exactly:

* an entry ``(user, node)`` lives until its deadline: ``add(user, node, ttl)`` sets it to
  *now + ttl*, ``refresh(node, ttl)`` moves the deadline of every entry of ``node`` to
  *now + ttl*; at or after the deadline the entry is gone (as if removed);
* a user is online while at least one node holds a live entry for them;
* ``remove`` and ``remove_node`` take effect at once; removing what is absent does nothing (an
  entry is a member of a set, not a count: the node counts its own sessions).

So a node that dies without a word takes its users offline for everyone within one TTL of its
last heartbeat, and a node that restarts under the same id clears its old entries with
``remove_node``. Time is the manager's clock (``time.monotonic`` unless one is passed in): a
deadline is never compared with another machine's clock.

``InProcessPresence`` is the implementation for one process; the nodes that share it share one
instance. It never fails; a network one raises ``PresenceUnavailable``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from messenger.realtime.broker import BrokerUnavailable, InvalidBrokerInput


class PresenceUnavailable(BrokerUnavailable):
    """The presence manager's server cannot be reached."""

    code = "presence_unavailable"


class PresenceManager(Protocol):
    async def add(self, user_id: str, node_id: str, ttl: float) -> None:
        """``node_id`` holds ``user_id`` for ``ttl`` seconds (unless refreshed or removed)."""
        ...

    async def remove(self, user_id: str, node_id: str) -> None: ...

    async def remove_node(self, node_id: str) -> None:
        """Drop every entry of ``node_id`` (its shutdown, or its restart under the same id)."""
        ...

    async def refresh(self, node_id: str, ttl: float) -> None:
        """The node's heartbeat: each of its entries lives ``ttl`` seconds from now."""
        ...

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        """Those of ``user_ids`` that some node holds now."""
        ...

    async def expire(self, limit: int = 1000) -> list[str]:
        """Forget entries past their deadline (at most ``limit``) and return the users left
        with no live entry on any node: each such user to exactly one caller, on whichever
        node calls first (survivors announce a stopped node's users offline, once)."""
        ...


def check_ttl(ttl: float) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
        raise InvalidBrokerInput(f"a presence TTL is a finite number of seconds > 0, not {ttl!r}")
    return float(ttl)


class InProcessPresence:
    """Presence in this process's memory (see the module docstring for the exact rules)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadlines: dict[str, dict[str, float]] = {}  # user → node → deadline
        self._users_of: dict[str, set[str]] = {}  # node → users it has entries for

    async def add(self, user_id: str, node_id: str, ttl: float) -> None:
        deadline = self._clock() + check_ttl(ttl)
        self._deadlines.setdefault(user_id, {})[node_id] = deadline
        self._users_of.setdefault(node_id, set()).add(user_id)

    async def remove(self, user_id: str, node_id: str) -> None:
        self._drop(user_id, node_id)

    async def remove_node(self, node_id: str) -> None:
        for user_id in list(self._users_of.get(node_id, ())):
            self._drop(user_id, node_id)

    async def refresh(self, node_id: str, ttl: float) -> None:
        now = self._clock()
        deadline = now + check_ttl(ttl)
        for user_id in self._users_of.get(node_id, ()):
            nodes = self._deadlines[user_id]
            if nodes[node_id] > now:  # an expired entry is gone (``expire`` drops it), not revived
                nodes[node_id] = deadline

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        now = self._clock()
        return {
            user_id for user_id in user_ids
            if any(deadline > now for deadline in self._deadlines.get(user_id, {}).values())
        }

    async def expire(self, limit: int = 1000) -> list[str]:
        now = self._clock()
        expired = [
            (user_id, node_id)
            for user_id, nodes in self._deadlines.items()
            for node_id, deadline in nodes.items()
            if deadline <= now
        ][:limit]
        offline = []
        for user_id, node_id in expired:
            self._drop(user_id, node_id)
            if user_id not in self._deadlines:
                offline.append(user_id)
        return offline

    @property
    def entries(self) -> int:
        """How many entries are kept (expired ones go at the next ``expire``)."""
        return sum(len(nodes) for nodes in self._deadlines.values())

    def _drop(self, user_id: str, node_id: str) -> None:
        nodes = self._deadlines.get(user_id)
        if nodes is None or nodes.pop(node_id, None) is None:
            return
        if not nodes:
            del self._deadlines[user_id]
        users = self._users_of[node_id]
        users.discard(user_id)
        if not users:
            del self._users_of[node_id]
