"""Pure output helpers: percentiles, the table, the JSON line, wrk's output, the workflow plan."""

from __future__ import annotations

import json

from server.bench.report import format_json, format_table
from server.bench.scenarios.http import parse_wrk
from server.bench.scenarios.workflow import build_plan, check_order, max_parallelism
from server.bench.stats import percentiles

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:8002/api/health
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.04ms    1.10ms  24.89ms   90.00%
    Req/Sec    26.10k     1.20k   28.00k    80.00%
  Latency Distribution
     50%    1.90ms
     75%    2.40ms
     90%    3.10ms
     99%  850.00us
  130500 requests in 5.00s, 20.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  26100.50
Transfer/sec:      4.00MB
"""


def test_percentiles_nearest_rank() -> None:
    assert percentiles(range(1, 101)) == {"p50": 50, "p95": 95, "p99": 99, "max": 100}
    assert percentiles([3.0]) == {"p50": 3.0, "p95": 3.0, "p99": 3.0, "max": 3.0}
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None, "max": None}


def test_table_lists_fields_and_hides_empty_ones() -> None:
    table = format_table(
        {
            "scenario": "fanout",
            "url": "http://127.0.0.1:1",
            "label": None,
            "lost": 0,
            "latency_ms": {"p50": 1.5, "p99": 12.0},
            "rss_kb": None,
            "ok": True,
        }
    )
    lines = table.splitlines()
    assert lines[0] == "fanout against http://127.0.0.1:1"
    assert "lost        0" in lines
    assert "latency_ms  p50 1.5  p99 12" in lines
    assert "ok          yes" in lines
    assert not any(line.startswith("rss_kb") for line in lines)


def test_json_is_one_line() -> None:
    line = format_json({"scenario": "idle", "rss_per_conn_kb": 12.5})
    assert "\n" not in line
    assert json.loads(line) == {"scenario": "idle", "rss_per_conn_kb": 12.5}


def test_parse_wrk() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result["requests"] == 130500
    assert result["rps"] == 26100.5
    assert result["seconds"] == 5.0
    assert result["errors"] == 3
    assert result["non2xx"] == 4
    assert result["latency_ms"] == {"p50": 1.9, "p90": 3.1, "p99": 0.85, "max": 24.89}


def test_workflow_plan_is_w_chains() -> None:
    plan = build_plan(5, 2)
    assert [(s["id"], s["needs"]) for s in plan["steps"]] == [
        ("s0", []),
        ("s1", []),
        ("s2", ["s0"]),
        ("s3", ["s1"]),
        ("s4", ["s2"]),
    ]
    assert all(s["tool"] == "ai.generate" and "prompt" in s["args"] for s in plan["steps"])


def test_check_order_and_parallelism() -> None:
    plan = build_plan(3, 2)
    good = [
        ("step.started", "s0"),
        ("step.started", "s1"),
        ("step.succeeded", "s0"),
        ("step.started", "s2"),
        ("step.succeeded", "s1"),
        ("step.succeeded", "s2"),
    ]
    assert check_order(plan, good) == (True, True)
    assert max_parallelism(good) == 2
    early = [
        ("step.started", "s0"),
        ("step.started", "s2"),
        ("step.succeeded", "s0"),
        ("step.started", "s1"),
        ("step.succeeded", "s1"),
        ("step.succeeded", "s2"),
    ]
    assert check_order(plan, early) == (True, False)
    assert check_order(plan, good[:-1]) == (False, True)
