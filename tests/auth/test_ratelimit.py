"""LoginRateLimiter: sliding window on trio's (mock) clock, bounded memory."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from server.auth.ratelimit import LoginRateLimiter
from server.errors import RateLimited


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_limits_after_max_failures_then_window_slides(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = LoginRateLimiter(max_failures=3, window_s=60)
    for _ in range(3):
        limiter.check("k")
        limiter.failure("k")
        await trio.sleep(10)
    # failures at t=0, 10, 20; now t=30: the oldest leaves the window at t=60
    with pytest.raises(RateLimited) as caught:
        limiter.check("k")
    assert caught.value.retry_after == pytest.approx(30)
    assert caught.value.headers() == {"Retry-After": "30"}
    assert caught.value.status == 429
    assert caught.value.code == "rate_limited"
    limiter.check("other")  # other keys unaffected
    await trio.sleep(29)
    with pytest.raises(RateLimited) as caught:
        limiter.check("k")
    assert caught.value.retry_after == pytest.approx(1)
    await trio.sleep(1)
    limiter.check("k")  # t=60: the first failure left the window
    limiter.failure("k")
    with pytest.raises(RateLimited):
        limiter.check("k")


async def test_success_clears_the_key(autojump_clock: trio.testing.MockClock) -> None:
    limiter = LoginRateLimiter(max_failures=2, window_s=60)
    limiter.failure("k")
    limiter.success("k")
    limiter.failure("k")
    limiter.check("k")
    limiter.failure("k")
    with pytest.raises(RateLimited):
        limiter.check("k")


async def test_memory_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    limiter = LoginRateLimiter(max_failures=2, window_s=60, max_keys=100)
    for i in range(1000):
        limiter.failure(f"k{i}")
        limiter.failure(f"k{i}")
        limiter.failure(f"k{i}")
    assert len(limiter) == 100
    assert all(len(times) <= 2 for times in limiter._failures.values())
    with pytest.raises(RateLimited):
        limiter.check("k999")  # the newest keys are kept
    limiter.check("k0")  # the oldest were evicted


async def test_expired_keys_are_dropped(autojump_clock: trio.testing.MockClock) -> None:
    limiter = LoginRateLimiter(max_failures=2, window_s=5)
    limiter.failure("k")
    await trio.sleep(6)
    limiter.check("k")
    assert len(limiter) == 0


def test_injectable_clock() -> None:
    now = [100.0]
    limiter = LoginRateLimiter(max_failures=1, window_s=10, clock=lambda: now[0])
    limiter.failure("k")
    with pytest.raises(RateLimited):
        limiter.check("k")
    now[0] = 110.0
    limiter.check("k")
