"""``stretto bench workflow --trace``: where a run's wall time goes, phase by phase. Pure.

Each run's events are kept with the server's ``at`` (when the server decided the change,
before its commit) and the client's arrival time, both on the wall clock (the bench measures
loopback servers, so both clocks are the machine's). From them, per run (the report gives
medians over runs, in ms):

- ``post_to_first_start``: POST sent -> the first ``step.started`` (its ``at``): HTTP, auth,
  validation, the run's insert, the 202, scheduling and the start's records.
- ``first_start_seen``: POST sent -> that event's arrival at the client.
- per wave ``w`` (wave ``w`` = steps ``w*W .. w*W+W-1``):
  ``starts_spread`` (last start - first start), ``ends_spread`` (last end - first end),
  ``step_over_latency`` (median step end - its start, minus the model latency: the step's
  own overhead, its deltas included), and for ``w >= 1`` ``handoff`` / ``handoff_max``
  (median / largest ``step.started`` of a step - ``step.succeeded`` of its need: what
  passing from one wave to the next costs a chain, the end's commit included) and
  ``last_end_to_next_start`` (last end of wave ``w-1`` -> first start of wave ``w``, the
  brief's form; negative when a chain's next step starts before another chain's end).
- ``end_seen``: median of ``step.succeeded`` arrival - its ``at`` (commit, publish, delivery).
- ``last_end_to_terminal``: the last step end -> the run's terminal event (``at``).
- ``terminal_seen``: terminal ``at`` -> its arrival at the client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from statistics import median
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

TERMINAL = ("run.succeeded", "run.failed", "run.cancelled")


@dataclass(frozen=True, slots=True)
class Seen:
    """One event of a run: its type, step, server ``at`` and client arrival (wall seconds)."""

    event: str
    step: str | None
    at: float | None
    arrived: float


def server_time(data: dict[str, Any]) -> float | None:
    """The event's ``at`` as wall-clock seconds (None when absent or malformed)."""
    raw = data.get("at")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _at(seen: Sequence[Seen], event: str) -> dict[str, float]:
    """Step id -> the server ``at`` of its first ``event``."""
    found: dict[str, float] = {}
    for item in seen:
        if item.event == event and item.step is not None and item.at is not None:
            found.setdefault(item.step, item.at)
    return found


def run_phases(
    seen: Sequence[Seen], posted: float, steps: int, width: int, latency_ms: float
) -> dict[str, float]:
    """One run's phases in ms (keys as the module says; ``wave{w}_...`` per wave). A phase
    whose events are missing is left out."""
    starts, ends = _at(seen, "step.started"), _at(seen, "step.succeeded")
    out: dict[str, float] = {}
    timed = [s for s in seen if s.at is not None]
    first = next((s for s in timed if s.event == "step.started"), None)
    if starts and first is not None:
        out["post_to_first_start"] = _ms(min(starts.values()) - posted)
        out["first_start_seen"] = _ms(first.arrived - posted)
    waves = (steps + width - 1) // width
    for w in range(waves):
        ids = [f"s{i}" for i in range(w * width, min(steps, (w + 1) * width))]
        s_at = [starts[i] for i in ids if i in starts]
        e_at = [ends[i] for i in ids if i in ends]
        if s_at:
            out[f"wave{w}_starts_spread"] = _ms(max(s_at) - min(s_at))
        if e_at:
            out[f"wave{w}_ends_spread"] = _ms(max(e_at) - min(e_at))
        own = [ends[i] - starts[i] for i in ids if i in starts and i in ends]
        if own:
            out[f"wave{w}_step_over_latency"] = round(_ms(median(own)) - latency_ms, 2)
        if w == 0:
            continue
        needs = {i: f"s{int(i[1:]) - width}" for i in ids}
        handoffs = [starts[i] - ends[n] for i, n in needs.items() if i in starts and n in ends]
        if handoffs:
            out[f"wave{w}_handoff"] = _ms(median(handoffs))
            out[f"wave{w}_handoff_max"] = _ms(max(handoffs))
        before = [ends[n] for n in needs.values() if n in ends]
        if before and s_at:
            out[f"wave{w}_last_end_to_next_start"] = _ms(min(s_at) - max(before))
    lags = [s.arrived - s.at for s in timed if s.event == "step.succeeded" and s.at is not None]
    if lags:
        out["end_seen"] = _ms(median(lags))
    terminal = next((s for s in timed if s.event in TERMINAL), None)
    if terminal is not None and terminal.at is not None:
        if ends:
            out["last_end_to_terminal"] = _ms(terminal.at - max(ends.values()))
        out["terminal_seen"] = _ms(terminal.arrived - terminal.at)
        out["post_to_terminal_seen"] = _ms(terminal.arrived - posted)
    return out


def phase_medians(per_run: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each phase's median over the runs that have it, keys in first-seen order."""
    keys: list[str] = []
    for phases in per_run:
        keys += [k for k in phases if k not in keys]
    return {k: round(median(p[k] for p in per_run if k in p), 2) for k in keys}
