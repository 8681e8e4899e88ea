"""Password hashing with argon2id, always in a worker thread.

``PasswordHasher`` owns an argon2-cffi hasher and a ``trio.CapacityLimiter`` bounding how
many hashes run at once (each costs ``memory_cost`` KiB of RAM and a core for tens of
milliseconds). Nothing here runs argon2 on the event loop.

Login of an unknown email calls ``verify_dummy``: it spends one verify against a hash of a
random password, so the response time does not tell whether the email exists.
"""

from __future__ import annotations

import secrets

import argon2
import trio
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

DEFAULT_CONCURRENCY = 2


class PasswordHasher:
    """argon2id hashing and verification in worker threads (bounded by a limiter)."""

    def __init__(
        self,
        *,
        time_cost: int = argon2.DEFAULT_TIME_COST,
        memory_cost: int = argon2.DEFAULT_MEMORY_COST,
        parallelism: int = argon2.DEFAULT_PARALLELISM,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._limiter = limiter
        self._dummy_hash: str | None = None

    def _get_limiter(self) -> trio.CapacityLimiter:
        # Created lazily: a CapacityLimiter must be made inside a running trio loop.
        if self._limiter is None:
            self._limiter = trio.CapacityLimiter(DEFAULT_CONCURRENCY)
        return self._limiter

    async def hash(self, password: str) -> str:
        """An argon2id PHC string (salt and parameters included)."""
        return await trio.to_thread.run_sync(
            self._hasher.hash, password, limiter=self._get_limiter()
        )

    async def verify(self, hashed: str, password: str) -> bool:
        """True when ``password`` matches; False on a mismatch or a malformed hash."""
        return await trio.to_thread.run_sync(
            self._verify_sync, hashed, password, limiter=self._get_limiter()
        )

    async def verify_dummy(self, password: str) -> None:
        """Spend one verify as if the account existed (unknown email: no timing oracle)."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(24))
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, hashed: str) -> bool:
        """True when ``hashed`` was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(hashed)
        except InvalidHashError:
            return True

    def _verify_sync(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
