"""A capacity limiter that shares its slots fairly between users.

``trio.CapacityLimiter`` hands free slots out in arrival order, so one user's backlog of
hundreds of steps (or model calls) queues every other user behind it. ``FairLimiter`` keeps
one FIFO queue per user and gives a freed slot to the waiting user who holds the fewest
slots; between users holding equally many, to the one served least recently (round robin).
So a user who holds none is served at the very next release, whatever the others queued:
one user's backlog delays another's first acquisition by at most one slot turnover (plus the
other slot-less users who queued before it, each also served once).

``FairQueue`` is the pure core (no trio: tokens in, grants out); ``FairLimiter`` puts it on
trio events. Neither knows what a user is beyond a string key. ``UserCounter`` counts what
each user holds of a capped resource (SSE streams).

Used for the process-wide step slots (``server.workflow.executor``) and model-call slots
(``server.ai.provider.LimitedProvider``). The user a model call is made for travels in the
``acting_user`` context variable, set by the executor for the whole run (trio copies the
context into every task a run starts), so the provider seam needs no extra argument.
"""

from __future__ import annotations

from collections import deque
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

__all__ = [
    "FairLimiter",
    "FairQueue",
    "FairStatistics",
    "UserCounter",
    "acting_as",
    "acting_user",
]

T = TypeVar("T")

ANONYMOUS = ""
acting_user: ContextVar[str] = ContextVar("stretto_acting_user", default=ANONYMOUS)
"""The user whose work the current task does (the run's owner); ``""`` outside a run."""


@contextmanager
def acting_as(user: str) -> Iterator[None]:
    """Tasks started inside the ``with`` (and this one) work for ``user``."""
    token = acting_user.set(user)
    try:
        yield
    finally:
        acting_user.reset(token)


@dataclass(frozen=True, slots=True)
class FairStatistics:
    total: int
    borrowed: int
    waiting: int
    held_by: dict[str, int]


@dataclass
class FairQueue(Generic[T]):
    """The bookkeeping of a fair limiter: ``total`` slots, per-user FIFO waiters.

    Tokens identify waiters; the caller makes them unique. ``request`` grants at once when a
    slot is free and nobody waits; otherwise the token waits until a ``release`` returns it.
    """

    total: int
    _held: dict[str, int] = field(default_factory=dict)
    _waiting: dict[str, deque[T]] = field(default_factory=dict)
    _last_served: dict[str, int] = field(default_factory=dict)
    _turn: int = 0
    _borrowed: int = 0
    _queued: int = 0

    def __post_init__(self) -> None:
        if self.total < 1:
            raise ValueError("a fair limiter needs at least one slot")

    @property
    def borrowed(self) -> int:
        return self._borrowed

    @property
    def queued(self) -> int:
        return self._queued

    def held(self, user: str) -> int:
        return self._held.get(user, 0)

    def request(self, user: str, token: T) -> bool:
        """True: granted now (the caller holds a slot). False: ``token`` waits its turn."""
        if self._borrowed < self.total and self._queued == 0:
            self._grant(user)
            return True
        self._waiting.setdefault(user, deque()).append(token)
        self._queued += 1
        return False

    def cancel(self, user: str, token: T) -> bool:
        """Withdraw a waiting token; False when it is not waiting (already granted)."""
        queue = self._waiting.get(user)
        if queue is None or token not in queue:
            return False
        queue.remove(token)
        self._queued -= 1
        if not queue:
            del self._waiting[user]
            self._forget_if_idle(user)
        return True

    def release(self, user: str) -> tuple[str, T] | None:
        """``user`` gives a slot back. Returns the (user, token) the slot now goes to, if any:
        that waiter holds it from here on."""
        held = self._held.get(user, 0)
        if held <= 0:
            raise RuntimeError(f"release by {user!r}, which holds no slot")
        if held == 1:
            del self._held[user]
        else:
            self._held[user] = held - 1
        self._borrowed -= 1
        self._forget_if_idle(user)
        if not self._waiting:
            return None
        chosen = min(
            self._waiting,
            key=lambda u: (self._held.get(u, 0), self._last_served.get(u, -1)),
        )
        queue = self._waiting[chosen]
        token = queue.popleft()
        self._queued -= 1
        if not queue:
            del self._waiting[chosen]
        self._grant(chosen)
        return chosen, token

    def _grant(self, user: str) -> None:
        self._held[user] = self._held.get(user, 0) + 1
        self._borrowed += 1
        self._turn += 1
        self._last_served[user] = self._turn

    def _forget_if_idle(self, user: str) -> None:
        """Bound memory: a user neither holding nor waiting needs no round-robin history."""
        if user not in self._held and user not in self._waiting:
            self._last_served.pop(user, None)

    def statistics(self) -> FairStatistics:
        return FairStatistics(self.total, self._borrowed, self._queued, dict(self._held))


class FairLimiter:
    """``FairQueue`` on trio: ``async with limiter.slot(user):`` holds one slot.

    Cancellation while waiting withdraws the waiter; a slot granted to a task that was
    cancelled at the same moment is passed on at once, never lost. ``observer`` (optional) is
    told ``("queued", user)`` and ``("granted", user)`` in the order they happen (metrics,
    tests); it must not block or raise.
    """

    def __init__(self, total: int) -> None:
        self._queue: FairQueue[trio.Event] = FairQueue(total)
        self.observer: Callable[[str, str], None] | None = None

    @property
    def total_tokens(self) -> int:
        return self._queue.total

    async def acquire(self, user: str) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        event = trio.Event()
        if self._queue.request(user, event):
            if self.observer is not None:
                self.observer("granted", user)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if self.observer is not None:
            self.observer("queued", user)
        try:
            await event.wait()
        except BaseException:
            if not self._queue.cancel(user, event):
                self.release(user)  # granted as we were cancelled: pass it on
            raise

    def try_acquire(self, user: str) -> bool:
        """Take a slot for ``user`` now if one is free and nobody waits; never blocks. The
        caller must ``release(user)`` it. (The executor starts ready steps in the commit
        that readied them when their slots are free.)"""
        queue = self._queue
        if queue.borrowed >= queue.total or queue.queued:
            return False
        queue.request(user, trio.Event())  # granted: a slot is free and nobody waits
        if self.observer is not None:
            self.observer("granted", user)
        return True

    def release(self, user: str) -> None:
        granted = self._queue.release(user)
        if granted is not None:
            if self.observer is not None:
                self.observer("granted", granted[0])
            granted[1].set()

    @asynccontextmanager
    async def slot(self, user: str) -> AsyncIterator[None]:
        """Hold one slot for ``user`` for the body of the ``async with``."""
        await self.acquire(user)
        try:
            yield
        finally:
            self.release(user)

    def statistics(self) -> FairStatistics:
        return self._queue.statistics()


class UserCounter:
    """What each user holds of one capped thing in this process (SSE streams), counted
    where it is enforced: ``take`` checks and counts with no await in between."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}

    def held(self, user: str) -> int:
        return self._held.get(user, 0)

    def take(self, user: str, limit: int) -> Callable[[], None] | None:
        """One more for ``user``, or None at ``limit``. Returns the release (idempotent)."""
        if self._held.get(user, 0) >= limit:
            return None
        self._held[user] = self._held.get(user, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._held[user] - 1
            if left:
                self._held[user] = left
            else:
                del self._held[user]

        return release
