"""Password hashing with argon2id, always in a worker thread.

``PasswordHasher`` owns an argon2-cffi hasher and a ``trio.CapacityLimiter`` bounding how
many hashes run at once (each costs ``memory_cost`` KiB of RAM and a core for tens of
milliseconds). Nothing here runs argon2 on the event loop.

Login of an unknown email calls ``verify_dummy``: it spends one verify against a hash of a
random password, so the response time does not tell whether the email exists.

The queue is bounded: when ``max_waiting`` calls already wait for a worker, a new call
raises ``RateLimited`` (429, ``Retry-After: 1``) at once instead of queueing behind them, so
a flood of bad logins cannot make a legitimate one wait for tens of seconds.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, TypeVar

import trio

from server.errors import RateLimited

if TYPE_CHECKING:
    from collections.abc import Callable

    import argon2

DEFAULT_CONCURRENCY = 2
DEFAULT_MAX_WAITING = 32
_T = TypeVar("_T")


class PasswordHasher:
    """argon2id hashing and verification in worker threads (bounded by a limiter)."""

    def __init__(
        self,
        *,
        time_cost: int | None = None,  # None: argon2-cffi's default
        memory_cost: int | None = None,
        parallelism: int | None = None,
        limiter: trio.CapacityLimiter | None = None,
        max_waiting: int = DEFAULT_MAX_WAITING,
    ) -> None:
        self._costs = (time_cost, memory_cost, parallelism)
        # argon2 is imported, and its hasher built, on first use (idle RSS, start-up)
        self._built: argon2.PasswordHasher | None = None
        self._limiter = limiter
        self._dummy_hash: str | None = None
        self.max_waiting = max_waiting
        self._waiting = 0

    @property
    def _hasher(self) -> argon2.PasswordHasher:
        """The argon2-cffi ``PasswordHasher``, built (and argon2 imported) on first use."""
        if self._built is None:
            import argon2

            time_cost, memory_cost, parallelism = self._costs
            self._built = argon2.PasswordHasher(
                time_cost=argon2.DEFAULT_TIME_COST if time_cost is None else time_cost,
                memory_cost=argon2.DEFAULT_MEMORY_COST if memory_cost is None else memory_cost,
                parallelism=argon2.DEFAULT_PARALLELISM if parallelism is None else parallelism,
                type=argon2.Type.ID,
            )
        return self._built

    @_hasher.setter
    def _hasher(self, hasher: argon2.PasswordHasher) -> None:
        self._built = hasher

    def _get_limiter(self) -> trio.CapacityLimiter:
        # Created lazily: a CapacityLimiter must be made inside a running trio loop.
        if self._limiter is None:
            self._limiter = trio.CapacityLimiter(DEFAULT_CONCURRENCY)
        return self._limiter

    async def _in_worker(self, fn: Callable[[str, str], _T], a: str, b: str) -> _T:
        """Run ``fn(a, b)`` in a worker thread; ``RateLimited`` when the queue is full."""
        limiter = self._get_limiter()
        if self._waiting - limiter.borrowed_tokens >= self.max_waiting:  # queued, not running
            raise RateLimited("The server is busy checking passwords; try again.", retry_after=1)
        self._waiting += 1
        try:
            return await trio.to_thread.run_sync(fn, a, b, limiter=limiter)
        finally:
            self._waiting -= 1

    async def hash(self, password: str) -> str:
        """An argon2id PHC string (salt and parameters included). Raises ``RateLimited``."""
        return await self._in_worker(lambda pw, _: self._hasher.hash(pw), password, "")

    async def verify(self, hashed: str, password: str) -> bool:
        """True when ``password`` matches; False on a mismatch or a malformed hash.
        Raises ``RateLimited`` when the queue is full."""
        return await self._in_worker(self._verify_sync, hashed, password)

    async def verify_dummy(self, password: str) -> None:
        """Spend one verify as if the account existed (unknown email: no timing oracle)."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(24))
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, hashed: str) -> bool:
        """True when ``hashed`` was made with other parameters than the current ones."""
        from argon2.exceptions import InvalidHashError

        try:
            return self._hasher.check_needs_rehash(hashed)
        except InvalidHashError:
            return True

    def _verify_sync(self, hashed: str, password: str) -> bool:
        from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

        try:
            return self._hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
