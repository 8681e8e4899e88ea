"""Turn side-by-side bench results (JSON lines of ../shared/bench/load/load.js, of
``stretto bench --json`` or of startup.py) into the README's markdown performance table.

    python tests/bench/results_table.py RESULTS_DIR_OR_JSONL... [--meta meta.json]

Columns: stretto, node, go (and any other label seen), the stretto/node and stretto/go ratios,
the target a row is held to and whether stretto meets it, and the machine's load. Repeated
runs of a row (side_by_side.sh's REPEAT) are summarised as their median, with the spread
(lowest-highest) in brackets; ratios and targets use the medians. The load cell: the 1-minute
load average before the runs of the section (lowest-highest, from ``load_before``) and the
CPU other processes used during them (highest ``other_cpu_pct``, percent of one core).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    from tests.bench.results_metrics import Metric, Result, get, metrics, section
except ModuleNotFoundError:  # run as a script: python3 tests/bench/results_table.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.bench.results_metrics import Metric, Result, get, metrics, section

if TYPE_CHECKING:
    from collections.abc import Iterable

ORDER = ["stretto", "node", "go", "node-seq"]
RATIO_PEERS = ["node", "go"]


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


def _base_label(label: str) -> str:
    """``stretto+reconnect`` -> ``stretto``: variants share the column of their server."""
    return label.partition("+")[0]


def _fmt_number(value: float) -> str:
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _fmt(values: list[float], unit: str) -> str:
    """The median, its unit, and the spread of several values in brackets."""
    if not values:
        return "-"
    text = _fmt_number(statistics.median(values))
    text = f"{text} {unit}".rstrip() if unit and unit != "%" else f"{text}{unit}"
    if len(values) > 1 and min(values) != max(values):
        text += f" ({_fmt_number(min(values))}-{_fmt_number(max(values))})"
    return text


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None:
        return "-"
    if theirs == 0:
        return "=" if ours == 0 else "-"
    return f"{ours / theirs:.2f}x"


def _load(results: Iterable[Result]) -> str:
    loads = [get(r, "load_before", "loadavg1") for r in results]
    others = [get(r, "other_cpu_pct") for r in results]
    present = [v for v in loads if v is not None]
    other = [v for v in others if v is not None]
    parts = []
    if present:
        low, high = min(present), max(present)
        parts.append(f"load {low:.2f}" + (f"-{high:.2f}" if high != low else ""))
    if other:
        parts.append(f"others ≤{max(other):.0f}% CPU")
    return ", ".join(parts) or "-"


def _values(runs: list[Result], metric: Metric) -> list[float]:
    return [v for v in (metric.value(r) for r in runs) if v is not None]


def _footnotes(name: str, by_label: dict[str, list[Result]]) -> list[str]:
    """Why each capacity run stopped (the last run's reason per server)."""
    if not name.startswith("capacity"):
        return []
    notes = []
    for label, runs in by_label.items():
        last = runs[-1]
        why = last.get("failure") or "every step passed"
        limit = last.get("server_fd_limit")
        procs = last.get("server_processes")
        notes.append(
            f"{label}: stopped at {last.get('failed_at') or '-'}: {why} "
            f"(ulimit -n {limit or '?'}, {procs or '?'} process(es))"
        )
    return [f"Capacity, {name}: " + "; ".join(notes) + "."]


def render(results: list[Result], meta: dict[str, Any] | None = None) -> str:
    """The markdown section: machine and date, then one table with a block per scenario."""
    sections: dict[str, dict[str, list[Result]]] = {}
    labels: list[str] = []
    for result in results:
        name = section(result)
        label = _base_label(str(result.get("label") or "?"))
        if name is None:
            continue
        sections.setdefault(name, {}).setdefault(label, []).append(result)
        if label not in labels:
            labels.append(label)
    columns = [label for label in ORDER if label in labels]
    columns += [label for label in labels if label not in ORDER]
    ratios = [peer for peer in RATIO_PEERS if peer in columns and "stretto" in columns]
    header = ["scenario", "metric", *columns, *(f"stretto/{peer}" for peer in ratios)]
    header += ["target", "met", "machine"]
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
    footnotes: list[str] = []
    for name, by_label in sections.items():
        base = sections.get(name.split(" [", 1)[0], {})  # a variant's peers: its base section
        first = True
        for metric in metrics(name):
            values = {label: _values(runs, metric) for label, runs in by_label.items()}
            if not any(values.values()):
                continue
            medians = {label: _median(v) for label, v in values.items()}
            for peer in ratios:
                if peer not in medians and peer in base:
                    medians[peer] = _median(_values(base[peer], metric))
            cells = [name if first else "", metric.name]
            cells += [_fmt(values.get(label, []), metric.unit) for label in columns]
            cells += [_ratio(medians.get("stretto"), medians.get(peer)) for peer in ratios]
            target = metric.target
            if target is None:
                cells += ["", ""]
            else:
                met = target.met(medians.get("stretto"), medians.get(target.peer or ""))
                cells += [target.text(metric.unit), "-" if met is None else "yes" if met else "no"]
            all_runs = [r for runs in by_label.values() for r in runs]
            cells.append(_load(all_runs) if first else "")
            lines.append("| " + " | ".join(cells) + " |")
            first = False
        footnotes += _footnotes(name, by_label)
    lines.append("")
    lines.append(
        "Medians of the runs, (lowest-highest) when they differ. Ratios are stretto / peer: "
        "below 1x is better for times, memory and losses, above 1x for requests/s and "
        "streams held; a [variant] row (stretto only) is compared with the peers' row of "
        "the same scenario without the variant. machine: 1-minute load average before the "
        "runs, and the most CPU "
        "other processes used during one (percent of one core)."
    )
    lines += ["", *footnotes] if footnotes else []
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
