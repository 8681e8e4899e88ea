"""The well-formedness rules of a run's event log, shared by the executor, transition,
fault and operations tests (issue 11: every step event sequence stays well formed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

RUN_ENDS = ("run.succeeded", "run.failed", "run.cancelled")
STEP_ENDS = ("step.succeeded", "step.failed", "step.cancelled")


def check_run_log(events: Iterable[Mapping[str, Any]], *, finished: bool = True) -> None:
    """``events``: one run's event ``data`` objects in log order. Each started attempt of a
    step ends with exactly one terminal event (``step.retrying`` carries it to the next
    attempt), no attempt ends that did not start, a step that ended does not end again
    unless it started again, a retry's reused step (``step.succeeded`` with ``reused``,
    attempt 0) never started here, and (``finished``) one run end comes last."""
    open_attempt: dict[str, int] = {}
    kinds = []
    for data in events:
        kind = data["type"]
        kinds.append(kind)
        sid = str(data.get("step_id"))
        if kind == "step.started":
            assert sid not in open_attempt, f"{sid} started twice: {kinds}"
            open_attempt[sid] = data["attempt"]
        elif kind == "step.retrying":
            assert open_attempt.get(sid) == data["attempt"], f"{sid} retried unstarted: {kinds}"
            open_attempt[sid] = data["next_attempt"]
        elif kind == "step.succeeded" and data.get("reused"):  # a retry's reused output
            assert sid not in open_attempt, f"{sid} reused while running: {kinds}"
            assert data["attempt"] == 0, f"{sid} reused with an attempt: {kinds}"
        elif kind in STEP_ENDS:
            assert open_attempt.get(sid) == data["attempt"], f"{sid} ended unstarted: {kinds}"
            del open_attempt[sid]
        elif kind == "step.skipped":
            assert sid not in open_attempt, f"{sid} skipped while running: {kinds}"
    ends = [k for k in kinds if k in RUN_ENDS]
    if finished:
        assert len(ends) == 1, kinds
        assert kinds[-1] == ends[0], kinds
        assert not open_attempt, f"attempts never ended: {open_attempt}"
    else:
        assert not ends, kinds
