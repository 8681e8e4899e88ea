"""Group commit in the executor: state changes asked for together share one transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from server.errors import StoreUnavailable
from server.store.models import RunStatus, StepStatus
from tests.workflow.conftest import build_harness
from tests.workflow.doubles import MemoryRunStore
from tests.workflow.test_executor import check_event_invariants, sleep

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from trio.testing import MockClock

    from server.store.models import NewEvent, StoredEvent


class RecordingStore(MemoryRunStore):
    """Records the event types of every ``write_run_state`` transaction; can fail the first
    transaction holding an event of type ``fail_on``."""

    def __init__(self, fail_on: str | None = None) -> None:
        super().__init__()
        self.transactions: list[list[str]] = []
        self.fail_on = fail_on

    async def write_run_state(
        self, *, events: Sequence[NewEvent] = (), **kw: Any
    ) -> list[StoredEvent]:
        types = [e.type for e in events]
        if self.fail_on is not None and self.fail_on in types:
            self.fail_on = None
            await trio.lowlevel.checkpoint()
            raise StoreUnavailable("disk on fire")
        self.transactions.append(types)
        return await super().write_run_state(events=events, **kw)


async def test_steps_started_and_finished_together_share_transactions(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    store = RecordingStore()
    h = build_harness(tmp_path, store=store)
    await nursery.start(h.supervisor.run)
    run = await h.run([sleep(f"s{i}", 1.0) for i in range(10)])
    assert run.status is RunStatus.SUCCEEDED
    check_event_invariants(h, run.id)
    started = [t for t in store.transactions if "step.started" in t]
    succeeded = [t for t in store.transactions if "step.succeeded" in t]
    assert sum(t.count("step.started") for t in started) == 10
    assert sum(t.count("step.succeeded") for t in succeeded) == 10
    # Ten steps woken together: a couple of transactions each way, not ten.
    assert len(started) <= 2
    assert len(succeeded) <= 2


async def test_a_failed_group_write_fails_the_run_cleanly(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    store = RecordingStore(fail_on="step.succeeded")
    h = build_harness(tmp_path, store=store)
    await nursery.start(h.supervisor.run)
    run = await h.run([sleep(f"s{i}", 1.0) for i in range(4)])
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error["code"] == "internal_error"
    # No step is left running: the batch that failed took every change in it down.
    assert all(s.status is not StepStatus.RUNNING for s in run.steps)
    check_event_invariants(h, run.id)
