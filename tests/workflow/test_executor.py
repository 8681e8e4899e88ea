"""The executor under MockClock: parallelism, failure semantics, cancel, timeout, retries."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio

from server.store.models import RunStatus, StepStatus
from tests.workflow.invariants import check_run_log

if TYPE_CHECKING:
    from trio.testing import MockClock

    from server.store.models import Run
    from tests.workflow.conftest import Harness


def sleep(
    step_id: str, seconds: float, needs: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    return {
        "id": step_id,
        "tool": "t.sleep",
        "args": {"seconds": seconds},
        "needs": list(needs),
        **extra,
    }


def fail(step_id: str, needs: tuple[str, ...] = (), **args: Any) -> dict[str, Any]:
    return {"id": step_id, "tool": "t.fail", "args": args, "needs": list(needs)}


def by_id(run: Run) -> dict[str, Any]:
    return {s.id: s for s in run.steps}


def check_event_invariants(h: Harness, run_id: str) -> None:
    """Gap-free seq; every started step ends with exactly one terminal event; one run end."""
    seqs = [e.seq for e in h.store.events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [e.seq for e in h.publisher.published] == seqs  # published after commit, in order
    check_run_log(
        d for d in (json.loads(e.data) for e in h.store.events) if d.get("run_id") == run_id
    )
    for e in h.store.events:
        data = json.loads(e.data)
        assert {"type", "project_id", "at", "run_id"} <= set(data)
        if data["type"].startswith("step."):
            assert {"step_id", "attempt"} <= set(data)


async def test_ten_independent_steps_run_in_parallel(
    harness: Harness, autojump_clock: MockClock
) -> None:
    run = await harness.run([sleep(f"s{i}", 1.0) for i in range(10)])
    assert run.status is RunStatus.SUCCEEDED
    starts = [s.started_at for s in run.steps if s.started_at is not None]
    ends = [s.finished_at for s in run.steps if s.finished_at is not None]
    assert len(starts) == len(ends) == 10
    span = (max(ends) - min(starts)).total_seconds()
    assert 1.0 <= span < 1.1  # one step's time, not ten
    assert all((s.duration_ms or 0) == pytest.approx(1000, abs=1) for s in run.steps)
    assert run.metrics is not None
    assert run.metrics["max_parallelism"] == 10
    assert run.metrics["wall_ms"] == pytest.approx(1000, abs=50)
    assert run.metrics["critical_path_ms"] == pytest.approx(1000, abs=1)
    assert run.metrics["steps_total"] == run.metrics["steps_succeeded"] == 10
    assert harness.log.max_running == 10
    check_event_invariants(harness, run.id)


async def test_a_step_starts_when_its_own_needs_succeed(
    harness: Harness, autojump_clock: MockClock
) -> None:
    # a(1) -> b(1) -> d(1); c(3) is independent: d must start at t=2, not after c (t=3).
    run = await harness.run(
        [sleep("a", 1), sleep("b", 1, ("a",)), sleep("c", 3), sleep("d", 1, ("b",))]
    )
    steps = by_id(run)
    t0 = steps["a"].started_at
    assert (steps["d"].started_at - t0).total_seconds() == pytest.approx(2.0, abs=0.01)
    assert run.metrics is not None
    assert run.metrics["wall_ms"] == pytest.approx(3000, abs=20)
    assert run.metrics["critical_path_ms"] == pytest.approx(3000, abs=1)
    assert run.metrics["critical_path"] == ["a", "b", "d"] or run.metrics["critical_path"] == ["c"]


async def test_failure_cancels_running_sibling_and_skips_the_rest(
    harness: Harness, autojump_clock: MockClock
) -> None:
    run = await harness.run(
        [
            sleep("long", 100),
            sleep("short", 1),
            fail("bad", ("short",)),
            sleep("after_bad", 1, ("bad",)),
            sleep("after_long", 1, ("long",)),
        ]
    )
    steps = by_id(run)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error["code"] == "step_failed"
    assert run.error["step_id"] == "bad"
    assert steps["short"].status is StepStatus.SUCCEEDED
    assert steps["bad"].status is StepStatus.FAILED
    assert steps["bad"].error["code"] == "boom"
    assert steps["long"].status is StepStatus.CANCELLED
    assert harness.log.cancelled == ["long"]  # the sibling's tool observed cancellation
    assert steps["after_bad"].status is StepStatus.SKIPPED
    assert steps["after_long"].status is StepStatus.SKIPPED
    cancelled = harness.store.event_data(run.id, "step.cancelled")
    assert [(d["step_id"], d["reason"]) for d in cancelled] == [("long", "sibling_failed")]
    skipped = harness.store.event_data(run.id, "step.skipped")
    assert {d["step_id"]: d["reason"] for d in skipped} == {
        "after_bad": "run_failed",
        "after_long": "run_failed",
    }
    failed = harness.store.event_data(run.id, "step.failed")
    assert failed[0]["error"] == {"code": "boom", "message": "it failed", "retryable": False}
    assert run.metrics is not None
    assert run.metrics["wall_ms"] < 2000  # the 100 s sibling did not hold the run
    check_event_invariants(harness, run.id)


async def test_continue_on_error_skips_only_dependents(
    harness: Harness, autojump_clock: MockClock
) -> None:
    bad = fail("bad")
    bad["continue_on_error"] = True
    run = await harness.run(
        [bad, sleep("dep", 1, ("bad",)), sleep("dep2", 1, ("dep",)), sleep("other", 2)]
    )
    steps = by_id(run)
    assert run.status is RunStatus.SUCCEEDED
    assert steps["bad"].status is StepStatus.FAILED
    assert steps["dep"].status is StepStatus.SKIPPED
    assert steps["dep2"].status is StepStatus.SKIPPED
    assert steps["other"].status is StepStatus.SUCCEEDED
    assert harness.log.cancelled == []
    skipped = harness.store.event_data(run.id, "step.skipped")
    assert {d["step_id"]: d["reason"] for d in skipped} == {
        "dep": "dependency_failed",
        "dep2": "dependency_failed",
    }
    assert run.metrics is not None
    assert run.metrics["steps_succeeded"] == 1
    check_event_invariants(harness, run.id)


async def test_user_cancel_cancels_every_running_step_together(
    harness: Harness, autojump_clock: MockClock
) -> None:
    run = await harness.submit(
        [sleep("a", 100), sleep("b", 100), sleep("c", 100), sleep("d", 1, ("a",))]
    )
    while len(harness.log.started) < 3:  # noqa: ASYNC110 - the tools report by list
        await trio.sleep(0.01)
    before = trio.current_time()
    cancelled = await harness.supervisor.cancel(run.id, "u1")
    assert trio.current_time() - before < 0.1  # promptly, in trio's own clock
    assert cancelled.status is RunStatus.CANCELLED
    steps = by_id(cancelled)
    assert {sid: steps[sid].status for sid in "abc"} == dict.fromkeys("abc", StepStatus.CANCELLED)
    assert steps["d"].status is StepStatus.SKIPPED
    assert sorted(harness.log.cancelled) == ["a", "b", "c"]
    reasons = {
        d["step_id"]: d["reason"] for d in harness.store.event_data(run.id, "step.cancelled")
    }
    assert reasons == dict.fromkeys("abc", "user")
    assert harness.store.event_data(run.id, "run.cancelled")[0]["reason"] == "user"
    check_event_invariants(harness, run.id)
    from server.errors import NotFound, RunFinished

    with pytest.raises(RunFinished):
        await harness.supervisor.cancel(run.id, "u1")
    with pytest.raises(NotFound):
        await harness.supervisor.cancel(run.id, "someone-else")


async def test_step_timeout_fails_the_step(harness: Harness, autojump_clock: MockClock) -> None:
    run = await harness.run([sleep("slow", 10, timeout_s=1)])
    step = by_id(run)["slow"]
    assert run.status is RunStatus.FAILED
    assert step.status is StepStatus.FAILED
    assert step.error["code"] == "timeout"
    assert step.attempts == 1
    assert step.duration_ms == pytest.approx(1000, abs=1)
    assert harness.log.cancelled == ["slow"]


async def test_timeouts_are_retried_with_backoff(
    harness: Harness, autojump_clock: MockClock
) -> None:
    run = await harness.run([sleep("slow", 10, timeout_s=1, retries=2)])
    step = by_id(run)["slow"]
    assert step.status is StepStatus.FAILED
    assert step.attempts == 3
    retrying = harness.store.event_data(run.id, "step.retrying")
    assert [d["attempt"] for d in retrying] == [1, 2]
    assert [d["next_attempt"] for d in retrying] == [2, 3]


async def test_transient_errors_are_retried_with_exponential_backoff(
    harness: Harness, autojump_clock: MockClock
) -> None:
    step = fail("flaky", retryable=True, times=3)
    step["retries"] = 3
    run = await harness.run([step])
    flaky = by_id(run)["flaky"]
    assert run.status is RunStatus.SUCCEEDED
    assert flaky.attempts == 4
    assert flaky.output == {"calls": 4}
    delays = [d["delay_ms"] for d in harness.store.event_data(run.id, "step.retrying")]
    assert len(delays) == 3
    for n, delay in enumerate(delays, start=1):  # base 0.5 s, doubling, jitter in [50%, 100%]
        ceiling = 500 * 2 ** (n - 1)
        assert ceiling / 2 <= delay <= ceiling
    assert flaky.duration_ms == pytest.approx(sum(delays), abs=1)  # the backoff really waited
    assert run.metrics is not None
    assert run.metrics["steps"]["flaky"]["attempts"] == 4
    check_event_invariants(harness, run.id)


async def test_permanent_errors_are_not_retried(
    harness: Harness, autojump_clock: MockClock
) -> None:
    step = fail("broken", retryable=False)
    step["retries"] = 3
    run = await harness.run([step])
    broken = by_id(run)["broken"]
    assert broken.status is StepStatus.FAILED
    assert broken.attempts == 1
    assert harness.log.calls["broken"] == 1
    assert harness.store.event_data(run.id, "step.retrying") == []


async def test_retries_run_out(harness: Harness, autojump_clock: MockClock) -> None:
    step = fail("down", retryable=True, code="unavailable")
    step["retries"] = 2
    run = await harness.run([step])
    down = by_id(run)["down"]
    assert down.status is StepStatus.FAILED
    assert down.attempts == 3
    assert down.error == {"code": "unavailable", "message": "it failed", "retryable": True}


async def test_templates_pass_outputs_and_outputs_are_bounded(
    tmp_path: Any, nursery: trio.Nursery
) -> None:
    from tests.workflow.conftest import build_harness

    h = build_harness(tmp_path, step_output_max_bytes=300)
    await nursery.start(h.supervisor.run)
    big = "x" * 1000
    run = await h.run(
        [
            {"id": "a", "tool": "t.echo", "args": {"value": "hello"}},
            {"id": "big", "tool": "t.echo", "args": {"value": big}},
            {
                "id": "b",
                "tool": "t.echo",
                "args": {"value": "{{steps.a.output.value}}-{{steps.big.output.value}}"},
                "needs": ["a", "big"],
            },
        ]
    )
    steps = by_id(run)
    assert run.status is RunStatus.SUCCEEDED
    assert steps["a"].output == {"value": "hello"}
    assert steps["big"].output["_truncated"] is True
    assert steps["big"].output["original_bytes"] > 1000
    # the next step got the full output, not the stored preview
    assert steps["b"].output["_truncated"] is True
    assert steps["b"].output["preview"].startswith('{"value":"hello-xxxx')


async def test_run_concurrency_option_bounds_parallelism(
    harness: Harness, autojump_clock: MockClock
) -> None:
    run = await harness.run([sleep(f"s{i}", 1.0) for i in range(6)], concurrency=2)
    assert run.metrics is not None
    assert run.metrics["max_parallelism"] == 2
    assert run.metrics["wall_ms"] == pytest.approx(3000, abs=50)
    queued = sorted(v["queue_ms"] for v in run.metrics["steps"].values())
    assert queued == pytest.approx([0, 0, 1000, 1000, 2000, 2000], abs=5)


async def test_run_timeout_cancels_running_steps(
    harness: Harness, autojump_clock: MockClock
) -> None:
    run = await harness.run([sleep("a", 100), sleep("b", 1, ("a",))], timeout_s=5)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error["code"] == "timeout"
    reasons = [d["reason"] for d in harness.store.event_data(run.id, "step.cancelled")]
    assert reasons == ["timeout"]
    assert by_id(run)["b"].status is StepStatus.SKIPPED


async def test_step_delta_is_published_live(harness: Harness) -> None:
    run = await harness.run([{"id": "talk", "tool": "t.delta", "args": {"text": "hi"}}])
    assert run.status is RunStatus.SUCCEEDED
    (delta,) = harness.publisher.transient
    assert delta["type"] == "step.delta"
    assert delta["run_id"] == run.id
    assert delta["step_id"] == "talk"
    assert delta["attempt"] == 1
    assert delta["text"] == "hi"
    assert "step.delta" not in [t for t, _ in harness.store.event_types(run.id)]


async def test_idempotency_key_returns_the_same_run(harness: Harness) -> None:
    plan = {"steps": [{"id": "a", "tool": "t.echo", "args": {"value": 1}}]}
    first, created = await harness.supervisor.submit(
        owner_id="u1", project_id="p1", prompt=None, plan=plan, options={}, idempotency_key="k1"
    )
    again, created_again = await harness.supervisor.submit(
        owner_id="u1", project_id="p1", prompt=None, plan=plan, options={}, idempotency_key="k1"
    )
    assert created
    assert not created_again
    assert again.id == first.id
    await harness.supervisor.wait_finished(first.id)
    assert len(harness.store.runs) == 1
