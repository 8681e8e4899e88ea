"""Retry policy of model calls: Retry-After parsing and backoff."""

from __future__ import annotations

import random
from datetime import timedelta
from email.utils import format_datetime

import pytest

from server.ai.retry import RetryPolicy, parse_retry_after
from server.timeutil import utc_now


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 2.5 ", 2.5),
        (None, None),
        ("soon", None),
        ("-1", None),
        ("nan", None),
    ],
)
def test_parse_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_parse_retry_after_http_date() -> None:
    later = format_datetime(utc_now() + timedelta(seconds=120), usegmt=True)
    parsed = parse_retry_after(later)
    assert parsed is not None
    assert 100 < parsed <= 120
    earlier = format_datetime(utc_now() - timedelta(seconds=120), usegmt=True)
    assert parse_retry_after(earlier) == 0.0


def test_retry_after_wins_over_backoff() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=8.0)
    assert policy.delay(1, 30.0) == 30.0


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=4.0, jitter=0.0)
    assert [policy.delay(n, None) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    jittered = RetryPolicy(initial_delay=1.0, jitter=0.25)
    rng = random.Random(7)
    assert all(0.75 <= jittered.delay(1, None, rng) <= 1.25 for _ in range(100))
