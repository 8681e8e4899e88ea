"""Dynamic fan-out (``for_each``): validation, parallel items, bounds, failure, retry, cancel."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio

from server.errors import InvalidPlan
from server.store.models import RunStatus, Step, StepStatus
from server.timeutil import utc_now
from server.workflow.endings import USER_CANCELLED
from server.workflow.events import run_json
from server.workflow.plan import parse_plan, split_item_id
from server.workflow.templates import TemplateError, render_args, render_item
from server.workflow.transitions import RunState
from tests.workflow.conftest import build_harness
from tests.workflow.doubles import ToolLog, make_registry
from tests.workflow.invariants import check_run_log
from tests.workflow.test_executor import by_id, check_event_invariants

if TYPE_CHECKING:
    from pathlib import Path

    from trio.testing import MockClock

    from tests.workflow.conftest import Harness

REGISTRY = make_registry(ToolLog())


def src(values: list[Any], step_id: str = "src") -> dict[str, Any]:
    return {"id": step_id, "tool": "t.echo", "args": {"value": values}, "needs": []}


def fan(
    tool: str = "t.sleep",
    args: dict[str, Any] | None = None,
    source: str = "{{steps.src.output.value}}",
    needs: tuple[str, ...] = ("src",),
    step_id: str = "fan",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": step_id,
        "tool": tool,
        "for_each": source,
        "args": args if args is not None else {"seconds": "{{item}}"},
        "needs": list(needs),
        **extra,
    }


def after(needs: str = "fan") -> dict[str, Any]:
    return {
        "id": "after",
        "tool": "t.echo",
        "args": {"value": "{{steps." + needs + ".output}}"},
        "needs": [needs],
    }


def details_of(steps: list[dict[str, Any]]) -> dict[str, Any]:
    with pytest.raises(InvalidPlan) as caught:
        parse_plan({"steps": steps}, REGISTRY, 10)
    return caught.value.details


# -- validation (pure) ---------------------------------------------------------------------
def test_a_fan_out_plan_validates_and_round_trips() -> None:
    data = {"steps": [src([1]), fan(), after()]}
    plan = parse_plan(data, REGISTRY, 10)
    assert plan.step("fan").for_each == "{{steps.src.output.value}}"
    assert plan.to_json()["steps"][1]["for_each"] == "{{steps.src.output.value}}"
    assert parse_plan(plan.to_json(), REGISTRY, 10) == plan


@pytest.mark.parametrize(
    "source",
    ["steps.src.output", "{{item}}", "{{steps.src.output}} x", 3, "{{steps.src.output..a}}"],
)
def test_for_each_must_be_one_step_reference(source: object) -> None:
    details = details_of([src([1]), fan(source=source)])  # type: ignore[arg-type]
    assert "must be one reference" in details["steps.fan.for_each"]


def test_for_each_must_reference_a_direct_need() -> None:
    details = details_of([src([1]), fan(needs=())])
    assert "not in this step's needs" in details["steps.fan.for_each"]


def test_item_references_are_only_allowed_in_for_each_steps() -> None:
    plain = {"id": "plain", "tool": "t.echo", "args": {"value": "{{item.path}}"}, "needs": []}
    details = details_of([plain])
    assert details["steps.plain.args.value"] == "{{item}} is only allowed in a for_each step"


def test_malformed_item_references_are_named() -> None:
    details = details_of([src([1]), fan(args={"seconds": "{{item..x}}"})])
    assert "malformed reference" in details["steps.fan.args.seconds"]


def test_a_cycle_through_a_fan_out_is_rejected() -> None:
    # src feeds fan, but src needs fan: the fan-out's source edge closes a cycle.
    loop = {**src([1]), "needs": ["fan"]}
    details = details_of([loop, fan()])
    assert sorted(details["cycle"]) == ["fan", "src"]


def test_item_templates_render_only_with_an_item() -> None:
    args = {"path": "{{item.path}}", "n": "{{item}}", "x": "{{steps.a.output.v}}"}
    item = {"path": "src/a.js", "line": 3}
    assert render_args(args, {"a": {"v": "V"}}, item=item) == {
        "path": "src/a.js",
        "n": '{"path":"src/a.js","line":3}',
        "x": "V",
    }
    with pytest.raises(TemplateError, match="only available in a for_each step"):
        render_args(args, {"a": {"v": "V"}})
    with pytest.raises(TemplateError, match="no such field in the current item"):
        render_args({"p": "{{item.nope}}"}, {}, item=item)
    # Text an item brings in is not scanned for references again.
    assert render_args("{{item}}", {"a": {"v": "V"}}, item="{{steps.a.output.v}}") == (
        "{{steps.a.output.v}}"
    )
    assert render_item(args, item)["x"] == "{{steps.a.output.v}}"


def test_item_step_ids() -> None:
    assert split_item_id("edit[3]") == ("edit", 3)
    assert split_item_id("edit") is None


# -- execution ------------------------------------------------------------------------------
async def test_items_run_in_parallel_and_dependents_get_the_list(
    harness: Harness, autojump_clock: MockClock
) -> None:
    run = await harness.run([src([3, 1, 2]), fan(), after()])
    assert run.status is RunStatus.SUCCEEDED
    steps = by_id(run)
    assert [s.id for s in run.steps if s.id.startswith("fan[")] == ["fan[0]", "fan[1]", "fan[2]"]
    items = [steps[f"fan[{i}]"] for i in range(3)]
    assert [s.status for s in items] == [StepStatus.SUCCEEDED] * 3
    assert [s.args for s in items] == [{"seconds": "3"}, {"seconds": "1"}, {"seconds": "2"}]
    assert [s.duration_ms for s in items] == [
        pytest.approx(3000, abs=1),
        pytest.approx(1000, abs=1),
        pytest.approx(2000, abs=1),
    ]
    # In parallel: the fan-out takes its longest item, not the sum.
    assert steps["fan"].duration_ms == pytest.approx(3000, abs=5)
    outputs = [{"slept": v, "step": f"fan[{i}]"} for i, v in enumerate(["3", "1", "2"])]
    assert steps["fan"].output == outputs
    assert steps["after"].output == {"value": _compact(outputs)}
    assert steps["after"].started_at is not None
    assert max(s.finished_at for s in items if s.finished_at) <= steps["after"].started_at
    assert run.metrics is not None
    assert run.metrics["max_parallelism"] == 3
    assert run.metrics["steps_total"] == run.metrics["steps_succeeded"] == 6
    # One event sequence per item, each with its parent and index.
    started = harness.store.event_data(run.id, "step.started")
    by_step = {d["step_id"]: d for d in started}
    assert by_step["fan"]["items"] == 3
    assert {by_step[f"fan[{i}]"]["parent"] for i in range(3)} == {"fan"}
    assert [by_step[f"fan[{i}]"]["index"] for i in range(3)] == [0, 1, 2]
    ended = harness.store.event_data(run.id, "step.succeeded")
    assert sorted(d["step_id"] for d in ended) == sorted(
        ["src", "fan", "fan[0]", "fan[1]", "fan[2]", "after"]
    )
    check_event_invariants(harness, run.id)
    # The run's steps list shows the items right after their step, in index order.
    shown = [s["id"] for s in run_json(run)["steps"]]
    assert shown == ["src", "fan", "fan[0]", "fan[1]", "fan[2]", "after"]


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def test_items_address_fields_and_order_sorts_past_ten(
    harness: Harness, autojump_clock: MockClock
) -> None:
    values = [{"name": f"n{i}"} for i in range(12)]
    run = await harness.run([src(values), fan("t.echo", {"value": "{{item.name}}"}), after()])
    assert run.status is RunStatus.SUCCEEDED
    assert by_id(run)["fan"].output == [{"value": f"n{i}"} for i in range(12)]
    shown = [s["id"] for s in run_json(run)["steps"]]
    assert shown[2:14] == [f"fan[{i}]" for i in range(12)]


async def test_an_empty_list_succeeds_at_once(harness: Harness, autojump_clock: MockClock) -> None:
    run = await harness.run([src([]), fan(), after()])
    assert run.status is RunStatus.SUCCEEDED
    assert by_id(run)["fan"].output == []
    assert by_id(run)["after"].output == {"value": "[]"}
    check_event_invariants(harness, run.id)


async def test_too_many_items_fail_the_step_clearly(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    harness = build_harness(tmp_path, max_fanout_items=2)
    await nursery.start(harness.supervisor.run)
    run = await harness.run([src([1, 1, 1]), fan(), after()])
    assert run.status is RunStatus.FAILED
    steps = by_id(run)
    assert steps["fan"].status is StepStatus.FAILED
    assert steps["fan"].error is not None
    assert steps["fan"].error["code"] == "fanout_too_large"
    assert "3 items; at most 2" in steps["fan"].error["message"]
    assert "STRETTO_MAX_FANOUT_ITEMS" in steps["fan"].error["message"]
    assert not any(split_item_id(s.id) for s in run.steps)  # no item ran
    assert steps["after"].status is StepStatus.SKIPPED
    check_event_invariants(harness, run.id)


async def test_a_source_that_is_not_a_list_fails_the_step(
    harness: Harness, autojump_clock: MockClock
) -> None:
    run = await harness.run([src("text"), fan()])  # type: ignore[arg-type]
    assert run.status is RunStatus.FAILED
    error = by_id(run)["fan"].error
    assert error is not None
    assert error["code"] == "invalid_for_each"
    check_event_invariants(harness, run.id)


async def test_a_failed_item_fails_the_run_and_cancels_its_siblings(
    harness: Harness, autojump_clock: MockClock
) -> None:
    run = await harness.run(
        [
            src(["a", "bad", "c"]),
            src([10, 20], "src2"),
            fan(step_id="slow", source="{{steps.src2.output.value}}", needs=("src2",)),
            fan("t.check", {"value": "{{item}}"}),
            after(),
        ]
    )
    assert run.status is RunStatus.FAILED
    steps = by_id(run)
    assert steps["fan[1]"].status is StepStatus.FAILED
    assert steps["fan[1]"].error is not None
    assert steps["fan[1]"].error["code"] == "bad"
    assert steps["fan"].status is StepStatus.FAILED
    assert steps["fan"].error is not None
    assert steps["fan"].error["code"] == "item_failed"
    assert steps["fan"].error["failed"] == ["fan[1]"]
    assert run.error is not None
    assert run.error["step_id"] == "fan[1]"
    assert steps["after"].status is StepStatus.SKIPPED
    # The sleeping items of the other fan-out are cancelled together with it.
    assert steps["slow"].status is StepStatus.CANCELLED
    assert [steps[f"slow[{i}]"].status for i in range(2)] == [StepStatus.CANCELLED] * 2
    assert sorted(harness.log.cancelled) == ["slow[0]", "slow[1]"]
    cancelled = harness.store.event_data(run.id, "step.cancelled")
    reasons = {d["step_id"]: d["reason"] for d in cancelled}
    assert reasons == dict.fromkeys(["slow", "slow[0]", "slow[1]"], "sibling_failed")
    check_event_invariants(harness, run.id)


async def test_continue_on_error_lets_the_other_items_finish(
    harness: Harness, autojump_clock: MockClock
) -> None:
    run = await harness.run(
        [
            src(["a", "bad", "c"]),
            fan("t.check", {"value": "{{item}}"}, continue_on_error=True),
            after(),
            {"id": "other", "tool": "t.sleep", "args": {"seconds": 1}, "needs": []},
        ]
    )
    steps = by_id(run)
    assert [steps[f"fan[{i}]"].status for i in range(3)] == [
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
        StepStatus.SUCCEEDED,
    ]
    assert steps["fan"].status is StepStatus.FAILED
    assert steps["after"].status is StepStatus.SKIPPED
    skipped = harness.store.event_data(run.id, "step.skipped")
    assert [(d["step_id"], d["reason"]) for d in skipped] == [("after", "dependency_failed")]
    assert steps["other"].status is StepStatus.SUCCEEDED
    check_event_invariants(harness, run.id)


async def test_each_item_is_retried_on_its_own(harness: Harness, autojump_clock: MockClock) -> None:
    run = await harness.run([src(["ok", "flaky", "ok2"]), fan("t.check", {"value": "{{item}}"})])
    assert run.status is RunStatus.SUCCEEDED
    steps = by_id(run)
    assert [steps[f"fan[{i}]"].attempts for i in range(3)] == [1, 2, 1]
    retrying = harness.store.event_data(run.id, "step.retrying")
    assert [d["step_id"] for d in retrying] == ["fan[1]"]
    check_event_invariants(harness, run.id)


async def test_the_step_timeout_bounds_each_item(
    harness: Harness, autojump_clock: MockClock
) -> None:
    run = await harness.run([src([1, 50]), fan(timeout_s=10, retries=0)])
    assert run.status is RunStatus.FAILED
    steps = by_id(run)
    assert steps["fan[0]"].status is StepStatus.SUCCEEDED
    assert steps["fan[1]"].status is StepStatus.FAILED
    assert steps["fan[1]"].error is not None
    assert steps["fan[1]"].error["code"] == "timeout"
    check_event_invariants(harness, run.id)


async def test_user_cancel_cancels_every_item(harness: Harness, autojump_clock: MockClock) -> None:
    run = await harness.submit([src([100, 100, 100]), fan(), after()])
    while len(harness.log.started) < 3:  # noqa: ASYNC110 - the tools report by list
        await trio.sleep(0.01)
    cancelled = await harness.supervisor.cancel(run.id, "u1")
    assert cancelled.status is RunStatus.CANCELLED
    steps = by_id(cancelled)
    assert sorted(harness.log.cancelled) == ["fan[0]", "fan[1]", "fan[2]"]
    reasons = {
        d["step_id"]: d["reason"] for d in harness.store.event_data(run.id, "step.cancelled")
    }
    assert reasons == dict.fromkeys(["fan", "fan[0]", "fan[1]", "fan[2]"], "user")
    assert steps["after"].status is StepStatus.SKIPPED
    check_event_invariants(harness, run.id)


async def test_a_fan_out_over_a_fan_out(harness: Harness, autojump_clock: MockClock) -> None:
    second = fan(
        "t.echo",
        {"value": "{{item.value}}!"},
        source="{{steps.fan.output}}",
        needs=("fan",),
        step_id="again",
    )
    run = await harness.run([src(["x", "y"]), fan("t.echo", {"value": "{{item}}"}), second])
    assert run.status is RunStatus.SUCCEEDED
    assert by_id(run)["again"].output == [{"value": "x!"}, {"value": "y!"}]
    check_event_invariants(harness, run.id)


async def test_a_resumed_fan_out_keeps_finished_items(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    plan = [src([1, 50]), fan(), after()]
    first = build_harness(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(first.supervisor.run)
        run = await first.submit(plan)
        while "fan[1]" not in first.log.started:  # noqa: ASYNC110 - the tools report by list
            await trio.sleep(0.1)
        await trio.sleep(5)  # fan[0] (1 s) ends, fan[1] (50 s) still runs
        await first.supervisor.shutdown(grace_s=1)
        nursery.cancel_scope.cancel()
    left = by_id(await first.fetch(run.id))
    assert left["fan[0]"].status is StepStatus.SUCCEEDED
    assert left["fan[1]"].status is StepStatus.PENDING
    assert left["fan"].status is StepStatus.PENDING

    second = build_harness(tmp_path, store=first.store)
    async with trio.open_nursery() as nursery:
        await nursery.start(second.supervisor.run)
        assert await second.supervisor.resume_unfinished() == 1
        await second.supervisor.wait_finished(run.id)
        nursery.cancel_scope.cancel()
    done = await second.fetch(run.id)
    assert done.status is RunStatus.SUCCEEDED
    assert second.log.started == ["fan[1]"]  # the finished item was not run again
    steps = by_id(done)
    assert steps["fan[1]"].attempts == 2
    assert steps["fan"].output == [
        {"slept": "1", "step": "fan[0]"},
        {"slept": "50", "step": "fan[1]"},
    ]
    check_run_log(
        d for d in (json.loads(e.data) for e in first.store.events) if d.get("run_id") == run.id
    )


def test_stored_items_whose_step_never_expands_again_are_skipped() -> None:
    """A resumed run ended (here: by the user) before its fan-out step ran again: the item
    left running by the dead process gets its terminal event and, like every step that will
    not run, ``skipped``; the item that had succeeded keeps its state."""
    plan = parse_plan({"steps": [src([1, 2]), fan()]}, REGISTRY, 10)
    stored = [
        Step("r", "src", 0, "t.echo", {}, (), status=StepStatus.SUCCEEDED, attempts=1),
        Step("r", "fan", 1, "t.sleep", {}, ("src",), status=StepStatus.PENDING, attempts=1),
        Step("r", "fan[0]", 1, "t.sleep", {}, (), status=StepStatus.RUNNING, attempts=1),
        Step("r", "fan[1]", 1, "t.sleep", {}, (), status=StepStatus.SUCCEEDED, attempts=1),
    ]
    state = RunState("p", "r")
    now = utc_now()
    started = state.start(plan, stored, False, now, RunStatus.RUNNING)
    assert [(e.type, e.data["step_id"], e.data["reason"]) for e in started.events] == [
        ("step.cancelled", "fan[0]", "shutdown")
    ]
    assert ("fan[0]", {"status": StepStatus.PENDING}) in started.steps
    state.end(USER_CANCELLED)
    records, status = state.finish(now, None, {})
    assert status is RunStatus.CANCELLED
    skipped = [e.data["step_id"] for e in records.events if e.type == "step.skipped"]
    assert sorted(skipped) == ["fan", "fan[0]"]
    assert not any(sid == "fan[1]" for sid, _ in records.steps)
