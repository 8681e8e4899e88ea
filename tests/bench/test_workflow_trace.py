"""``stretto bench workflow --trace``: the phase breakdown, from made-up timelines (pure)."""

from __future__ import annotations

from server.bench.scenarios.workflow_trace import Seen, phase_medians, run_phases, server_time

POSTED = 1000.0


def ms(value: float) -> float:
    return POSTED + value / 1000


def timeline() -> list[Seen]:
    """Two chains of two steps (width 2) at 100 ms, with known gaps (ms after the POST)."""
    return [
        Seen("run.created", None, ms(1), ms(2)),
        Seen("step.started", "s0", ms(3), ms(5)),
        Seen("step.started", "s1", ms(4), ms(5)),
        Seen("step.succeeded", "s0", ms(106), ms(109)),
        Seen("step.started", "s2", ms(107), ms(109)),
        Seen("step.succeeded", "s1", ms(108), ms(110)),
        Seen("step.started", "s3", ms(110), ms(111)),
        Seen("step.succeeded", "s2", ms(209), ms(212)),
        Seen("step.succeeded", "s3", ms(213), ms(216)),
        Seen("run.succeeded", None, ms(213.5), ms(217)),
    ]


def test_run_phases_measure_each_gap() -> None:
    phases = run_phases(timeline(), POSTED, steps=4, width=2, latency_ms=100)
    expected = {
        "post_to_first_start": 3.0,
        "first_start_seen": 5.0,
        "wave0_starts_spread": 1.0,
        "wave0_ends_spread": 2.0,
        "wave0_step_over_latency": 3.5,  # (103 + 104) / 2 - 100
        "wave1_starts_spread": 3.0,
        "wave1_ends_spread": 4.0,
        "wave1_step_over_latency": 2.5,  # (102 + 103) / 2 - 100
        "wave1_handoff": 1.5,  # s2: 107 - 106; s3: 110 - 108
        "wave1_handoff_max": 2.0,
        "wave1_last_end_to_next_start": -1.0,  # s2 started before s1 ended
        "end_seen": 3.0,
        "last_end_to_terminal": 0.5,
        "terminal_seen": 3.5,
        "post_to_terminal_seen": 217.0,
    }
    assert phases.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(phases[key] - value) < 0.01, (key, phases[key], value)


def test_missing_events_leave_their_phases_out() -> None:
    partial = [s for s in timeline() if s.step not in ("s2", "s3") and s.event != "run.succeeded"]
    phases = run_phases(partial, POSTED, steps=4, width=2, latency_ms=100)
    assert "wave1_handoff" not in phases
    assert "terminal_seen" not in phases
    assert phases["wave0_ends_spread"] == 2.0
    assert run_phases([], POSTED, steps=4, width=2, latency_ms=100) == {}


def test_medians_over_runs_and_server_times() -> None:
    assert phase_medians([{"a": 1.0, "b": 5.0}, {"a": 3.0}, {"a": 2.0, "b": 7.0}]) == {
        "a": 2.0,
        "b": 6.0,
    }
    assert server_time({"at": "1970-01-01T00:00:01.500000Z"}) == 1.5
    assert server_time({"at": "not a time"}) is None
    assert server_time({}) is None
