"""Step slots: taken all at once or not at all, never ahead of a waiter, given back once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
import trio.testing

from server.fairness import FairLimiter
from server.workflow.slots import StepSlots

if TYPE_CHECKING:
    from trio.testing import MockClock


async def test_try_take_takes_every_slot_or_none() -> None:
    run = trio.CapacityLimiter(2)
    tool, process = FairLimiter(1), FairLimiter(5)
    slots = StepSlots(run, "u1")
    held = slots.try_take(tool, process)
    assert held is not None
    assert (run.borrowed_tokens, tool.statistics().borrowed, process.statistics().borrowed) == (
        1,
        1,
        1,
    )
    # The tool's only slot is taken: nothing is taken, what was taken on the way is given back.
    assert slots.try_take(tool, process) is None
    assert (run.borrowed_tokens, process.statistics().borrowed) == (1, 1)
    held.release()
    held.release()  # idempotent
    assert (run.borrowed_tokens, tool.statistics().borrowed, process.statistics().borrowed) == (
        0,
        0,
        0,
    )


async def test_try_take_never_jumps_ahead_of_a_waiter() -> None:
    process = FairLimiter(1)
    slots = StepSlots(trio.CapacityLimiter(10), "u1")
    first = slots.try_take(None, process)
    assert first is not None
    async with trio.open_nursery() as nursery:
        got: list[object] = []

        async def waiter() -> None:
            got.append(await slots.take(None, process))

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        first.release()  # the slot goes to the waiter...
        assert slots.try_take(None, process) is None  # ...not to a later try
        await trio.testing.wait_all_tasks_blocked()
    assert len(got) == 1


async def test_a_cancelled_take_gives_back_what_it_took(autojump_clock: MockClock) -> None:
    run = trio.CapacityLimiter(1)
    process = FairLimiter(1)
    blocker = StepSlots(run, "u2").try_take(None, process)
    assert blocker is not None
    blocker.run_held = False  # keep the process slot, give the run's back
    run.release_on_behalf_of(blocker.token)
    with trio.move_on_after(1):
        await StepSlots(run, "u1").take(None, process)  # run slot taken, process slot waits
    assert run.borrowed_tokens == 0
    assert process.statistics().waiting == 0
