"""Retry policy of model calls: which failures to retry and how long to wait. Pure functions.

The Gemini provider owns its retries (the SDK's are switched off explicitly) so that a
server's ``Retry-After`` is honoured, which the SDK's exponential backoff ignores.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from server.backoff import Backoff
from server.timeutil import utc_now

if TYPE_CHECKING:
    import random

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` includes the first call; delays in seconds."""

    attempts: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.25

    def delay(
        self, attempt: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """Wait before retry number ``attempt`` (1 = the first retry).

        The server's ``Retry-After`` wins when given (it may exceed ``max_delay``: the
        caller's overall deadline bounds it); otherwise exponential backoff with jitter.
        """
        if retry_after is not None:
            return max(0.0, retry_after)
        spread = Backoff(self.initial_delay, self.max_delay, 1 - self.jitter, 1 + self.jitter)
        return spread.delay(attempt, None, rng)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or garbled."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            return None
        return max(0.0, (moment - utc_now()).total_seconds())
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds
