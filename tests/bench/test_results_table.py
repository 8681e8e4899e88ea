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
    ]
    p50 = _row(table, "fanout 1000 subs x 200 events @ 20/s")
    assert p50[1:] == ["lost events", "0", "0", "0", "-", "=", "="]
    p99 = _row(table, "", "latency p99", "72 ms")
    assert p99[-2:] == ["0.77x", "2.00x"]
    rps = _row(table, "http /api/health, 50 conns (wrk)")
    assert rps[1:5] == ["requests/s", "10,800", "21,600", "-"]
    assert rps[-2] == "0.50x"
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
