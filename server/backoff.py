"""The one backoff formula of stretto: capped exponential growth with a jittered factor.

Pure. Used by step retries (``workflow/transitions.py``), the workflow's store-write retries
and run re-adoption (``workflow/writer.py``, ``workflow/supervisor.py``), model-call retries
(``ai/retry.py``) and the PostgreSQL event listener's reconnects (``events/pgbus.py``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number ``attempt`` (1 = the first retry), in seconds:
    ``min(max_s, initial_s * 2 ** (attempt - 1))`` times a factor drawn uniformly from
    ``[low, high]`` (``low == high == 1``: no jitter). Never below ``retry_after``."""

    initial_s: float
    max_s: float
    low: float = 0.5
    high: float = 1.0

    def ceiling(self, attempt: int) -> float:
        """The delay before jitter."""
        exponent = min(max(attempt, 1) - 1, 64)  # no float overflow for absurd attempts
        return min(self.max_s, self.initial_s * 2.0**exponent)

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        factor = self.low if self.low == self.high else (rng or random).uniform(self.low, self.high)
        return max(0.0, self.ceiling(attempt) * factor, retry_after or 0.0)
