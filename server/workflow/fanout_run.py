"""Driving a ``for_each`` step inside a run: the executor's side of ``workflow.fanout``.

``run_fanout`` starts the fan-out step (``step.started`` with ``items``), resolves its list
(at most ``settings.max_fanout_items`` items, else it fails ``fanout_too_large``) and expands
it into item steps (``edit[0]``...) that the executor dispatches as steps of their own, under
the same limiters, timeout and retries. The fan-out step holds no slot. ``fanout_end`` gives
the fan-out step's end once its items decided it: success with the list of its items'
outputs, or ``item_failed`` as soon as one fails (with ``continue_on_error``: once all ended).
Raises what the run's writer raises; cancellation passes through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.errors import ToolError
from server.workflow import fanout
from server.workflow.records import Records

if TYPE_CHECKING:
    from server.workflow.executor import RunExecutor
    from server.workflow.plan import PlanStep


async def run_fanout(ex: RunExecutor, step: PlanStep) -> None:
    """Start the fan-out step and expand it into its items (dispatched at once)."""
    plan = ex.plan
    settings = ex.deps.settings
    try:
        items: list[Any] | ToolError = fanout.fanout_items(
            step, ex.outputs, settings.max_fanout_items
        )
    except ToolError as exc:
        items = exc
    extra = {} if isinstance(items, ToolError) else {"items": len(items)}
    queue_ms = ex.monitor.step_started(step.id, counted=False)
    ex.monitor.attempt(step.id)
    await ex.commit(ex.state.step_started(step.id, step.tool, queue_ms, ex.clock.now(), **extra))
    if isinstance(items, ToolError):
        await ex.record_outcome(step, items, ex.monitor.step_ended(step.id))
        return
    built = fanout.item_steps(step, items, settings.max_template_arg_bytes)
    for (item_step, _shown), item in zip(built, items, strict=True):
        ex.item_steps[item_step.id] = item_step
        ex.items[item_step.id] = item
        ex.tools[item_step.id] = step.tool
    position = plan.steps.index(step)
    records, done = fanout.expand(
        ex.state, step.id, position, [shown for _, shown in built], step.tool
    )
    for item_id in done:
        ex.outputs[item_id] = ex.state.stored_items[item_id].output
    records.merge(fanout_end(ex, step.id))
    await ex.commit_and_dispatch(records)


def fanout_end(ex: RunExecutor, parent: str) -> Records:
    """The fan-out step's end, when its items decided it (else nothing)."""
    step = ex.plan.step(parent)
    decided = fanout.outcome(ex.state, parent, step.continue_on_error)
    if decided is None:
        return Records()
    return fanout.end_records(
        ex.state,
        step,
        decided,
        ex.outputs,
        ex.monitor.step_ended(parent),
        ex.clock.now(),
        ex.deps.settings.step_output_max_bytes,
    )
