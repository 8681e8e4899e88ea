"""The slots a step holds while it runs: its run's, its tool's and the process's.

``StepSlots.take`` waits for all three, in that order (the run's ``trio.CapacityLimiter``,
then the tool's and the process's ``FairLimiter``, whose slots are shared fairly between the
runs' owners: ``server.fairness``). ``StepSlots.try_take`` takes them now or not at all,
never blocking: the executor uses it to start the steps a commit readied in that same
commit (one transaction per wave instead of two). ``Held.release`` gives back what was
taken; it is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from server.fairness import FairLimiter


@dataclass
class Held:
    """The slots one step holds; ``release`` returns them (once)."""

    run: trio.CapacityLimiter
    token: object
    owner: str
    fair: list[FairLimiter] = field(default_factory=list)
    run_held: bool = False

    def release(self) -> None:
        for limiter in reversed(self.fair):
            limiter.release(self.owner)
        self.fair.clear()
        if self.run_held:
            self.run_held = False
            self.run.release_on_behalf_of(self.token)


class StepSlots:
    """The limiters a step of one run passes (the tool's may be None)."""

    def __init__(self, run: trio.CapacityLimiter, owner: str) -> None:
        self.run = run
        self.owner = owner

    def try_take(self, tool: FairLimiter | None, process: FairLimiter) -> Held | None:
        """Every slot now, or none (None): never blocks, never checkpoints."""
        held = Held(self.run, object(), self.owner)
        try:
            self.run.acquire_on_behalf_of_nowait(held.token)
        except trio.WouldBlock:
            return None
        held.run_held = True
        for limiter in (tool, process):
            if limiter is None:
                continue
            if not limiter.try_acquire(self.owner):
                held.release()
                return None
            held.fair.append(limiter)
        return held

    async def take(self, tool: FairLimiter | None, process: FairLimiter) -> Held:
        """Every slot, waiting for each in turn. Cancellation gives back what was taken."""
        held = Held(self.run, object(), self.owner)
        try:
            await self.run.acquire_on_behalf_of(held.token)
            held.run_held = True
            for limiter in (tool, process):
                if limiter is not None:
                    await limiter.acquire(self.owner)
                    held.fair.append(limiter)
        except BaseException:
            held.release()
            raise
        return held
