"""Prometheus metrics: one registry per process (never the library's global one).

`Metrics` owns the registry and its instruments. Code that does the work calls the small
recording methods (``observe_request``, ``run_status``, ``step_finished``, ``model_call``);
values that already live elsewhere (the event hub's counters, the database pool) are read
by callbacks when ``/metrics`` is scraped, so the hot paths pay nothing for them.

Nothing here does I/O or blocks; a failing callback drops its families from that scrape
(and is logged) instead of failing the scrape.
"""

from __future__ import annotations

import hmac
import logging
import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from server import __version__

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from server.ai.usage import TokenUsage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The ``Content-Type`` of ``render()``'s output (Prometheus text exposition 0.0.4)."""

UNMATCHED_ROUTE = "<unmatched>"
"""Route label for requests that matched no route (keeps label cardinality bounded)."""

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Method label values; any other method (invented ones included) is counted as ``other``."""

OTHER_METHOD = "other"

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STEP_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
MODEL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class HubStatistics(Protocol):
    """What ``EventHub.statistics()`` returns, as far as metrics care (cumulative counts)."""

    @property
    def subscribers(self) -> int: ...
    @property
    def published(self) -> int: ...
    @property
    def delivered(self) -> int: ...
    @property
    def dropped(self) -> int: ...


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """Database connections right now: open, busy (checked out) and the configured maximum."""

    size: int
    in_use: int
    max_size: int


class Metrics:
    """The process's metrics. Create one, keep it on `Services`, serve ``render()``."""

    def __init__(self, *, process_metrics: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self._info = Gauge(
            "stretto_build_info",
            "Build information (value is always 1).",
            ["version", "python"],
            registry=r,
        )
        self._info.labels(__version__, platform.python_version()).set(1)
        self.http_requests = Counter(
            "stretto_http_requests",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "stretto_http_request_duration_seconds",
            "Time to the response head (streams: to their first byte), by route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.runs = Counter(
            "stretto_runs",
            "Workflow runs entering a status.",
            ["status"],
            registry=r,
        )
        self.steps = Counter(
            "stretto_steps",
            "Workflow steps finishing, by tool and final status.",
            ["tool", "status"],
            registry=r,
        )
        self.step_duration = Histogram(
            "stretto_step_duration_seconds",
            "Duration of finished step attempts, by tool.",
            ["tool"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.model_calls = Counter(
            "stretto_model_calls",
            "Model calls, by provider, operation and outcome (ok, error).",
            ["provider", "operation", "outcome"],
            registry=r,
        )
        self.model_errors = Counter(
            "stretto_model_errors",
            "Failed model calls, by provider and error code.",
            ["provider", "code"],
            registry=r,
        )
        self.model_tokens_total = Counter(
            "stretto_model_tokens",
            "Model tokens spent, by model and kind (prompt, candidates, thoughts).",
            ["model", "kind"],
            registry=r,
        )
        self.model_latency = Histogram(
            "stretto_model_call_duration_seconds",
            "Duration of model calls, by provider.",
            ["provider", "operation"],
            buckets=MODEL_BUCKETS,
            registry=r,
        )
        # Label children per (method, route, status): ``labels()`` takes a lock and validates
        # its arguments at every call; routes are templates, so the key set stays small.
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._callbacks = _CallbackCollector()
        r.register(self._callbacks)
        if process_metrics:
            ProcessCollector(registry=r)

    # -- recording (cheap, synchronous, never raise) -----------------------------------------
    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """One answered HTTP request. Every label comes from a closed set: ``route`` is the
        rule template (``/api/projects/<id>``), never the raw path (None, no route matched,
        becomes ``<unmatched>``); a method outside `METHODS` becomes ``other``; a status
        outside 100..599 becomes 0. Unauthenticated clients cannot grow the exposition."""
        label = route or UNMATCHED_ROUTE
        if method not in METHODS:
            method = OTHER_METHOD
        if not 100 <= status <= 599:
            status = 0
        key = (method, label, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(method, label, str(status)),
                self.http_latency.labels(method, label),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def run_status(self, status: str) -> None:
        """A run entered ``status`` (pending, planning, running, succeeded, failed, cancelled)."""
        self.runs.labels(status).inc()

    def step_finished(self, tool: str, status: str, seconds: float | None = None) -> None:
        """A step reached a final status; ``seconds`` is its duration when it ran."""
        self.steps.labels(tool, status).inc()
        if seconds is not None:
            self.step_duration.labels(tool).observe(seconds)

    def model_call(
        self, provider: str, operation: str, seconds: float, error_code: str | None = None
    ) -> None:
        """One model call (``generate``, ``stream``, ``plan``...); ``error_code`` when it failed."""
        outcome = "ok" if error_code is None else "error"
        self.model_calls.labels(provider, operation, outcome).inc()
        self.model_latency.labels(provider, operation).observe(seconds)
        if error_code is not None:
            self.model_errors.labels(provider, error_code).inc()

    def model_tokens(self, model: str, usage: TokenUsage) -> None:
        """The tokens one answered model call spent (``model`` is the configured name)."""
        for kind, count in usage.by_kind().items():
            self.model_tokens_total.labels(model, kind).inc(count)

    # -- values read at scrape time ------------------------------------------------------------
    def watch_hub(self, statistics: Callable[[], HubStatistics]) -> None:
        """Read SSE subscribers and events published/delivered/dropped at each scrape."""
        self._callbacks.hub = statistics

    def watch_database_pool(self, usage: Callable[[], PoolUsage | None]) -> None:
        """Read database pool use at each scrape (None: no pool, e.g. SQLite before start)."""
        self._callbacks.pool = usage

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (serve with `CONTENT_TYPE`)."""
        return generate_latest(self.registry)


def scrape_allowed(token: str | None, authorization: str | None) -> bool:
    """Whether a scrape may read ``/metrics``: always when no token is configured, else only
    with ``Authorization: Bearer <token>`` (compared in constant time)."""
    if token is None:
        return True
    if authorization is None:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


class _CallbackCollector:
    """Families computed from callbacks when scraped."""

    def __init__(self) -> None:
        self.hub: Callable[[], HubStatistics] | None = None
        self.pool: Callable[[], PoolUsage | None] | None = None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        families: list[Metric] = []
        if self.hub is not None:
            families += _safely("hub", self.hub, _hub_families)
        if self.pool is not None:
            families += _safely("pool", self.pool, _pool_families)
        return families


def _safely(what: str, read: Callable[[], _T], build: Callable[[_T], list[Metric]]) -> list[Metric]:
    try:
        return build(read())
    except Exception:
        _log.warning("metrics callback failed", extra={"callback": what}, exc_info=True)
        return []


def _hub_families(stats: HubStatistics) -> list[Metric]:
    subscribers = GaugeMetricFamily(
        "stretto_sse_subscribers",
        "Open SSE subscriptions on this instance.",
        value=stats.subscribers,
    )
    published = CounterMetricFamily(
        "stretto_events_published", "Events handed to the hub for fan-out.", value=stats.published
    )
    delivered = CounterMetricFamily(
        "stretto_events_delivered", "Event frames queued to subscribers.", value=stats.delivered
    )
    dropped = CounterMetricFamily(
        "stretto_events_dropped",
        "Subscribers disconnected because their buffer was full (they reconnect and replay).",
        value=stats.dropped,
    )
    return [subscribers, published, delivered, dropped]


def _pool_families(usage: PoolUsage | None) -> list[Metric]:
    if usage is None:
        return []
    connections = GaugeMetricFamily(
        "stretto_db_pool_connections", "Database pool connections, by state.", labels=["state"]
    )
    connections.add_metric(["in_use"], usage.in_use)
    connections.add_metric(["idle"], max(usage.size - usage.in_use, 0))
    limit = GaugeMetricFamily(
        "stretto_db_pool_max_connections", "Configured maximum pool size.", value=usage.max_size
    )
    return [connections, limit]
