"""Presence in Redis: the entries ``(user, node)`` of ``presence.py``, shared by every node.

The rules are ``presence.py``'s, exactly: ``add`` sets an entry's deadline to *now + ttl*,
``refresh(node, ttl)`` moves every *live* entry of the node to *now + ttl* (an expired one
is gone, not revived), an entry is live strictly before its deadline, a user is online while
one node holds a live entry, ``remove`` / ``remove_node`` act at once and removing what is
absent does nothing. *Now* is the Redis server's clock (``TIME``, read inside each script),
never a node's: deadlines are compared with the clock that set them. Deadlines are whole
milliseconds (a TTL is rounded up to one).

Keys (single Redis, not Cluster: the scripts touch the keys of the users they read):

* ``{prefix}:p:u:{user}`` — a sorted set, node → deadline: the user's entries;
* ``{prefix}:p:n:{node}`` — a set: the users the node has entries for;
* ``{prefix}:p:due`` — a sorted set, ``"{user}\\x1f{node}"`` → deadline: every entry, for
  the sweep.

Every call is one script, atomic in Redis; ``refresh`` is one however many users the node
holds. ``expire`` is the sweep that survivors run: it removes the entries whose deadline has
passed (the oldest first, at most ``limit``) and returns the users whose *last* entry it
removed — those nobody holds any more, live or expired — so each user that goes offline by
expiry is returned once, to one caller, across all nodes (a user still holding an expired
entry of another node is returned when that one is swept). A user whose last entry goes by
``remove`` or ``remove_node`` is not returned: the node that removed it knows.

Any failure to reach Redis or run a script is ``PresenceUnavailable``. Calls use the client
as given (its pool, its retries): a retried ``expire`` whose first reply was lost returns
nothing for the users the first run removed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import redis.asyncio as redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from messenger.realtime.broker import InvalidBrokerInput
from messenger.realtime.presence import PresenceUnavailable, check_ttl

SEPARATOR = "\x1f"

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: user's entries, node's users, due.  ARGV: user, node, ttl (ms).
_ADD = _NOW + """
local deadline = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], deadline, ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], deadline, ARGV[1] .. '\\31' .. ARGV[2])
return 1
"""

# KEYS: user's entries, node's users, due.  ARGV: user, node.
_REMOVE = """
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1] .. '\\31' .. ARGV[2])
return 1
"""

# KEYS: node's users, due.  ARGV: user key prefix, node.
_REMOVE_NODE = """
local users = redis.call('SMEMBERS', KEYS[1])
for _, user in ipairs(users) do
  redis.call('ZREM', ARGV[1] .. user, ARGV[2])
  redis.call('ZREM', KEYS[2], user .. '\\31' .. ARGV[2])
end
redis.call('DEL', KEYS[1])
return #users
"""

# KEYS: node's users, due.  ARGV: user key prefix, node, ttl (ms).  Live entries only.
_REFRESH = _NOW + """
local deadline = now + tonumber(ARGV[3])
local node = ARGV[2]
local refreshed = 0
for _, user in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. user
  local score = redis.call('ZSCORE', key, node)
  if score and tonumber(score) > now then
    redis.call('ZADD', key, deadline, node)
    redis.call('ZADD', KEYS[2], deadline, user .. '\\31' .. node)
    refreshed = refreshed + 1
  end
end
return refreshed
"""

# KEYS: the users' entries.  Returns the (1-based) indexes of those online.
_ONLINE = _NOW + """
local online = {}
for i, key in ipairs(KEYS) do
  if redis.call('ZCOUNT', key, '(' .. now, '+inf') > 0 then
    online[#online + 1] = i
  end
end
return online
"""

# KEYS: due.  ARGV: user key prefix, node key prefix, limit.
_EXPIRE = _NOW + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local gone = {}
for _, entry in ipairs(due) do
  local cut = string.find(entry, '\\31', 1, true)
  local user, node = string.sub(entry, 1, cut - 1), string.sub(entry, cut + 1)
  local key = ARGV[1] .. user
  redis.call('ZREM', KEYS[1], entry)
  local score = redis.call('ZSCORE', key, node)
  if score and tonumber(score) <= now then
    redis.call('ZREM', key, node)
    redis.call('SREM', ARGV[2] .. node, user)
    if redis.call('EXISTS', key) == 0 then
      gone[#gone + 1] = user
    end
  elseif score then  -- refreshed or added again since: due later (kept consistent anyway)
    redis.call('ZADD', KEYS[1], score, entry)
  end
end
return gone
"""

EXPIRE_MAX_LIMIT = 100_000


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or SEPARATOR in value:
        raise InvalidBrokerInput(f"a {what} id is a non-empty string without \\x1f: {value!r}")
    return value


def _ttl_ms(ttl: float) -> int:
    return max(1, math.ceil(check_ttl(ttl) * 1000))


class RedisPresence:
    """Presence shared by the nodes through one Redis (see the module docstring)."""

    def __init__(self, client: redis.Redis, prefix: str = "messenger") -> None:
        if not isinstance(prefix, str) or not prefix:
            raise InvalidBrokerInput("prefix must be a non-empty string")
        self._client = client
        self._users = f"{prefix}:p:u:"
        self._nodes = f"{prefix}:p:n:"
        self._due = f"{prefix}:p:due"
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)
        self._remove_node = client.register_script(_REMOVE_NODE)
        self._refresh = client.register_script(_REFRESH)
        self._online = client.register_script(_ONLINE)
        self._expire = client.register_script(_EXPIRE)

    async def add(self, user_id: str, node_id: str, ttl: float) -> None:
        user, node = _check_name(user_id, "user"), _check_name(node_id, "node")
        ttl_ms = _ttl_ms(ttl)
        await self._run(self._add, [self._users + user, self._nodes + node, self._due],
                        [user, node, ttl_ms])

    async def remove(self, user_id: str, node_id: str) -> None:
        user, node = _check_name(user_id, "user"), _check_name(node_id, "node")
        await self._run(self._remove, [self._users + user, self._nodes + node, self._due],
                        [user, node])

    async def remove_node(self, node_id: str) -> None:
        node = _check_name(node_id, "node")
        await self._run(self._remove_node, [self._nodes + node, self._due],
                        [self._users, node])

    async def refresh(self, node_id: str, ttl: float) -> None:
        node = _check_name(node_id, "node")
        ttl_ms = _ttl_ms(ttl)
        await self._run(self._refresh, [self._nodes + node, self._due],
                        [self._users, node, ttl_ms])

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        users = list(dict.fromkeys(_check_name(u, "user") for u in user_ids))
        if not users:
            return set()
        online = await self._run(self._online, [self._users + u for u in users], [])
        return {users[int(i) - 1] for i in online}

    async def expire(self, limit: int = 1000) -> list[str]:
        """Remove the entries whose deadline has passed (at most ``limit``, the oldest first)
        and return the users that nobody holds any more, each once across all callers."""
        if type(limit) is not int or not 1 <= limit <= EXPIRE_MAX_LIMIT:
            raise InvalidBrokerInput(f"limit must be an int in 1..{EXPIRE_MAX_LIMIT}")
        gone = await self._run(self._expire, [self._due], [self._users, self._nodes, limit])
        return [user.decode() if isinstance(user, bytes) else user for user in gone]

    async def _run(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> list:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as error:
            raise PresenceUnavailable(f"presence in Redis failed: {error}") from error
