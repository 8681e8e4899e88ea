"""``Records``: what one transition of a run writes in one transaction. Pure.

``transitions`` builds them, ``writer`` commits them (one ``store.write_run_state``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.store.models import RunFields, Step, StepFields

if TYPE_CHECKING:
    from server.events.model import NewEvent
    from server.workflow.plan import Plan

StepUpdate = tuple[str, StepFields]
"""A step's id and the columns to set on it."""


@dataclass
class Records:
    """What one transition writes: run fields, new step rows, step fields, events, in order.
    ``merge`` joins records written in one transaction (later run fields win)."""

    run: RunFields = field(default_factory=lambda: RunFields())
    new_steps: list[Step] = field(default_factory=list)
    steps: list[StepUpdate] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)

    def merge(self, other: Records) -> None:
        self.run.update(other.run)
        self.new_steps.extend(other.new_steps)
        self.steps.extend(other.steps)
        self.events.extend(other.events)

    def __bool__(self) -> bool:
        return bool(self.run or self.new_steps or self.steps or self.events)


def steps_of(run_id: str, plan: Plan) -> list[Step]:
    """Fresh ``pending`` step records for a plan."""
    return [
        Step(run_id=run_id, id=s.id, position=i, tool=s.tool, args=dict(s.args), needs=s.needs)
        for i, s in enumerate(plan.steps)
    ]
