"""bcrypt hashing off the event loop (bcrypt is deliberately slow)."""

from __future__ import annotations

import asyncio

import bcrypt


class PasswordHasher:
    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        # A real hash to compare against when the user does not exist, so a login for an
        # unknown email costs as much as one with a wrong password (no enumeration by timing).
        self._dummy = bcrypt.hashpw(b"dummy-password", bcrypt.gensalt(rounds))

    async def hash(self, password: str) -> bytes:
        salt = bcrypt.gensalt(self.rounds)
        return await asyncio.to_thread(bcrypt.hashpw, password.encode(), salt)

    async def verify(self, password: str, hashed: bytes | None) -> bool:
        target = hashed if hashed is not None else self._dummy
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), target)
        return ok and hashed is not None
