"""Turn side-by-side bench results (JSON lines of ../shared/bench/load/load.js or of
``stretto bench --json``) into the README's markdown performance table.

    python tests/bench/results_table.py RESULTS_DIR_OR_JSONL... [--meta meta.json]

Columns: stretto, node, go (and any other label seen), then stretto/node and stretto/go ratios.
When a label has several results for one row (repeated runs) the last one wins, as in
run-all.sh where the last try is the one kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

Result = dict[str, Any]
ORDER = ["stretto", "node", "go", "node-seq"]
RATIO_PEERS = ["node", "go"]


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    value: Callable[[Result], float | None]
    better: str = "lower"  # or "higher"


def _get(result: Result, *path: str) -> float | None:
    node: Any = result
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def _mb(result: Result, *path: str) -> float | None:
    kb = _get(result, *path)
    return kb / 1024 if kb is not None else None


def _fanout_metrics() -> list[Metric]:
    return [
        Metric("lost events", "", lambda r: _get(r, "lost")),
        Metric("subscribers dropped", "", lambda r: _get(r, "disconnected_by_server")),
        Metric("latency p50", "ms", lambda r: _get(r, "latency_ms", "p50")),
        Metric("latency p99", "ms", lambda r: _get(r, "latency_ms", "p99")),
        Metric("PUT p50", "ms", lambda r: _get(r, "put_ms", "p50")),
        Metric("server CPU", "%", lambda r: _get(r, "server_cpu_pct")),
        Metric("RSS connected", "MB", lambda r: _mb(r, "rss_kb", "connected")),
        Metric("RSS peak", "MB", lambda r: _mb(r, "rss_kb", "peak")),
    ]


IDLE = [
    Metric("RSS per SSE connection", "KB", lambda r: _get(r, "rss_per_conn_kb")),
    Metric("idle process RSS", "MB", lambda r: _mb(r, "rss_kb", "before")),
    Metric(
        "connect failures + closes", "", lambda r: _sum(r, "connect_failed", "closed_by_server")
    ),
    Metric("heartbeats received", "", lambda r: _get(r, "pings_received"), better="higher"),
]
HTTP = [
    Metric("requests/s", "", lambda r: _get(r, "rps"), better="higher"),
    Metric("latency p99", "ms", lambda r: _get(r, "latency_ms", "p99")),
    Metric("server CPU", "%", lambda r: _get(r, "server_cpu_pct")),
]
WORKFLOW = [
    Metric("wall p50", "ms", lambda r: _get(r, "wall_ms_p50")),
    Metric("overhead over critical path p50", "ms", lambda r: _get(r, "overhead_ms_p50")),
]


def _sum(result: Result, *keys: str) -> float | None:
    values = [_get(result, key) for key in keys]
    return sum(v for v in values if v is not None) if any(v is not None for v in values) else None


def load_results(paths: Iterable[Path]) -> list[Result]:
    """JSON lines from files, or from every ``*.jsonl`` in directories (``*.disturbed.jsonl``
    excluded: those runs were repeated)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                p for p in path.glob("*.jsonl") if not p.name.endswith(".disturbed.jsonl")
            )
        else:
            files.append(path)
    results: list[Result] = []
    for file in files:
        for line in file.read_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                results.append(json.loads(line))
    return results


def _section(result: Result) -> str | None:
    """The table section a result belongs to, or None (errors, unknown scenarios). A label
    variant (``stretto+reconnect``) gets a section of its own."""
    if result.get("error"):
        return None
    scenario = result.get("scenario")
    if scenario == "fanout":
        stall = f", {result['stalled']} stalled" if result.get("stalled") else ""
        section = (
            f"fanout {result.get('subs')} subs x {result.get('events')} events "
            f"@ {result.get('rate_target'):g}/s{stall}"
        )
    elif scenario == "idle":
        section = f"idle {result.get('conns')} SSE connections"
    elif scenario == "http":
        section = f"http {result.get('path')}, {result.get('conns')} conns ({result.get('engine')})"
    elif scenario == "workflow":
        section = (
            f"workflow {result.get('steps')} steps, width {result.get('width')} "
            f"(critical path {result.get('critical_path_ms'):g} ms)"
        )
    else:
        return None
    _, plus, variant = str(result.get("label") or "").partition("+")
    return f"{section} [{variant}]" if plus else section


def _metrics(section: str) -> list[Metric]:
    if section.startswith("fanout"):
        return _fanout_metrics()
    if section.startswith("idle"):
        return IDLE
    if section.startswith("http"):
        return HTTP
    return WORKFLOW


def _base_label(label: str) -> str:
    """``stretto+reconnect`` -> ``stretto``: variants share the column of their server."""
    return label.partition("+")[0]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100 or value == int(value):
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".rstrip() if unit and unit != "%" else f"{text}{unit}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None:
        return "-"
    if theirs == 0:
        return "=" if ours == 0 else "-"
    return f"{ours / theirs:.2f}x"


def render(results: list[Result], meta: dict[str, Any] | None = None) -> str:
    """The markdown section: machine and date, then one table with a block per scenario."""
    sections: dict[str, dict[str, Result]] = {}
    labels: list[str] = []
    for result in results:
        section = _section(result)
        label = _base_label(str(result.get("label") or "?"))
        if section is None:
            continue
        sections.setdefault(section, {})[label] = result
        if label not in labels:
            labels.append(label)
    columns = [label for label in ORDER if label in labels]
    columns += [label for label in labels if label not in ORDER]
    ratios = [peer for peer in RATIO_PEERS if peer in columns and "stretto" in columns]
    header = ["scenario", "metric", *columns, *(f"stretto/{peer}" for peer in ratios)]
    lines = []
    if meta:
        lines.append(f"Measured {meta.get('date', '?')} on {meta.get('machine', '?')}.")
        if meta.get("versions"):
            lines.append(f"Versions: {meta['versions']}.")
        if meta.get("notes"):
            lines.append(str(meta["notes"]))
        lines.append("")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for section, by_label in sections.items():
        for i, metric in enumerate(_metrics(section)):
            values = {label: metric.value(r) for label, r in by_label.items()}
            if all(v is None for v in values.values()):
                continue
            cells = [section if i == 0 else "", metric.name]
            cells += [_fmt(values.get(label), metric.unit) for label in columns]
            cells += [_ratio(values.get("stretto"), values.get(peer)) for peer in ratios]
            lines.append("| " + " | ".join(cells) + " |")
    if ratios:
        lines.append("")
        lines.append(
            "Ratios are stretto / peer: below 1x is better for times, memory and losses, "
            "above 1x for requests/s."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("paths", nargs="+", type=Path, help="results directories or .jsonl files")
    parser.add_argument(
        "--meta", type=Path, default=None, help="meta.json: date, machine, versions"
    )
    args = parser.parse_args(argv)
    meta = None
    meta_path = args.meta
    if meta_path is None:
        for path in args.paths:
            if path.is_dir() and (path / "meta.json").is_file():
                meta_path = path / "meta.json"
    if meta_path is not None:
        meta = json.loads(meta_path.read_text())
    results = load_results(args.paths)
    if not results:
        print("no results found", file=sys.stderr)
        return 1
    print(render(results, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
