"""The performance monitor: per-step queue wait, duration and attempts; per-run wall time,
critical path and maximum parallelism. Times come from ``trio.current_time()`` so tests
under ``MockClock`` see exact numbers. ``RunClock`` maps that clock onto UTC timestamps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import trio

from server.timeutil import utc_now
from server.workflow.analyzer import critical_path

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime


class RunClock:
    """UTC timestamps that advance with trio's clock (monotonic, and mockable in tests)."""

    def __init__(self) -> None:
        self._wall = utc_now()
        self._t0 = trio.current_time()

    def t(self) -> float:
        return trio.current_time()

    def now(self) -> datetime:
        return self._wall + timedelta(seconds=trio.current_time() - self._t0)


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


@dataclass
class StepTiming:
    ready_t: float | None = None
    started_t: float | None = None
    ended_t: float | None = None
    attempts: int = 0
    prior_ms: float = 0.0  # duration recorded by an earlier process (resumed runs)
    counted: bool = True  # counts towards max_parallelism (a fan-out step does not)

    @property
    def queue_ms(self) -> float | None:
        if self.ready_t is None or self.started_t is None:
            return None
        return ms(self.started_t - self.ready_t)

    @property
    def duration_ms(self) -> float | None:
        if self.started_t is None or self.ended_t is None:
            return None
        return ms(self.ended_t - self.started_t)


class RunMonitor:
    """Collects timings as the executor reports them. Not thread-safe; one per run."""

    def __init__(self, clock: RunClock) -> None:
        self._clock = clock
        self.steps: dict[str, StepTiming] = {}
        self._running = 0
        self.max_parallelism = 0
        self.started_t: float | None = None
        self.ended_t: float | None = None

    def _timing(self, step_id: str) -> StepTiming:
        return self.steps.setdefault(step_id, StepTiming())

    def restore(self, step_id: str, duration_ms: float | None, attempts: int) -> None:
        timing = self._timing(step_id)
        timing.prior_ms = duration_ms or 0.0
        timing.attempts = attempts

    def run_started(self) -> None:
        self.started_t = self._clock.t()

    def run_ended(self) -> None:
        self.ended_t = self._clock.t()

    def step_ready(self, step_id: str) -> None:
        self._timing(step_id).ready_t = self._clock.t()

    def step_started(self, step_id: str, *, counted: bool = True) -> float:
        """The step acquired its limiters; returns its queue wait in ms. ``counted=False``:
        a step that holds no limiter (fan-out) does not count towards the parallelism."""
        timing = self._timing(step_id)
        timing.started_t = self._clock.t()
        timing.counted = counted
        if counted:
            self._running += 1
            self.max_parallelism = max(self.max_parallelism, self._running)
        return timing.queue_ms or 0.0

    def attempt(self, step_id: str) -> None:
        self._timing(step_id).attempts += 1

    def step_ended(self, step_id: str) -> float:
        """The step stopped running; returns its duration in ms."""
        timing = self._timing(step_id)
        if timing.ended_t is None and timing.started_t is not None:
            timing.ended_t = self._clock.t()
            self._running -= 1 if timing.counted else 0
        return timing.duration_ms or 0.0

    def durations_ms(self) -> dict[str, float]:
        return {sid: t.duration_ms or t.prior_ms for sid, t in self.steps.items()}

    def metrics(
        self, needs: Mapping[str, Iterable[str]], steps_total: int, steps_succeeded: int
    ) -> dict[str, Any]:
        """The run's ``metrics`` object (API.md) plus a per-step breakdown under ``steps``."""
        wall = None
        if self.started_t is not None:
            wall = ms(
                (self.ended_t if self.ended_t is not None else self._clock.t()) - self.started_t
            )
        cp_ms, cp_steps = critical_path(needs, self.durations_ms())
        return {
            "wall_ms": wall,
            "critical_path_ms": round(cp_ms, 3),
            "critical_path": cp_steps,
            "steps_total": steps_total,
            "steps_succeeded": steps_succeeded,
            "max_parallelism": self.max_parallelism,
            "steps": {
                sid: {
                    "queue_ms": t.queue_ms,
                    "duration_ms": t.duration_ms if t.duration_ms is not None else t.prior_ms,
                    "attempts": t.attempts,
                }
                for sid, t in self.steps.items()
            },
        }
