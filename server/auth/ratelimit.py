"""The failed-login rate limit: an in-memory sliding window per key.

The login route keys it by (email, client address). After ``max_failures`` failures
within ``window_s`` seconds, ``check`` raises ``RateLimited`` with the seconds until the
oldest of those failures leaves the window; a success clears the key.

Memory is bounded: each key keeps at most ``max_failures`` timestamps, and at most
``max_keys`` keys are kept (the least recently failed are evicted first). State is per
process: with several instances an attacker gets ``max_failures`` per instance.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TYPE_CHECKING

import trio

from server.errors import RateLimited

if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_MAX_KEYS = 100_000


class LoginRateLimiter:
    """Counts failed logins per key in a sliding window. Not thread-safe (event loop only)."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError("max_failures, window_s and max_keys must be positive")
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, key: str) -> None:
        """Raise ``RateLimited(retry_after=...)`` when ``key`` used up its failures."""
        times = self._recent(key)
        if times is not None and len(times) >= self.max_failures:
            retry_after = times[0] + self.window_s - self._clock()
            raise RateLimited(
                "Too many failed logins; try again later.", retry_after=max(retry_after, 0.0)
            )

    def failure(self, key: str) -> None:
        """Record one failed login for ``key``."""
        times = self._failures.pop(key, None)
        if times is None:
            times = deque(maxlen=self.max_failures)
        times.append(self._clock())
        self._failures[key] = times  # most recently failed last
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def success(self, key: str) -> None:
        """A successful login forgets the key's failures."""
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)

    def _recent(self, key: str) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        cutoff = self._clock() - self.window_s
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times
