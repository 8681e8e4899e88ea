"""Group commit in the executor: state changes asked for together share one transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import trio

from server.errors import SchemaTooNew, StoreCorrupt, StoreUnavailable
from server.store.models import RunStatus, StepStatus
from server.workflow.writer import WritePolicy
from tests.workflow.conftest import build_harness
from tests.workflow.doubles import MemoryRunStore
from tests.workflow.test_executor import by_id, check_event_invariants, fail, sleep

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from trio.testing import MockClock

    from server.events.model import NewEvent, StoredEvent
    from server.store.models import Run, StateWrite


class RecordingStore(MemoryRunStore):
    """Records the event types of every ``write_run_state`` transaction (and of an insert
    carrying its start: ``create_run(then=...)``). Fault injection:
    ``fail_on``: the first transaction holding an event of that type fails (``error``, before
    committing, or after committing when ``lost_answer``); ``down``: every write fails;
    ``stall``: every write hangs; ``fail_insert``: ``fail_on`` fails the insert instead."""

    def __init__(
        self,
        fail_on: str | None = None,
        *,
        error: Exception | None = None,
        lost_answer: bool = False,
        fail_insert: bool = False,
    ) -> None:
        super().__init__()
        self.transactions: list[list[str]] = []
        self.named: list[list[str]] = []  # the same, as ``type:step_id``
        self.fail_on = fail_on
        self.error = error or StoreUnavailable("connection lost")
        self.lost_answer = lost_answer
        self.fail_insert = fail_insert  # ``fail_on`` applies to the insert, not the writes
        self.down = False
        self.stall = False
        self.failures = 0

    async def write_run_state(
        self, *, events: Sequence[NewEvent] = (), **kw: Any
    ) -> list[StoredEvent]:
        types = [e.type for e in events]
        if self.stall:
            await trio.sleep_forever()
        failing = self.fail_on is not None and not self.fail_insert and self.fail_on in types
        if self.down or failing:
            self.fail_on = None
            self.failures += 1
            if self.lost_answer:
                self.transactions.append(types)
                await super().write_run_state(events=events, **kw)
            await trio.lowlevel.checkpoint()
            raise self.error
        self._record(events)
        return await super().write_run_state(events=events, **kw)

    async def create_run(
        self, run: Run, events: Sequence[NewEvent], **kw: Any
    ) -> tuple[Run, bool, list[StoredEvent]]:
        then: StateWrite | None = kw.get("then")
        everything = [*events, *(then.events if then is not None else ())]
        if self.fail_insert and self.fail_on in [e.type for e in everything]:
            self.fail_on = None
            self.failures += 1
            await trio.lowlevel.checkpoint()
            raise self.error
        created = await super().create_run(run, events, **kw)
        self._record(everything)
        return created

    def _record(self, events: Sequence[NewEvent]) -> None:
        self.transactions.append([e.type for e in events])
        self.named.append([f"{e.type}:{e.data.get('step_id')}" for e in events])


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


async def test_a_wave_starts_in_the_transaction_that_readied_it(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    # Two chains of two: the first wave starts with run.started, each second step in the
    # transaction of its need's success, and the run ends with its last step's success.
    store = RecordingStore()
    h = build_harness(tmp_path, store=store)
    await nursery.start(h.supervisor.run)
    steps = [sleep("a0", 1.0), sleep("a1", 1.0), sleep("b0", 1.0, ("a0",))]
    run = await h.run([*steps, sleep("b1", 1.0, ("a1",))])
    assert run.status is RunStatus.SUCCEEDED
    check_event_invariants(h, run.id)
    first = next(t for t in store.transactions if "run.started" in t)
    assert first.count("step.started") == 2  # a0, a1 with run.started
    for need, step in (("a0", "b0"), ("a1", "b1")):
        (tx,) = [t for t in store.named if f"step.succeeded:{need}" in t]
        assert tx.index(f"step.started:{step}") > tx.index(f"step.succeeded:{need}")
    last = store.transactions[-1]
    assert "step.succeeded" in last
    assert last[-1] == "run.succeeded"
    assert not any("step.started" in t and len(t) == 1 for t in store.transactions)


async def test_a_submitted_run_is_inserted_started(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    # run.created, run.started and the first wave's starts: one transaction, the insert's.
    store = RecordingStore()
    h = build_harness(tmp_path, store=store)
    await nursery.start(h.supervisor.run)
    run = await h.run([sleep("a", 1.0), sleep("b", 1.0), sleep("c", 1.0, ("a",))])
    assert run.status is RunStatus.SUCCEEDED
    check_event_invariants(h, run.id)
    assert store.named[0] == ["run.created:None", "run.started:None", "step.started:a",
                              "step.started:b"]  # fmt: skip
    assert "step.started:c" in store.named[1]  # with a's success
    assert not any("run.started" in t for t in store.transactions[1:])


async def test_an_insert_that_fails_starts_nothing_and_holds_no_slot(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    # The insert carrying the start fails: the submission fails (503 at the API), nothing
    # is stored or published, and the slots its first wave took are free again.
    store = RecordingStore(fail_on="run.started", fail_insert=True)
    h = build_harness(tmp_path, store=store, run_concurrency=2, global_concurrency=2)
    await nursery.start(h.supervisor.run)
    with pytest.raises(StoreUnavailable):
        await h.submit([sleep("a", 1.0), sleep("b", 1.0)])
    assert (store.failures, store.runs, store.transactions) == (1, {}, [])
    assert h.publisher.published == []
    assert h.supervisor.active_runs == 0
    run = await h.run([sleep("a", 1.0), sleep("b", 1.0)])  # both slots free: one wave
    assert run.status is RunStatus.SUCCEEDED
    assert store.named[0][-2:] == ["step.started:a", "step.started:b"]


@pytest.mark.parametrize("kind", ["step.started", "step.succeeded", "run.succeeded"])
async def test_a_transient_write_error_is_retried_and_does_not_decide_the_run(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: MockClock, kind: str
) -> None:
    # Two waves: the second's starts are written with the first's ends, after the insert.
    store = RecordingStore(fail_on=kind)
    h = build_harness(tmp_path, store=store)
    await nursery.start(h.supervisor.run)
    steps = [sleep(f"s{i}", 1.0, (f"s{i - 2}",) if i >= 2 else ()) for i in range(4)]
    run = await h.run(steps)
    assert store.failures == 1
    assert run.status is RunStatus.SUCCEEDED
    check_event_invariants(h, run.id)


async def test_a_write_whose_answer_was_lost_is_not_written_twice(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    store = RecordingStore(fail_on="step.succeeded", lost_answer=True)
    h = build_harness(tmp_path, store=store)
    await nursery.start(h.supervisor.run)
    run = await h.run([sleep(f"s{i}", 1.0) for i in range(3)])
    assert store.failures == 1
    assert run.status is RunStatus.SUCCEEDED
    check_event_invariants(h, run.id)  # one terminal event per step, seq gap-free


async def test_a_store_that_stays_down_leaves_the_run_to_be_resumed(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    store = RecordingStore()
    h = build_harness(tmp_path, store=store, run_lease_s=3.0)
    await nursery.start(h.supervisor.run)
    run = await h.submit([sleep("a", 1.0), sleep("b", 30.0, ("a",))])
    while "b" not in h.log.started:  # noqa: ASYNC110 - the tools report by list
        await trio.sleep(0.1)
    store.down = True
    await h.supervisor.wait_finished(run.id)
    left = await h.fetch(run.id)
    assert not left.status.finished  # the store's outage did not decide the run
    assert store.failures > 1  # retried with backoff before giving up
    store.down = False
    with trio.fail_after(600):
        while not (await h.fetch(run.id)).status.finished:  # noqa: ASYNC110
            await trio.sleep(1)
        await h.supervisor.wait_finished(run.id)
    done = await h.fetch(run.id)
    assert done.status is RunStatus.SUCCEEDED
    assert {s.id: s.attempts for s in done.steps} == {"a": 1, "b": 2}
    check_event_invariants(h, run.id)


async def test_a_failed_write_fails_the_run_from_the_stored_state(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    # A non-transient error writing step.started (the second wave's, with its need's end;
    # the first's went with the insert): those steps never started as far as the log
    # knows, so they get no step.cancelled (the bug of issue 11 item 2); the step whose end
    # was lost is cancelled.
    store = RecordingStore(fail_on="step.started", error=RuntimeError("bug"))
    h = build_harness(tmp_path, store=store)
    await nursery.start(h.supervisor.run)
    run = await h.run([sleep("s0", 1.0), *(sleep(f"s{i}", 1.0, ("s0",)) for i in (1, 2, 3))])
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error["code"] == "internal_error"
    assert all(s.status is not StepStatus.RUNNING for s in run.steps)
    cancelled = h.store.event_data(run.id, "step.cancelled")
    assert [e["step_id"] for e in cancelled] == ["s0"]
    check_event_invariants(h, run.id)


@pytest.mark.parametrize("error", [StoreCorrupt("damaged"), SchemaTooNew("newer")])
async def test_a_store_error_that_will_not_pass_is_not_retried(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: MockClock, error: StoreUnavailable
) -> None:
    # StoreUnavailable subclasses that say retryable = False (a damaged file, a newer
    # schema) fail the write at once: retrying them for the whole window helps nobody.
    store = RecordingStore(fail_on="step.started", error=error)
    h = build_harness(tmp_path, store=store)
    await nursery.start(h.supervisor.run)
    run = await h.run([sleep("s0", 1.0), sleep("s1", 1.0, ("s0",))])  # s1 starts in a write
    assert store.failures == 1
    assert run.status is RunStatus.FAILED
    check_event_invariants(h, run.id)


async def test_a_tools_store_outage_is_retried_whatever_the_steps_retries(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    # vfs.write during a PostgreSQL restart: the tool's store call answers not_ready. The
    # step (retries=0) is tried again with backoff; the outage does not decide the run.
    h = build_harness(tmp_path)
    await nursery.start(h.supervisor.run)
    run = await h.run([fail("w", code="not_ready", retryable=True, times=3)])
    assert run.status is RunStatus.SUCCEEDED
    assert by_id(run)["w"].attempts == 4
    check_event_invariants(h, run.id)


async def test_a_tools_store_outage_past_the_write_window_fails_the_step(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    h = build_harness(tmp_path)
    await nursery.start(h.supervisor.run)
    start = trio.current_time()
    run = await h.run([fail("w", code="not_ready", retryable=True)])
    assert run.status is RunStatus.FAILED
    assert trio.current_time() - start >= WritePolicy().window_s  # retried, then gave up
    check_event_invariants(h, run.id)


async def test_a_stalled_store_does_not_hold_a_user_cancel(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    store = RecordingStore()
    h = build_harness(tmp_path, store=store)
    await nursery.start(h.supervisor.run)
    run = await h.submit([sleep("a", 1.0), sleep("b", 1.0, ("a",))])
    while "a" not in h.log.started:  # noqa: ASYNC110
        await trio.sleep(0.01)
    store.stall = True
    start = trio.current_time()
    executor = h.supervisor._active[run.id].executor
    executor.cancel("user")
    await h.supervisor.wait_finished(run.id)
    # The shielded write gave up at its window instead of holding the cancel for good.
    assert trio.current_time() - start <= executor.writer.policy.window_s * 2 + 1
    assert executor.abandoned
    # When the store answers again, the cancel is recorded (not lost, not re-run).
    store.stall = False
    with trio.fail_after(600):
        while not (await h.fetch(run.id)).status.finished:  # noqa: ASYNC110
            await trio.sleep(1)
    done = await h.fetch(run.id)
    assert done.status is RunStatus.CANCELLED
    assert h.log.started == ["a"]
    check_event_invariants(h, run.id)
