"""``stretto bench`` end to end: the real CLI parser, the real server on loopback, tiny sizes.

These check behaviour (nothing lost, fields present and consistent), never speed.
"""

from __future__ import annotations

import json
import os
import socket
from typing import TYPE_CHECKING, Any

import pytest

from server.bench.cli import run_bench
from server.cli.main import build_parser, main

if TYPE_CHECKING:
    from tests.fixtures.server import RunningServer, StartServer

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def bench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """Run ``stretto bench ARGV --json --quiet`` in this trio run; (exit status, result)."""
    args = build_parser().parse_args(["bench", *argv, "--json", "--quiet"])
    code = await run_bench(args)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    return code, json.loads(lines[0])


async def test_fanout_delivers_every_event_once(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result = await bench(
        capsys,
        "fanout",
        "--url",
        server.url,
        "--subs",
        "3",
        "--events",
        "5",
        "--rate",
        "50",
        "--drain-s",
        "10",
        "--stall",
        "1",
        "--label",
        "tiny",
    )
    assert code == 0, result
    assert result["scenario"] == "fanout"
    assert result["label"] == "tiny"
    assert result["url"] == server.url
    assert (result["connected"], result["connect_failed"]) == (3, 0)
    assert (result["stalled"], result["stalled_connected"]) == (1, 1)  # not counted in expected
    assert (result["expected"], result["delivered"]) == (15, 15)
    assert (result["lost"], result["duplicates"], result["put_errors"]) == (0, 0, 0)
    assert result["disconnected_by_server"] == 0
    latency = result["latency_ms"]
    assert 0 <= latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert result["put_ms"]["p50"] is not None
    assert result["rss_kb"] is None  # no --pid given


@SQLITE_ONLY
async def test_fanout_reconnects_with_last_event_id_and_loses_nothing(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Streams end every ~0.1 s; the writes take ~0.5 s, so every subscriber reconnects and
    # must get what it missed by replay, without duplicates.
    server = await start_server(sse_max_lifetime_s=0.1)
    code, result = await bench(
        capsys,
        "fanout",
        "--url",
        server.url,
        "--subs",
        "3",
        "--events",
        "10",
        "--rate",
        "20",
        "--reconnect",
    )
    assert code == 0, result
    assert result["reconnects"] > 0
    assert result["reconnect_failed"] == 0
    assert (result["lost"], result["duplicates"], result["delivered"]) == (0, 0, 30)


@SQLITE_ONLY
async def test_idle_holds_streams_and_counts_heartbeats(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server(sse_heartbeat_s=0.05)
    # The server runs in this process, so this PID is the one holding the connections.
    code, result = await bench(
        capsys,
        "idle",
        "--url",
        server.url,
        "--conns",
        "5",
        "--hold-s",
        "0.3",
        "--pid",
        str(os.getpid()),
    )
    assert code == 0, result
    assert (result["connected"], result["connect_failed"], result["closed_by_server"]) == (5, 0, 0)
    assert result["pings_received"] > 0
    assert isinstance(result["rss_per_conn_kb"], float)
    assert set(result["rss_kb"]) == {"before", "connected", "after_hold"}
    assert "server_cpu_pct" in result


@SQLITE_ONLY
async def test_http_reports_requests_per_second(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result = await bench(
        capsys,
        "http",
        "--url",
        server.url,
        "--engine",
        "python",
        "--conns",
        "4",
        "--seconds",
        "0.5",
        "--warmup-s",
        "0",
    )
    assert code == 0, result
    assert result["engine"] == "python"
    assert result["requests"] > 0
    assert result["rps"] > 0
    assert (result["errors"], result["non2xx"]) == (0, 0)
    assert result["latency_ms"]["p50"] is not None


@SQLITE_ONLY
async def test_workflow_reports_wall_time_and_critical_path(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server(offline_latency_ms=20.0)
    code, result = await bench(
        capsys,
        "workflow",
        "--url",
        server.url,
        "--steps",
        "4",
        "--width",
        "2",
        "--runs",
        "2",
        "--latency-ms",
        "20",
    )
    assert code == 0, result
    assert (result["chain_len"], result["critical_path_ms"]) == (2, 40.0)
    assert len(result["wall_ms"]) == 2
    assert result["wall_ms_p50"] >= result["critical_path_ms"]  # chained steps cannot overlap
    assert result["failed_runs"] == 0
    assert result["events_complete"] is True
    assert result["dag_order_ok"] is True
    assert result["max_parallelism"] == 2  # both chains ran at once


@SQLITE_ONLY
async def test_workflow_trace_reports_the_phases_of_a_run(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server(offline_latency_ms=5.0)
    code, result = await bench(
        capsys, "workflow", "--url", server.url, "--steps", "4", "--width", "2", "--runs", "2",
        "--latency-ms", "5", "--trace",
    )  # fmt: skip
    assert code == 0, result
    phases = result["phases_ms"]
    for key in (
        "post_to_first_start",
        "first_start_seen",
        "wave0_ends_spread",
        "wave1_handoff",
        "end_seen",
        "last_end_to_terminal",
        "terminal_seen",
        "post_to_terminal_seen",
    ):
        assert isinstance(phases[key], float), key  # fmt: skip
    # Causality, whatever the machine's speed: a step starts after the POST, an event is
    # seen after the server decided it, a wave-1 step after its need's end.
    assert phases["post_to_first_start"] > 0
    assert phases["first_start_seen"] >= phases["post_to_first_start"]
    assert phases["wave1_handoff"] >= 0
    assert phases["terminal_seen"] >= 0
    assert phases["post_to_terminal_seen"] >= result["critical_path_ms"]
    code, plain = await bench(capsys, "workflow", "--url", server.url, "--steps", "2",
                              "--width", "2", "--runs", "1", "--latency-ms", "5")  # fmt: skip
    assert code == 0, plain
    assert "phases_ms" not in plain  # only asked for


@SQLITE_ONLY
async def test_workflow_concurrent_rounds_report_cpu_and_event_rate(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # The scale rows' plumbing at tiny sizes: 2 rounds of 3 runs at once, more steps than
    # the default plan limit allows (the server is started with a higher one).
    server = await start_server(offline_latency_ms=5.0, max_plan_steps=120)
    code, result = await bench(
        capsys,
        "workflow",
        "--url",
        server.url,
        "--steps",
        "101",
        "--width",
        "4",
        "--runs",
        "2",
        "--concurrent",
        "3",
        "--latency-ms",
        "5",
        "--pid",
        str(os.getpid()),  # the server runs in this process
    )
    assert code == 0, result
    assert (result["concurrent"], result["runs"], result["steps"]) == (3, 2, 101)
    assert len(result["wall_ms"]) == 6  # every run of every round
    assert len(result["round_wall_ms"]) == 2
    assert result["failed_runs"] == 0
    assert result["events_complete"] is True
    assert result["dag_order_ok"] is True
    # each run's 101 steps started and succeeded: at least 2 events per step per run
    assert result["events_per_s"] * sum(result["round_wall_ms"]) / 1000 >= 6 * 101 * 2
    assert result["server_cpu_ms_per_run"] > 0
    assert result["server_cpu_ms_per_step"] > 0
    assert result["server_cpu_pct"] > 0


def test_workflow_concurrency_and_steps_have_ceilings(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["bench", "workflow", "--steps", "1000", "--concurrent", "100"])
    assert (args.steps, args.concurrent) == (1000, 100)
    for flag, value in (("--steps", "1001"), ("--concurrent", "201"), ("--concurrent", "0")):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(["bench", "workflow", flag, value])
        assert exc.value.code == 2
    capsys.readouterr()


@SQLITE_ONLY
async def test_a_refused_request_inside_a_scenario_is_a_failed_run(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server(max_plan_steps=2)
    code, result = await bench(
        capsys, "workflow", "--url", server.url, "--steps", "4", "--width", "2", "--runs", "1"
    )
    assert code == 1
    assert "create run: expected 202, got 400" in result["error"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_is_a_failed_run(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = await bench(capsys, "idle", "--url", f"http://127.0.0.1:{_closed_port()}")
    assert code == 1
    assert "register" in result["error"]


def test_cli_refuses_remote_host_without_allow_remote(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "http", "--url", "http://192.0.2.1:80", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "refusing" in captured.err


def test_cli_bounds_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "fanout", "--subs", "1000000"])
    assert exit_info.value.code == 2
    assert "--subs" in capsys.readouterr().err


@SQLITE_ONLY
async def test_hard_time_limit_ends_the_run(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result = await bench(
        capsys,
        "fanout",
        "--url",
        server.url,
        "--subs",
        "1",
        "--events",
        "100",
        "--rate",
        "1",
        "--max-s",
        "1",
    )
    assert code == 1
    assert result["error"] == "hard time limit of 1 s reached"
