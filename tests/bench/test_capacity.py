"""``stretto bench capacity`` end to end at tiny sizes: the real server on loopback, real shard
processes, real source addresses. These check the plumbing and the verdicts, never speed."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import pytest

from server.bench.cli import run_bench
from server.bench.procs import open_files_limit, server_processes
from server.cli.main import build_parser, main

if TYPE_CHECKING:
    from tests.fixtures.server import StartServer

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def capacity(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    args = build_parser().parse_args(["bench", "capacity", *argv, "--json", "--quiet"])
    code = await run_bench(args)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    return code, json.loads(lines[0])


@SQLITE_ONLY
async def test_steps_up_over_shards_and_sources_while_heartbeats_flow(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server(sse_heartbeat_s=0.1)
    code, result = await capacity(
        capsys,
        "--url",
        server.url,
        "--steps",
        "3,7",
        "--per-shard",
        "4",  # 7 streams need two shard processes
        "--sources",
        "127.0.0.2,127.0.0.3",
        "--heartbeat-s",
        "0.1",
        "--grace-s",
        "1",
        "--hold-s",
        "0.6",
        "--probe-every-s",
        "0.1",
        "--pid",
        str(os.getpid()),
    )
    assert code == 0, result
    assert result["scenario"] == "capacity"
    assert (result["max_streams"], result["failed_at"], result["failure"]) == (7, None, None)
    assert result["client_shards"] == 2
    assert result["steps"] == [3, 7]
    first, second = result["rows"]
    assert (first["streams"], first["alive"], second["alive"]) == (3, 3, 7)
    for row in result["rows"]:
        assert row["ok"] is True
        assert (row["connect_failed"], row["closed_by_server"], row["starved"]) == (0, 0, 0)
        assert row["health_ms"]["probes"] > 0
        assert row["health_ms"]["failed"] == 0
        assert row["max_gap_s"] < 1.1
        assert row["client_rss_kb"] > 0
    assert result["server_fd_limit"] == open_files_limit(os.getpid())
    assert result["other_cpu_pct"] == max(row["other_cpu_pct"] for row in result["rows"])
    assert isinstance(result["rss_per_conn_kb"], float)


@SQLITE_ONLY
async def test_a_step_whose_streams_get_no_heartbeat_fails_and_ends_the_run(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server(sse_heartbeat_s=60.0)  # no heartbeat within the hold
    code, result = await capacity(
        capsys,
        "--url",
        server.url,
        "--steps",
        "2,4",
        "--heartbeat-s",
        "0.2",
        "--grace-s",
        "0.2",
        "--hold-s",
        "0.8",
    )
    assert code == 0, result  # a measurement, not a failed run
    assert (result["max_streams"], result["failed_at"]) == (0, 2)
    assert result["steps"] == [2]  # stopped at the first failing step
    (row,) = result["rows"]
    assert (row["ok"], row["alive"], row["starved"]) == (False, 2, 2)
    assert "2 streams without a heartbeat" in result["failure"]
    assert result["alive_at_failure"] == 0


@SQLITE_ONLY
async def test_slow_health_fails_a_step(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server(sse_heartbeat_s=0.1)
    code, result = await capacity(
        capsys,
        "--url",
        server.url,
        "--steps",
        "1",
        "--heartbeat-s",
        "0.1",
        "--grace-s",
        "1",
        "--hold-s",
        "0.3",
        "--health-limit-ms",
        "0.000001",  # no real answer is this fast
    )
    assert code == 0, result
    assert (result["max_streams"], result["failed_at"]) == (0, 1)
    assert result["failure"] == "/api/health p95 over 1e-06 ms"
    (row,) = result["rows"]
    assert row["health_over_limit"] == row["health_ms"]["probes"] > 0


def test_server_processes_takes_in_a_supervisor_and_its_workers() -> None:
    assert server_processes(None) == []
    assert os.getpid() in server_processes(os.getpid())
    assert server_processes(2**22 + 12345) == []  # no such process


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--steps", "0"), ("--steps", "a,b"), ("--sources", "10.0.0.1"), ("--ramp", "0")],
)
def test_cli_refuses_bad_capacity_options(
    capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "capacity", flag, value])
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err


@SQLITE_ONLY
async def test_streams_connect_from_the_given_source_addresses(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # An IPv6 source cannot reach the IPv4 server: if --sources were ignored, they would connect.
    # 700 streams: the first chunk of 500 fails, which is past GIVE_UP_AFTER, so 200 are skipped.
    server = await start_server(sse_heartbeat_s=0.1)
    code, result = await capacity(
        capsys, "--url", server.url, "--steps", "700", "--sources", "::1", "--hold-s", "0.2"
    )
    assert code == 0, result
    (row,) = result["rows"]
    assert (row["connect_failed"], row["connect_skipped"], row["alive"]) == (700, 200, 0)
    assert "OSError" in row["connect_error"]
    assert result["failure"].startswith("700 streams failed to connect")
