"""Token accounting of one run: planning and each step's model calls, and the user's budget.

``RunAccounting`` is what the executor holds per run. ``metered(key)`` wraps an attempt (or
the planning) in a ``server.ai.usage`` meter; when the block ends (success, failure or
cancellation alike: tokens spent are spent) its usage is added to that key's total, to the
run's total, and to the owner's daily ``TokenBudget``. ``check(tool)`` raises ``RateLimited``
before a model call when the owner's budget is spent. No I/O; never blocks.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from server.ai import usage
from server.ai.usage import UsageMeter

if TYPE_CHECKING:
    from collections.abc import Iterator

    from server.ai.budget import TokenBudget

PLANNING = "planning"  # the key of the planning meter (never a step id: ids have no ':')
MODEL_TOOL_PREFIX = "ai."  # tools that call the model


def calls_model(tool_name: str) -> bool:
    """Whether the tool asks the model (and so spends tokens from the user's budget)."""
    return tool_name.startswith(MODEL_TOOL_PREFIX)


class RunAccounting:
    """The tokens one run spent, by step (and planning) and in total."""

    def __init__(self, owner_id: str, budget: TokenBudget | None) -> None:
        self.owner_id = owner_id
        self.budget = budget
        self.run = UsageMeter()
        self._by_key: dict[str, UsageMeter] = {}

    def check(self) -> None:
        """Raise ``RateLimited`` when the owner's daily token budget is spent."""
        if self.budget is not None:
            self.budget.check(self.owner_id)

    @contextmanager
    def metered(self, key: str) -> Iterator[None]:
        """Count the model calls this task makes inside the block under ``key``."""
        meter = UsageMeter()
        try:
            with usage.metering(meter):
                yield
        finally:
            into = self._by_key.setdefault(key, UsageMeter())
            for model, spent in meter.by_model.items():
                into.add(model, spent)
                self.run.add(model, spent)
            if self.budget is not None:
                self.budget.spend(self.owner_id, meter.total().total)

    def usage_of(self, key: str) -> dict[str, Any] | None:
        """The ``usage`` object of a step (or of planning), None when it made no model call."""
        meter = self._by_key.get(key)
        return None if meter is None else meter.to_json()

    def run_usage(self) -> dict[str, Any] | None:
        return self.run.to_json()
