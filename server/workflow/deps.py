"""What every run of the process shares: ``ExecutorDeps``, and the planner seam ``RunPlanner``.

``ExecutorDeps`` holds the store, the publisher, the tools, the model provider and planner,
and the process-wide limits: the global and per-tool ``FairLimiter``s, whose slots are
shared fairly between the runs' owners (``server.fairness``), and the daily token budget.
The supervisor builds one; each ``RunExecutor`` reads it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from server.ai.budget import TokenBudget
from server.backoff import Backoff
from server.fairness import FairLimiter
from server.workflow.writer import WorkflowObserver, WritePolicy

if TYPE_CHECKING:
    from server.config import Settings
    from server.events.publisher import Publisher
    from server.store.protocol import Store
    from server.workflow.tools.registry import FileAccess, Tool, ToolRegistry

STEP_BACKOFF = Backoff(0.5, 30.0)  # jitter in [50%, 100%], never below a Retry-After


class RunPlanner(Protocol):
    """Turns a prompt into (intent, plan JSON). Implemented by ``workflow.planner.Planner``."""

    async def analyze_and_plan(
        self, project_id: str, prompt: str
    ) -> tuple[dict[str, Any], dict[str, Any]]: ...


@dataclass
class ExecutorDeps:
    """What every run shares: the store, the publisher, the tools and the process limits."""

    store: Store
    publisher: Publisher
    files: FileAccess
    registry: ToolRegistry
    settings: Settings
    provider: Any = None
    planner: RunPlanner | None = None
    global_limiter: FairLimiter | None = None
    tool_limiters: dict[str, FairLimiter] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    step_backoff: Backoff = STEP_BACKOFF
    write_policy: WritePolicy = field(default_factory=WritePolicy)
    observer: WorkflowObserver | None = None
    token_budget: TokenBudget | None = None

    def __post_init__(self) -> None:
        if self.global_limiter is None:
            self.global_limiter = FairLimiter(self.settings.global_concurrency)
        if self.token_budget is None:
            self.token_budget = TokenBudget(self.settings.ai_daily_token_budget)

    def tool_limiter(self, tool: Tool) -> FairLimiter | None:
        if tool.max_concurrency is None:
            return None
        limiter = self.tool_limiters.get(tool.name)
        if limiter is None:
            limiter = self.tool_limiters[tool.name] = FairLimiter(tool.max_concurrency)
        return limiter
