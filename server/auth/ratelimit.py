"""Login and registration limits: in-memory sliding windows per key.

``LoginRateLimiter`` is one sliding window: after ``max_failures`` failures within
``window_s`` seconds, ``check`` raises ``RateLimited`` with the seconds until the oldest of
those failures leaves the window; a success clears the key. The login route keys it by
(email, client address). ``LoginGuard`` combines windows into the login policy:

- per (email, client address): ``login_max_failures`` failures -> 429 (locks only that
  source out of that account);
- per client address, any email: ``login_max_failures_per_address`` failures -> 429
  (password spraying);
- per email, any address: past ``login_email_slow_after`` failures each attempt is delayed,
  doubling up to ``login_max_delay_s``; the account is slowed, never locked, so a
  distributed attacker cannot lock its owner out;
- registrations per client address: ``register_max_per_address`` -> 429.

The client address is the peer's, or, when the peer is one of ``trusted_proxies``, the
nearest ``X-Forwarded-For`` hop that is not a trusted proxy (``client_address``).

Memory is bounded: each key keeps at most ``max_failures`` timestamps, and at most
``max_keys`` keys are kept (the least recently failed are evicted first). State is per
process: with several instances an attacker gets ``max_failures`` per instance.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

import trio

from server.errors import RateLimited

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from server.config import Settings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

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

    def refund(self, key: str) -> None:
        """Take back the latest failure of ``key`` (an attempt charged up front succeeded)."""
        times = self._failures.get(key)
        if times:
            times.pop()
            if not times:
                del self._failures[key]

    def count(self, key: str) -> int:
        """Failures of ``key`` still inside the window."""
        times = self._recent(key)
        return 0 if times is None else len(times)


def parse_networks(spec: str | None) -> tuple[IPNetwork, ...]:
    """``"10.0.0.1, 192.168.0.0/16, ::1"`` -> networks; raises ``ValueError`` on a bad entry."""
    if not spec:
        return ()
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
    )


def _is_trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> str:
    """The client's address: ``peer``, unless ``peer`` is a trusted proxy; then the nearest
    ``X-Forwarded-For`` hop (right to left) that is not a trusted proxy. Pure."""
    address = peer or ""
    if not trusted or not forwarded_for or not _is_trusted(address, trusted):
        return address
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if not hop:
            continue
        address = hop
        if not _is_trusted(hop, trusted):
            break
    return address


class LoginGuard:
    """The login and registration policy (module doc). Event loop only."""

    def __init__(
        self,
        *,
        max_failures: int,
        window_s: float,
        max_failures_per_address: int,
        email_slow_after: int,
        max_delay_s: float,
        register_max_per_address: int,
        trusted_proxies: Sequence[IPNetwork] = (),
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.trusted_proxies = tuple(trusted_proxies)
        self.max_delay_s = max_delay_s
        self.email_slow_after = email_slow_after
        self.by_source = LoginRateLimiter(max_failures, window_s, clock=clock)
        self.by_address = LoginRateLimiter(max_failures_per_address, window_s, clock=clock)
        # Counts only (never checked): a deque holds up to slow_after + 16 entries.
        self.by_email = LoginRateLimiter(email_slow_after + 16, window_s, clock=clock)
        self.registrations = LoginRateLimiter(register_max_per_address, window_s, clock=clock)

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginGuard:
        return cls(
            max_failures=settings.login_max_failures,
            window_s=settings.login_window_s,
            max_failures_per_address=settings.login_max_failures_per_address,
            email_slow_after=settings.login_email_slow_after,
            max_delay_s=settings.login_max_delay_s,
            register_max_per_address=settings.register_max_per_address,
            trusted_proxies=parse_networks(settings.trusted_proxies),
        )

    def client(self, peer: str | None, forwarded_for: str | None) -> str:
        return client_address(peer, forwarded_for, self.trusted_proxies)

    def begin_login(self, email: str, address: str) -> float:
        """Check the limits and charge one failure up front (refunded by ``succeeded``, so
        concurrent guesses cannot all pass the check); returns the seconds to wait before
        verifying. Raises ``RateLimited``."""
        source = f"{email}\x00{address}"
        self.by_source.check(source)
        self.by_address.check(address)
        self.by_source.failure(source)
        self.by_address.failure(address)
        self.by_email.failure(email)
        excess = self.by_email.count(email) - self.email_slow_after
        if excess <= 0:
            return 0.0
        return float(min(self.max_delay_s, 0.25 * 2 ** min(excess - 1, 16)))

    def succeeded(self, email: str, address: str) -> None:
        """A correct password: that source's and that email's failures are forgotten."""
        self.by_source.success(f"{email}\x00{address}")
        self.by_address.refund(address)  # one refund: a good login does not wipe a spray
        self.by_email.success(email)

    def register_attempt(self, address: str) -> None:
        """Count one registration from ``address``; raises ``RateLimited`` past the limit."""
        self.registrations.check(address)
        self.registrations.failure(address)
