"""The pacing of retries: the one backoff formula, per-run adoption backoff, the
rate-limited failure log. Pure."""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

from hypothesis import given, settings
from hypothesis import strategies as st

from server.backoff import Backoff
from server.errors import StoreUnavailable
from server.workflow.leases import AdoptionBackoff, RateLimitedLog

if TYPE_CHECKING:
    import pytest


@settings(deadline=None)  # a loaded, shared machine: no per-example deadline
@given(
    st.integers(min_value=1, max_value=10_000),
    st.floats(min_value=0.01, max_value=10),
    st.floats(min_value=0.01, max_value=100),
    st.none() | st.floats(min_value=0, max_value=1000),
)
def test_backoff_stays_within_its_bounds(
    attempt: int, initial: float, cap: float, retry_after: float | None
) -> None:
    policy = Backoff(initial, cap, 0.5, 1.0)
    delay = policy.delay(attempt, retry_after, random.Random(attempt))
    ceiling = min(cap, initial * 2.0 ** min(attempt - 1, 64))
    assert delay >= (retry_after or 0.0)
    assert delay >= ceiling * 0.5 or delay == retry_after
    assert delay <= max(ceiling, retry_after or 0.0)


def test_backoff_doubles_then_caps_without_jitter() -> None:
    policy = Backoff(0.5, 4.0, 1.0, 1.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_troubled_run_waits_longer_each_time_and_is_forgotten_on_success() -> None:
    adoption = AdoptionBackoff(Backoff(1.0, 60.0, 1.0, 1.0))
    assert adoption.ready("r", 0.0)
    assert adoption.failed("r", 0.0) == 1.0
    assert not adoption.ready("r", 0.5)
    assert adoption.due(0.5) == []
    assert adoption.due(1.0) == ["r"]
    assert adoption.failed("r", 1.0) == 2.0
    assert not adoption.ready("r", 2.5)
    adoption.succeeded("r")
    assert adoption.ready("r", 0.0)
    assert adoption.due(100.0) == []


def test_a_repeated_failure_is_logged_once_per_interval_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.rate")
    rated = RateLimitedLog(logger, "lease maintenance", interval_s=60)
    error = StoreUnavailable("database or disk is full")
    with caplog.at_level(logging.INFO, logger="test.rate"):
        for second in range(0, 130):
            rated.failure(error, float(second))
        rated.success()
        rated.success()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines  # t=0, t=60, t=120, and the recovery once
    assert "59 more" in lines[1]
    assert lines[-1] == "lease maintenance works again"
    assert all(r.exc_info is None for r in caplog.records)
