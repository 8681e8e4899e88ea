"""The README table script: JSON lines of side-by-side runs -> markdown."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tests.bench.results_table import load_results, main, render

if TYPE_CHECKING:
    from pathlib import Path

LINES = [
    {
        "scenario": "fanout",
        "label": "node",
        "subs": 1000,
        "events": 200,
        "rate_target": 20,
        "lost": 0,
        "disconnected_by_server": 0,
        "latency_ms": {"p50": 16.8, "p99": 93},
        "put_ms": {"p50": 29},
        "server_cpu_pct": 50,
        "rss_kb": {"connected": 82944, "peak": 106496},
    },
    {
        "scenario": "fanout",
        "label": "go",
        "subs": 1000,
        "events": 200,
        "rate_target": 20,
        "lost": 0,
        "latency_ms": {"p50": 14.9, "p99": 36},
    },
    {
        "scenario": "fanout",
        "label": "stretto",
        "subs": 1000,
        "events": 200,
        "rate_target": 20,
        "lost": 0,
        "latency_ms": {"p50": 10.0, "p99": 72},
    },
    {
        "scenario": "fanout",
        "label": "stretto+reconnect",
        "subs": 1000,
        "events": 200,
        "rate_target": 100,
        "lost": 0,
        "latency_ms": {"p50": 500, "p99": 2000},
    },
    {
        "scenario": "http",
        "label": "stretto",
        "path": "/api/health",
        "conns": 50,
        "engine": "wrk",
        "rps": 10800,
        "latency_ms": {"p99": 9},
    },
    {
        "scenario": "http",
        "label": "node",
        "path": "/api/health",
        "conns": 50,
        "engine": "wrk",
        "rps": 21600,
        "latency_ms": {"p99": 13},
    },
    {"scenario": "idle", "label": "go", "conns": 2000, "error": "hard time limit"},
    {
        "scenario": "workflow",
        "label": "node-seq",
        "steps": 20,
        "width": 10,
        "critical_path_ms": 200,
        "wall_ms_p50": 2024,
        "overhead_ms_p50": 1824,
    },
]


def _row(table: str, *start: str) -> list[str]:
    """The cells of the first table row whose leading cells start with ``start``."""
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and all(
            cell.startswith(want) for cell, want in zip(cells, start, strict=False)
        ):
            return cells
    raise AssertionError(f"no row starting with {start!r} in\n{table}")


def test_render_builds_columns_ratios_and_sections() -> None:
    table = render(LINES, {"date": "2026-11-29", "machine": "2-core VM", "versions": "x"})
    assert table.startswith("Measured 2026-11-29 on 2-core VM.")
    header = _row(table, "scenario")
    assert header == [
        "scenario",
        "metric",
        "stretto",
        "node",
        "go",
        "node-seq",
        "stretto/node",
        "stretto/go",
        "target",
        "met",
        "machine",
    ]
    p50 = _row(table, "fanout 1000 subs x 200 events @ 20/s")
    assert p50[1:9] == ["lost events", "0", "0", "0", "-", "=", "=", ""]
    p99 = _row(table, "", "latency p99", "72 ms")
    assert p99[6:8] == ["0.77x", "2.00x"]
    rps = _row(table, "http /api/health, 50 conns (wrk)")
    assert rps[1:5] == ["requests/s", "10,800", "21,600", "-"]
    assert rps[6] == "0.50x"
    http_p99 = _row(table, "", "latency p99", "9 ms")
    assert http_p99[8:10] == ["≤ 0.1x node (-90 % response time)", "no"]  # 9 ms vs 13 ms
    assert "fanout 1000 subs x 200 events @ 100/s [reconnect]" in table
    assert "idle" not in table  # the only idle result was an error
    assert _row(table, "workflow 20 steps")[1:6] == ["wall p50", "-", "-", "-", "2,024 ms"]


def test_main_reads_a_results_directory(tmp_path: Path) -> None:
    (tmp_path / "run.jsonl").write_text("\n".join(json.dumps(line) for line in LINES) + "\n")
    (tmp_path / "run.disturbed.jsonl").write_text(json.dumps({**LINES[2], "lost": 99}) + "\n")
    (tmp_path / "meta.json").write_text(json.dumps({"date": "today", "machine": "here"}))
    assert len(load_results([tmp_path])) == len(LINES)
    assert main([str(tmp_path)]) == 0


def test_main_without_results_fails(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 1


def _capacity(label: str, held: int, failed_at: int, load: float) -> dict[str, object]:
    return {
        "scenario": "capacity",
        "label": label,
        "heartbeat_s": 15,
        "health_limit_ms": 1000,
        "max_streams": held,
        "failed_at": failed_at,
        "failure": "/api/health p95 over 1000 ms",
        "server_fd_limit": 20000,
        "server_processes": 1,
        "rss_kb": {"before": 50000, "at_max": 512000},
        "rows": [
            {"ok": True, "server_cpu_pct": 12, "client_cpu_pct": 30},
            {"ok": False, "server_cpu_pct": 99, "client_cpu_pct": 45},
        ],
        "load_before": {"loadavg1": load},
        "other_cpu_pct": 3,
    }


REPEATED = [
    _capacity("stretto", 39000, 50000, 0.5),
    _capacity("stretto", 30000, 39000, 1.5),
    _capacity("stretto", 39000, 50000, 0.7),
    _capacity("node", 19000, 25000, 0.6),
    _capacity("node", 19000, 25000, 0.6),
    _capacity("go", 19000, 25000, 0.6),
    {"scenario": "startup", "label": "stretto", "ready_ms": 700, "idle_rss_kb": 16384},
    {"scenario": "startup", "label": "stretto", "ready_ms": 900, "idle_rss_kb": 16384},
    {"scenario": "startup", "label": "stretto+binary", "ready_ms": 2500, "idle_rss_kb": 30720},
    {"scenario": "startup", "label": "node", "ready_ms": 400, "idle_rss_kb": 61440},
    {"scenario": "workflow", "label": "stretto", "steps": 20, "width": 10,
     "critical_path_ms": 200, "wall_ms_p50": 203, "overhead_ms_p50": 3},
]  # fmt: skip


def test_repeated_runs_show_median_spread_target_and_load() -> None:
    table = render(REPEATED)
    held = _row(table, "capacity: idle SSE streams, heartbeat 15 s")
    assert held[1:5] == ["most streams held", "39,000 (30,000-39,000)", "19,000", "19,000"]
    assert held[5:7] == ["2.05x", "2.05x"]  # medians: 39,000 / 19,000
    assert held[7:9] == ["≥ 10x node (10x connections)", "no"]
    assert held[9] == "load 0.50-1.50, others ≤3% CPU"
    assert _row(table, "", "server CPU at most held")[2] == "12%"
    assert _row(table, "", "client CPU, highest step")[2] == "45%"
    assert "stretto: stopped at 50000: /api/health p95 over 1000 ms (ulimit -n 20000" in table
    ready = _row(table, "startup: time to ready, idle RSS", "time to ready")
    assert ready[2:4] == ["800 ms (700-900)", "400 ms"]
    rss = _row(table, "", "idle RSS", "16 MB")
    assert rss[7:9] == ["≤ 0.3x node (-70 % memory)", "yes"]  # 16 MB <= 0.3 x 60 MB
    binary = _row(table, "startup: time to ready, idle RSS [binary]", "time to ready")
    assert binary[2:6] == ["2,500 ms", "-", "-", "6.25x"]  # ratio to the base section's node
    assert _row(table, "", "idle RSS", "30 MB")[8] == "no"  # 30 MB > 18 MB
    wall = _row(table, "workflow 20 steps", "wall p50")
    assert wall[2] == "203 ms"
    ratio = _row(table, "", "wall / critical path")
    assert ratio[2] == "1.01 x"
    assert ratio[-3:-1] == ["≤ 1.02 x (issue 19)", "yes"]
