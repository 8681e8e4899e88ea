"""The dynamic half of the dependency analyzer: which steps may start as results arrive.

Pure bookkeeping over a validated ``Plan`` (no trio). The executor asks ``ready_steps()``
whenever a step finishes and starts every step returned at once: there are no supersteps.
``critical_path`` is the longest chain of ``needs`` weighted by step durations.

Fan-out: ``add_items`` adds the items of an expanded ``for_each`` step as steps of their own.
They need what their parent needs (so they are ready at once) and nothing depends on them:
the parent stays dispatched until the caller ends it from its items' slots.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from server.workflow.graph import topological_order

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from server.workflow.plan import Plan


class Slot(StrEnum):
    WAITING = "waiting"  # needs not all succeeded
    DISPATCHED = "dispatched"  # handed to the executor (queued or running)
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class DependencyAnalyzer:
    """Tracks each step's slot. Methods raise ``KeyError`` for unknown ids, ``ValueError`` for
    transitions that break the rules (dispatching a step whose needs did not succeed).

    The ready and dispatched steps are kept as sets, updated by each transition, so asking
    for them costs what they hold, not the plan's size (a 1,000-step run asks 1,000 times)."""

    def __init__(self, plan: Plan, succeeded: Iterable[str] = ()) -> None:
        self._needs: dict[str, tuple[str, ...]] = plan.needs
        self._order = topological_order(self._needs)
        self._position = {sid: i for i, sid in enumerate(self._needs)}  # plan order
        self._dependents: dict[str, list[str]] = {sid: [] for sid in self._needs}
        for sid, needs in self._needs.items():
            for need in needs:
                self._dependents[need].append(sid)
        self._slot: dict[str, Slot] = dict.fromkeys(self._needs, Slot.WAITING)
        for sid in succeeded:
            self._slot[sid] = Slot.SUCCEEDED
        self._ready: set[str] = set()
        self._dispatched: set[str] = set()
        self._recount()

    def _recount(self) -> None:
        self._ready = {sid for sid in self._needs if self._is_ready(sid)}
        self._dispatched = {sid for sid, slot in self._slot.items() if slot is Slot.DISPATCHED}

    def _is_ready(self, sid: str) -> bool:
        return self._slot[sid] is Slot.WAITING and all(
            self._slot[n] is Slot.SUCCEEDED for n in self._needs[sid]
        )

    def _leave(self, step_id: str, slot: Slot) -> None:
        self._slot[step_id] = slot
        self._ready.discard(step_id)
        self._dispatched.discard(step_id)

    def _in_plan_order(self, step_ids: Iterable[str]) -> list[str]:
        return sorted(step_ids, key=self._position.__getitem__)

    def add_items(self, parent: str, item_ids: Sequence[str]) -> None:
        """The dispatched fan-out step ``parent`` expanded into ``item_ids`` (waiting)."""
        if self._slot[parent] is not Slot.DISPATCHED:
            raise ValueError(f"step {parent!r} is not dispatched")
        for item_id in item_ids:
            if item_id in self._slot:
                raise ValueError(f"step {item_id!r} exists")
            self._needs[item_id] = self._needs[parent]
            self._dependents[item_id] = []
            self._slot[item_id] = Slot.WAITING
            self._position[item_id] = len(self._position)
            self._order.append(item_id)
            if self._is_ready(item_id):
                self._ready.add(item_id)

    def restore(self, step_id: str, slot: Slot) -> None:
        """Set a step's slot from a stored state (resumed runs)."""
        self._slot[step_id] = slot
        self._recount()

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._slot

    def slot(self, step_id: str) -> Slot:
        return self._slot[step_id]

    def ready_steps(self) -> list[str]:
        """Waiting steps whose needs all succeeded, in plan order; not yet dispatched."""
        return self._in_plan_order(self._ready)

    def dispatch(self, step_id: str) -> None:
        if self._slot[step_id] is not Slot.WAITING or step_id not in self._ready:
            raise ValueError(f"step {step_id!r} is not ready")
        self._ready.discard(step_id)
        self._slot[step_id] = Slot.DISPATCHED
        self._dispatched.add(step_id)

    def succeeded(self, step_id: str) -> list[str]:
        """Record a success; return the steps that became ready because of it."""
        self._leave(step_id, Slot.SUCCEEDED)
        ready = [sid for sid in self._dependents[step_id] if self._is_ready(sid)]
        self._ready.update(ready)
        return ready

    def failed(self, step_id: str) -> list[str]:
        """Record a failure; return the waiting steps that now can never run (all transitive
        dependents), marked skipped."""
        self._leave(step_id, Slot.FAILED)
        doomed: list[str] = []
        stack = list(self._dependents[step_id])
        while stack:
            sid = stack.pop()
            if self._slot[sid] is Slot.WAITING:
                self._leave(sid, Slot.SKIPPED)
                doomed.append(sid)
                stack.extend(self._dependents[sid])
        return sorted(doomed, key=self._order.index)

    def cancelled(self, step_id: str) -> None:
        self._leave(step_id, Slot.CANCELLED)

    def skip_waiting(self) -> list[str]:
        """Mark every waiting step skipped (the run ends early); return them in plan order."""
        waiting = [sid for sid in self._needs if self._slot[sid] is Slot.WAITING]
        for sid in waiting:
            self._leave(sid, Slot.SKIPPED)
        return waiting

    def in_flight(self) -> list[str]:
        return self._in_plan_order(self._dispatched)

    @property
    def finished(self) -> bool:
        """Nothing dispatched and nothing ready: the run has nothing left to do."""
        return not self._dispatched and not self._ready


def critical_path(
    needs: Mapping[str, Iterable[str]], durations: Mapping[str, float]
) -> tuple[float, list[str]]:
    """Longest path through the DAG, weighting each step by its duration (missing: 0).

    Returns (total duration, step ids from first to last).
    """
    graph = {sid: tuple(deps) for sid, deps in needs.items()}
    best: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for sid in topological_order(graph):
        prev = max(graph[sid], key=lambda n: best[n], default=None)
        best[sid] = durations.get(sid, 0.0) + (best[prev] if prev is not None else 0.0)
        via[sid] = prev
    if not best:
        return 0.0, []
    end: str | None = max(best, key=lambda s: best[s])
    total = best[end]  # type: ignore[index]
    path: list[str] = []
    while end is not None:
        path.append(end)
        end = via[end]
    return total, path[::-1]
