"""Dynamic fan-out: a ``for_each`` step runs once per item of an earlier step's list output.

Pure (no trio, no I/O): the executor calls these around its own awaits.
- ``fanout_items`` resolves the list (``ToolError``: ``invalid_for_each`` when the reference
  does not name a list, ``fanout_too_large`` past ``max_fanout_items``).
- ``item_steps`` builds one ``PlanStep`` per item (id ``<step>[<index>]``; the parent's tool,
  args, timeout, retries and ``continue_on_error``) and the args each item shows.
- ``expand`` adds the items to the run's state as steps of their own (new rows, or the rows an
  earlier process stored, reset; items that already succeeded stay succeeded).
- ``outcome`` and ``end_records`` decide and record the fan-out step's own end: it succeeds
  with the list of its items' outputs, and fails (``item_failed``) as soon as an item fails,
  or, with ``continue_on_error``, once every item ended and one failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.errors import ToolError
from server.store.models import Step, StepStatus
from server.workflow.analyzer import Slot
from server.workflow.events import bounded_output
from server.workflow.plan import PlanStep, item_step_id
from server.workflow.templates import TemplateError, parse_reference, render_item, resolve
from server.workflow.transitions import Records

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from server.store.models import StepFields
    from server.workflow.transitions import RunState

_ENDED = frozenset({Slot.SUCCEEDED, Slot.FAILED, Slot.SKIPPED, Slot.CANCELLED})


def fanout_items(step: PlanStep, outputs: Mapping[str, Any], limit: int) -> list[Any]:
    """The list ``step.for_each`` names in ``outputs``; raises ``ToolError``."""
    ref = parse_reference(step.for_each or "")
    if ref is None:
        raise ToolError("invalid_for_each", f"step {step.id!r} has no for_each reference.")
    try:
        value = resolve(ref, outputs)
    except TemplateError as exc:
        raise ToolError(exc.code, str(exc)) from None
    if not isinstance(value, list):
        raise ToolError(
            "invalid_for_each",
            f"for_each {step.for_each} is a {type(value).__name__}, not a list.",
        )
    if len(value) > limit:
        raise ToolError(
            "fanout_too_large",
            f"for_each {step.for_each} has {len(value)} items; at most {limit} are allowed "
            "(STRETTO_MAX_FANOUT_ITEMS).",
        )
    return value


def item_steps(
    step: PlanStep, items: Sequence[Any], max_bytes: int
) -> list[tuple[PlanStep, dict[str, Any]]]:
    """One (plan step, shown args) per item. The shown args have the ``{{item...}}``
    references replaced (step references stay as written); an item whose references do not
    resolve shows the args as written and fails when it runs."""
    out: list[tuple[PlanStep, dict[str, Any]]] = []
    for index, item in enumerate(items):
        item_step = PlanStep(
            id=item_step_id(step.id, index),
            tool=step.tool,
            args=step.args,
            timeout_s=step.timeout_s,
            retries=step.retries,
            continue_on_error=step.continue_on_error,
        )
        try:
            shown = render_item(dict(step.args), item, max_bytes)
        except TemplateError:
            shown = dict(step.args)
        out.append((item_step, shown))
    return out


def expand(
    state: RunState, parent: str, position: int, item_args: Sequence[Mapping[str, Any]], tool: str
) -> tuple[Records, list[str]]:
    """The started fan-out step ``parent`` runs once per item: add the items as steps.

    Returns the records (new rows, or stored rows reset to ``pending``) and the ids of items
    an earlier process already finished with success (their outputs are the caller's to
    restore). Raises ``ValueError`` when ``parent`` is not running."""
    analyzer = state.analyzer
    if analyzer is None or parent not in state.started:
        raise ValueError(f"step {parent!r} is not running")
    ids = [item_step_id(parent, index) for index in range(len(item_args))]
    analyzer.add_items(parent, ids)
    state.items[parent] = ids
    records = Records()
    done: list[str] = []
    for item_id, args in zip(ids, item_args, strict=True):
        state.item_parent[item_id] = parent
        stored = state.stored_items.get(item_id)
        if stored is None:
            records.new_steps.append(
                Step(state.run_id, item_id, position, tool, dict(args), needs=())
            )
        elif stored.status is StepStatus.SUCCEEDED:
            analyzer.restore(item_id, Slot.SUCCEEDED)
            state.succeeded += 1
            done.append(item_id)
        else:
            fields: StepFields = {"status": StepStatus.PENDING, "args": dict(args), "error": None}
            records.steps.append((item_id, fields))
    return records, done


def outcome(state: RunState, parent: str, continue_on_error: bool) -> Slot | None:
    """``SUCCEEDED`` once every item succeeded; ``FAILED`` once an item failed (without
    ``continue_on_error``) or once all ended and one failed; None while undecided or when
    the parent already ended."""
    analyzer = state.analyzer
    if analyzer is None or parent not in state.started or parent not in state.items:
        return None
    slots = [analyzer.slot(item_id) for item_id in state.items[parent]]
    if all(slot is Slot.SUCCEEDED for slot in slots):
        return Slot.SUCCEEDED
    failed = any(slot is Slot.FAILED for slot in slots)
    if failed and (not continue_on_error or all(slot in _ENDED for slot in slots)):
        return Slot.FAILED
    return None


def end_records(
    state: RunState,
    step: PlanStep,
    decided: Slot,
    outputs: dict[str, Any],
    duration_ms: float | None,
    at: datetime,
    max_output_bytes: int,
) -> Records:
    """Record the fan-out step's end as ``outcome`` decided it. On success its output (the
    list of its items' outputs) is put in ``outputs`` for its dependents."""
    item_ids = state.items[step.id]
    if decided is Slot.SUCCEEDED:
        output = [outputs.get(item_id) for item_id in item_ids]
        stored = bounded_output(output, max_output_bytes)
        records, _ready = state.step_succeeded(step.id, stored, duration_ms, at)
        outputs[step.id] = output
        return records
    analyzer = state.analyzer
    assert analyzer is not None
    failed = [i for i in item_ids if analyzer.slot(i) is Slot.FAILED]
    message = f"{len(failed)} of {len(item_ids)} items failed: {', '.join(failed[:10])}"
    error = {**ToolError("item_failed", message).to_json(), "failed": failed[:100]}
    return state.step_failed(step.id, error, message, step.continue_on_error, duration_ms, at)
