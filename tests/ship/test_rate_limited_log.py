"""``RateLimitedLogger``: repeats of one line within the interval are counted, not logged;
and a 503 from the store does not show the database's address to the client."""

from __future__ import annotations

import logging

import pytest

from server.errors import StoreUnavailable
from server.observability.logging import DriverLogFilter, RateLimitedLogger


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logger(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.INFO, logger="test.ratelimit")
    return logging.getLogger("test.ratelimit")


def test_repeats_are_suppressed_then_counted(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    limited = RateLimitedLogger(logger, interval_s=60, clock=clock)
    results = [limited.warning("db down: %s", "refused") for _ in range(50)]
    assert results == [True] + [False] * 49
    clock.now = 30
    assert limited.warning("db down: %s", "timeout")  # a different line is not held back
    clock.now = 61
    assert limited.warning("db down: %s", "refused")
    lines = [(r.getMessage(), getattr(r, "suppressed", 0)) for r in caplog.records]
    assert lines == [("db down: refused", 0), ("db down: timeout", 0), ("db down: refused", 49)]


def test_levels_are_told_apart_and_disabled_levels_cost_nothing(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    limited = RateLimitedLogger(logger, interval_s=60, clock=Clock())
    assert limited.warning("same")
    assert limited.error("same")
    assert not limited.log(logging.DEBUG, "below the level")
    assert [r.levelname for r in caplog.records] == ["WARNING", "ERROR"]


def test_the_oldest_line_is_forgotten_past_max_keys(logger: logging.Logger) -> None:
    limited = RateLimitedLogger(logger, interval_s=60, max_keys=2, clock=Clock())
    assert limited.warning("a")
    assert limited.warning("b")
    assert limited.warning("c")  # forgets "a"
    assert limited.warning("a")
    assert not limited.warning("c")


def test_store_unavailable_keeps_the_cause_from_the_client() -> None:
    error = StoreUnavailable("cannot connect to PostgreSQL: Connect call failed ('10.0.0.5', 5432)")
    assert error.body()["error"]["message"] == "The database is unavailable."
    assert "10.0.0.5" not in str(error.body())
    assert "10.0.0.5" in str(error)  # the logs and the CLI see it


def _driver_record(name: str = "asyncpg.pool") -> logging.LogRecord:
    try:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
    except ConnectionRefusedError:
        import sys

        exc_info = sys.exc_info()
    return logging.LogRecord(
        name, logging.WARNING, __file__, 1, "Failed to restore the pool connection floor; %s",
        ("retrying",), exc_info,
    )  # fmt: skip


def test_driver_tracebacks_become_one_rate_limited_line() -> None:
    clock = Clock()
    driver_filter = DriverLogFilter(10.0, clock=clock)
    record = _driver_record()
    assert driver_filter.filter(record)
    assert record.exc_info is None  # no traceback: one line naming the error
    assert record.getMessage() == (
        "Failed to restore the pool connection floor; retrying: ConnectionRefusedError: "
        "[Errno 111] Connect call failed ('127.0.0.1', 5432)"
    )
    assert not driver_filter.filter(_driver_record())  # a repeat within the interval
    clock.now = 10.0
    assert driver_filter.filter(_driver_record())
    other = _driver_record("stretto.store")
    assert driver_filter.filter(other)
    assert other.exc_info is not None  # only asyncpg's records are touched
