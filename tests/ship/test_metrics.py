"""The /metrics exposition: every family the issue names, parsed back with the real parser."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.observability.metrics import CONTENT_TYPE, UNMATCHED_ROUTE, Metrics, PoolUsage


@dataclass(frozen=True)
class FakeHubStatistics:
    subscribers: int
    published: int
    delivered: int
    dropped: int


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def families(metrics: Metrics) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(metrics.render().decode())}


def test_every_family_is_exposed_with_its_type() -> None:
    metrics = Metrics()
    metrics.observe_request("GET", "/api/projects/<project_id>", 200, 0.012)
    metrics.run_status("running")
    metrics.step_finished("vfs.read", "succeeded", 0.003)
    metrics.model_call("offline", "generate", 0.02)
    metrics.watch_hub(lambda: FakeHubStatistics(3, 10, 25, 1))
    metrics.watch_database_pool(lambda: PoolUsage(size=4, in_use=1, max_size=10))
    assert (
        families(metrics).items()
        >= {
            "stretto_build_info": "gauge",
            "stretto_http_requests": "counter",
            "stretto_http_request_duration_seconds": "histogram",
            "stretto_runs": "counter",
            "stretto_steps": "counter",
            "stretto_step_duration_seconds": "histogram",
            "stretto_model_calls": "counter",
            "stretto_model_call_duration_seconds": "histogram",
            "stretto_sse_subscribers": "gauge",
            "stretto_events_published": "counter",
            "stretto_events_delivered": "counter",
            "stretto_events_dropped": "counter",
            "stretto_db_pool_connections": "gauge",
            "stretto_db_pool_max_connections": "gauge",
            "process_resident_memory_bytes": "gauge",
        }.items()
    )
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_requests_are_counted_by_route_template_and_status() -> None:
    metrics = Metrics(process_metrics=False)
    metrics.observe_request("GET", "/api/projects/<project_id>", 200, 0.01)
    metrics.observe_request("GET", "/api/projects/<project_id>", 200, 0.02)
    metrics.observe_request("GET", "/api/projects/<project_id>", 404, 0.001)
    metrics.observe_request("GET", None, 404, 0.001)
    got = samples(metrics)
    route = ("route", "/api/projects/<project_id>")
    assert got[("stretto_http_requests_total", (("method", "GET"), route, ("status", "200")))] == 2
    assert got[("stretto_http_requests_total", (("method", "GET"), route, ("status", "404")))] == 1
    unmatched = (("method", "GET"), ("route", UNMATCHED_ROUTE), ("status", "404"))
    assert got[("stretto_http_requests_total", unmatched)] == 1
    count = ("stretto_http_request_duration_seconds_count", (("method", "GET"), route))
    assert got[count] == 3
    total = ("stretto_http_request_duration_seconds_sum", (("method", "GET"), route))
    assert got[total] == pytest.approx(0.031)


def test_runs_steps_and_model_calls_by_status() -> None:
    metrics = Metrics(process_metrics=False)
    for status in ("pending", "running", "succeeded"):
        metrics.run_status(status)
    metrics.run_status("running")
    metrics.step_finished("ai.generate", "succeeded", 1.5)
    metrics.step_finished("ai.generate", "failed", 0.2)
    metrics.step_finished("vfs.write", "skipped")
    metrics.model_call("gemini", "generate", 0.4)
    metrics.model_call("gemini", "generate", 0.1, error_code="rate_limited")
    got = samples(metrics)
    assert got[("stretto_runs_total", (("status", "running"),))] == 2
    assert got[("stretto_runs_total", (("status", "succeeded"),))] == 1
    assert got[("stretto_steps_total", (("status", "failed"), ("tool", "ai.generate")))] == 1
    assert got[("stretto_steps_total", (("status", "skipped"), ("tool", "vfs.write")))] == 1
    assert got[("stretto_step_duration_seconds_count", (("tool", "ai.generate"),))] == 2
    assert ("stretto_step_duration_seconds_count", (("tool", "vfs.write"),)) not in got
    ok = (("operation", "generate"), ("outcome", "ok"), ("provider", "gemini"))
    error = (("operation", "generate"), ("outcome", "error"), ("provider", "gemini"))
    assert got[("stretto_model_calls_total", ok)] == 1
    assert got[("stretto_model_calls_total", error)] == 1
    errors = (("code", "rate_limited"), ("provider", "gemini"))
    assert got[("stretto_model_errors_total", errors)] == 1


def test_callbacks_are_read_at_each_scrape() -> None:
    metrics = Metrics(process_metrics=False)
    stats = [FakeHubStatistics(1, 2, 3, 0)]
    pool: list[PoolUsage | None] = [None]
    metrics.watch_hub(lambda: stats[0])
    metrics.watch_database_pool(lambda: pool[0])
    got = samples(metrics)
    assert got[("stretto_sse_subscribers", ())] == 1
    assert ("stretto_db_pool_max_connections", ()) not in got
    stats[0] = FakeHubStatistics(7, 20, 130, 2)
    pool[0] = PoolUsage(size=5, in_use=3, max_size=10)
    got = samples(metrics)
    assert got[("stretto_sse_subscribers", ())] == 7
    assert got[("stretto_events_published_total", ())] == 20
    assert got[("stretto_events_delivered_total", ())] == 130
    assert got[("stretto_events_dropped_total", ())] == 2
    assert got[("stretto_db_pool_connections", (("state", "in_use"),))] == 3
    assert got[("stretto_db_pool_connections", (("state", "idle"),))] == 2
    assert got[("stretto_db_pool_max_connections", ())] == 10


def test_a_failing_callback_costs_its_families_not_the_scrape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics(process_metrics=False)

    def broken() -> FakeHubStatistics:
        raise RuntimeError("hub gone")

    metrics.watch_hub(broken)
    metrics.run_status("failed")
    got = samples(metrics)
    assert got[("stretto_runs_total", (("status", "failed"),))] == 1
    assert ("stretto_sse_subscribers", ()) not in got
    assert "metrics callback failed" in caplog.text


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(process_metrics=False), Metrics(process_metrics=False)
    first.run_status("running")
    assert ("stretto_runs_total", (("status", "running"),)) not in samples(second)
