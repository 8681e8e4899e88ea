"""Pacing of the supervisor's lease work: per-run adoption backoff and a rate-limited log.

Pure (times are ``trio.current_time()`` values the caller passes in). A run whose execution
was abandoned to an unavailable store, or whose claim failed, is not adopted again before
its backoff passes, so a full disk or an outage is not hammered with retries that each
rewrite the run; a repeated failure is logged once per interval, without a traceback.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.backoff import Backoff

if TYPE_CHECKING:
    import logging

ADOPTION_BACKOFF = Backoff(1.0, 60.0)
LOG_INTERVAL_S = 60.0


@dataclass
class AdoptionBackoff:
    """When each troubled run may be adopted again."""

    backoff: Backoff = ADOPTION_BACKOFF
    rng: random.Random = field(default_factory=random.Random)
    _failures: dict[str, int] = field(default_factory=dict)
    _not_before: dict[str, float] = field(default_factory=dict)

    def failed(self, run_id: str, now: float) -> float:
        """Record a failure; return the delay before the next adoption."""
        failures = self._failures[run_id] = self._failures.get(run_id, 0) + 1
        delay = self.backoff.delay(failures, None, self.rng)
        self._not_before[run_id] = now + delay
        return delay

    def succeeded(self, run_id: str) -> None:
        self._failures.pop(run_id, None)
        self._not_before.pop(run_id, None)

    def due(self, now: float) -> list[str]:
        """The troubled runs whose backoff has passed."""
        return [run_id for run_id, at in self._not_before.items() if at <= now]

    def ready(self, run_id: str, now: float) -> bool:
        return self._not_before.get(run_id, now) <= now


@dataclass
class RateLimitedLog:
    """Log a repeated failure once per ``interval_s`` (with how many were not logged), one
    line each, and the recovery once."""

    logger: logging.Logger
    what: str
    interval_s: float = LOG_INTERVAL_S
    _last: float | None = None
    _suppressed: int = 0
    failing: bool = False

    def failure(self, exc: BaseException, now: float) -> None:
        self.failing = True
        if self._last is not None and now - self._last < self.interval_s:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        self.logger.warning("%s failed: %s: %s%s", self.what, type(exc).__name__, exc, more)
        self._last = now
        self._suppressed = 0

    def success(self) -> None:
        if self.failing:
            self.logger.info("%s works again", self.what)
        self.failing = False
        self._last = None
        self._suppressed = 0
