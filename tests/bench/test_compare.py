"""``stretto bench compare`` against two real servers: the Node peer of ../shared/bench (the
legacy design) as A, and stretto as B. Checks that both sides were measured with the same
workload and the table shows them side by side; never speed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

from server.bench.compare import format_comparison, ratio, run_compare
from server.cli.main import build_parser
from tests.ops.process import free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.fixtures.server import StartServer

BENCH_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "bench"
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
async def node_peer() -> AsyncIterator[tuple[str, int]]:
    """The Node/Fastify peer on a free port: (url, pid)."""
    if not (BENCH_DIR / "run-peers.sh").exists():
        pytest.fail(f"the shared bench is missing: {BENCH_DIR}")
    port = free_port()
    done = await trio.run_process(
        [str(BENCH_DIR / "run-peers.sh"), "node", str(port)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={**os.environ, "FAKE_AI_LATENCY_MS": "100"},
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    pid = int(done.stdout.decode().split()[-1])
    try:
        yield f"http://127.0.0.1:{port}", pid
    finally:
        os.kill(pid, 15)  # not our child (run-peers.sh started it with nohup)


def test_ratio_and_table_shape() -> None:
    assert ratio(100, 250) == "2.50x"
    assert ratio(3, 3) == "="
    assert ratio(0, 5) == "-"
    assert ratio(None, 5) == "-"
    assert ratio(True, False) == "differs"
    from server.bench.compare import Side

    table = format_comparison(
        Side("node", None, None),
        Side("stretto", None, None),
        {"http": {"node": {"rps": 100.0}, "stretto": {"rps": 250.0, "errors": 0}}},
    )
    lines = table.splitlines()
    assert lines[0] == "| scenario | metric | node | stretto | stretto/node |"
    assert "| http | requests/s (higher is better) | 100.0 | 250.0 | 2.50x |" in lines


@SQLITE_ONLY
async def test_compare_the_node_peer_with_stretto(
    start_server: StartServer,
    node_peer: tuple[str, int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    stretto = await start_server(offline_latency_ms=100)
    node_url, node_pid = node_peer
    args = build_parser().parse_args(
        [
            "bench", "compare", "--quiet",
            "--a", node_url, "--a-label", "node", "--a-pid", str(node_pid),
            "--b", stretto.url, "--b-label", "stretto", "--b-pid", str(os.getpid()),
            "--seconds", "1", "--conns", "8", "--subs", "10", "--events", "20",
            "--rate", "40", "--steps", "4", "--width", "2", "--runs", "1",
        ]
    )  # fmt: skip
    code = await run_compare(args)
    out = capsys.readouterr().out
    assert code == 0, out
    table = out
    # Both sides measured: numbers in both columns of the rows every server reports.
    for metric in ("requests/s (higher is better)", "lost (lower is better)"):
        line = next(line for line in out.splitlines() if metric in line)
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[2] != "-", table
        assert cells[3] != "-", table
    lost = next(line for line in out.splitlines() if "| lost (" in line)
    assert [cell.strip() for cell in lost.strip("|").split("|")][2:4] == ["0", "0"], table
    delivered = next(line for line in out.splitlines() if "delivered" in line)
    assert [cell.strip() for cell in delivered.strip("|").split("|")][2:4] == ["200", "200"]
    complete = next(line for line in out.splitlines() if "events complete" in line)
    assert [cell.strip() for cell in complete.strip("|").split("|")][2:4] == ["yes", "yes"]
    assert "| error (" not in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(
        ["bench", "compare", "--a", "http://127.0.0.1:1", "--b", "http://127.0.0.1:2",
         "--scenarios", "http,nope"]
    )  # fmt: skip
    assert trio.run(run_compare, args) == 2
    assert "--scenarios" in capsys.readouterr().err
    remote = build_parser().parse_args(
        ["bench", "compare", "--a", "http://example.com", "--b", "http://127.0.0.1:2"]
    )
    assert trio.run(run_compare, remote) == 2
