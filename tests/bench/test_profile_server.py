"""The plumbing of profile_server.py: the profiled child (the real server under cProfile, a
window between two signals), the split by layer, and one whole tiny run. Nothing here times
anything: every wait is for a state (a file, a port), with a hang guard."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.bench import profile_layers as layers

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
GUARD_S = 90.0


def _wait(check: Any, what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not check():
        assert time.monotonic() < deadline, f"hang guard: {what}"
        time.sleep(0.02)


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _answers(port: int) -> bool:
    try:
        return _get(port, "/api/health") == 200
    except OSError:
        return False


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _entry(entries: list[dict[str, Any]], file_end: str, name: str) -> dict[str, Any]:
    found = [e for e in entries if e["file"].endswith(file_end) and e["name"] == name]
    assert len(found) == 1, [(e["file"], e["name"]) for e in entries if file_end in e["file"]]
    return found[0]


@pytest.mark.timeout(180)
def test_the_child_profiles_exactly_the_window_between_the_marks(tmp_path: Path) -> None:
    port, out = _free_port(), tmp_path / "profile.json"
    command = [sys.executable, str(HERE / "profile_child.py"), "--out", str(out), "--"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path / "d")]
    with (tmp_path / "log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, cwd=ROOT)
    try:
        _wait(lambda: _answers(port) or process.poll() is not None, "the server answers")
        assert process.poll() is None, (tmp_path / "log").read_text()[-2000:]
        for _ in range(25):  # before the window: not counted
            assert _get(port, "/api/health") == 200
        os.kill(process.pid, signal.SIGUSR1)
        _wait(Path(f"{out}.start").exists, "the start mark")
        for _ in range(7):
            assert _get(port, "/api/health") == 200
        os.kill(process.pid, signal.SIGUSR2)
        _wait(Path(f"{out}.end").exists, "the end mark")
        for _ in range(25):  # after the window: not counted
            assert _get(port, "/api/health") == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=GUARD_S)
    assert process.returncode == 0, (tmp_path / "log").read_text()[-2000:]
    report = json.loads(out.read_text())
    assert report["profiled"] is True
    assert report["marked"] == ["end", "start"]
    assert report["cpu_user_s"] + report["cpu_system_s"] > 0
    assert set(report["calibration"]) == {"py_callee", "py_caller", "c_callee", "c_caller"}
    entries = report["entries"]
    # Every request's target is checked once, before its answer is sent (so before the
    # client sends the next signal): 7 in the window, not 57. (The access log is written
    # after the answer: it may land on either side of a mark.)
    check = _entry(entries, "server/api/validation.py", "check_request_target")
    assert check["calls"] == 7
    split = layers.split(entries, str(ROOT), report["calibration"])
    for layer in ("h11", "trio", layers.STRETTO, layers.KERNEL):
        assert split.self_s.get(layer, 0.0) > 0, (layer, split.self_s)
    assert any(name.startswith("server/api/") for name in split.stretto_files)


def _py(file: str, name: str, calls: int, self_s: float, callers: list[Any]) -> dict[str, Any]:
    return {
        "file": file,
        "line": 1,
        "name": name,
        "calls": calls,
        "self_s": self_s,
        "cum_s": self_s,
        "callers": callers,
    }


def test_split_charges_a_c_function_to_its_callers_layers_and_syscalls_to_the_kernel() -> None:
    root = "/repo"
    h11 = "/venv/site-packages/h11/_connection.py"
    ours = "/repo/server/api/edge.py"
    entries = [
        _py(h11, "next_event", 10, 0.010, []),
        _py(ours, "__call__", 10, 0.030, []),
        _py(
            "~",
            "<built-in method builtins.isinstance>",
            40,
            0.004,
            [[h11, 1, "next_event", 30, 0.003], [ours, 1, "__call__", 10, 0.001]],
        ),
        _py(
            "~",
            "<method 'send' of '_socket.socket' objects>",
            10,
            0.020,
            [[ours, 1, "__call__", 10, 0.020]],
        ),
        _py("/elsewhere/thing.py", "f", 1, 0.001, []),
    ]
    parts = layers.split(entries, root)
    assert parts.self_s["h11"] == pytest.approx(0.013)
    assert parts.self_s[layers.STRETTO] == pytest.approx(0.031)
    assert parts.self_s[layers.KERNEL] == pytest.approx(0.020)
    assert parts.self_s[layers.OTHER] == pytest.approx(0.001)
    assert parts.calls["h11"] == 40
    assert parts.stretto_files == {"server/api/edge.py": pytest.approx(0.031)}
    assert parts.total_s == pytest.approx(0.065)

    cal = {"py_callee": 1e-4, "py_caller": 2e-4, "c_callee": 1e-5, "c_caller": 3e-5}
    charged = layers.split(entries, root, cal)
    # h11: 10 own calls x py_callee, 30 isinstance calls x c_callee (its share of the
    # builtin) and 30 C calls it made x c_caller.
    assert charged.overhead_s["h11"] == pytest.approx(10 * 1e-4 + 40 * 1e-5 * 0.75 + 30 * 3e-5)
    beta = layers.dilation(charged, 0.030)
    assert beta is not None
    table = layers.layer_table(charged, 10, "request", 0.030)
    total_row = table[-1]
    assert total_row.startswith("| **total** | ")
    assert total_row.split("|")[-2].strip() == "3,000.0"  # calibrated sums to the unprofiled
    assert total_row.split("|")[-3].strip() == "3,000.0"  # and so does share x unprofiled
    assert any(row.startswith("| h11 |") for row in table)
    top = layers.top_table(charged, 10, "request", 2, ("/venv/site-packages/",))
    assert "`h11/_connection.py:1(next_event)`" not in top[2]  # edge's 30 ms is first
    assert top[2].startswith("| `/repo/server/api/edge.py:1(__call__)` |")


@pytest.mark.timeout(300)
def test_a_whole_tiny_run_prints_the_tables_and_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    command = [
        sys.executable,
        str(HERE / "profile_server.py"),
        "--scenario",
        "health",
        "--engine",
        "python",
        "--seconds",
        "1",
        "--conns",
        "2",
        "--top",
        "5",
        "--json-out",
        str(out),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=280, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout
    assert "unprofiled: " in text
    assert "| layer | calls/request |" in text
    assert "| h11 |" in text
    assert "| stretto file |" in text
    saved = json.loads(out.read_text())
    assert saved["unprofiled"]["units"] > 0
    assert saved["profiled"]["units"] > 0
    assert saved["profiled"]["entries"]
    again = subprocess.run(
        [sys.executable, str(HERE / "profile_server.py"), "--from-json", str(out), "--top", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    assert again.stdout.splitlines()[1:] == text.splitlines()[1:]  # same tables


@pytest.mark.timeout(300)
def test_the_workflow_scenario_counts_steps(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    command = [
        sys.executable,
        str(HERE / "profile_server.py"),
        "--scenario",
        "workflow",
        "--steps",
        "2",
        "--width",
        "1",
        "--runs",
        "1",
        "--latency-ms",
        "1",
        "--no-baseline",
        "--json-out",
        str(out),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=280, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| layer | calls/step |" in done.stdout
    saved = json.loads(out.read_text())
    assert saved["unprofiled"] is None
    assert saved["profiled"]["units"] == 2
    assert saved["profiled"]["load"]["dag_order_ok"] is True
    files = {e["file"] for e in saved["profiled"]["entries"]}
    assert any("/server/workflow/" in f for f in files)
