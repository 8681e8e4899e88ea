"""Output of a bench run: one JSON line for machines (the shared load generator's shape), or a
two-column table for people. Pure functions."""

from __future__ import annotations

import json
from typing import Any


def format_json(result: dict[str, Any]) -> str:
    return json.dumps(result, separators=(",", ":"))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return "  ".join(f"{key} {_cell(item)}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(_cell(item) for item in value)
    return str(value)


def format_table(result: dict[str, Any]) -> str:
    """``scenario`` and ``url`` as a title, then one ``name  value`` row per other field
    (nested percentiles on one row); rows with no value are left out."""
    title = f"{result.get('scenario', 'bench')} against {result.get('url', '?')}"
    if result.get("label"):
        title += f" ({result['label']})"
    rows = [
        (key, _cell(value))
        for key, value in result.items()
        if key not in ("scenario", "url", "label") and value is not None
    ]
    width = max((len(key) for key, _ in rows), default=0)
    lines = [title, "-" * len(title)]
    lines += [f"{key.ljust(width)}  {value}" for key, value in rows]
    return "\n".join(lines)
