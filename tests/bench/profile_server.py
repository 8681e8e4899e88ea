"""Where a stretto request's (or workflow step's) CPU goes, by layer: a reproducible profile.

    python tests/bench/profile_server.py --scenario health   [--seconds 5 --conns 50]
    python tests/bench/profile_server.py --scenario project  [--seconds 5 --conns 50]
    python tests/bench/profile_server.py --scenario workflow [--steps 20 --width 10 --runs 3
                                                              --latency-ms 100]
    python tests/bench/profile_server.py --scenario health --peer node   # CPU per request only

Twice, each on a fresh ``stretto serve`` (SQLite, a temp data dir, pinned to CPU 0 when there
are 2 cores; the load on CPU 1): once unprofiled, once under cProfile (profile_child.py; all
threads, per-thread CPU clock). Each run: start, wait for ``/api/health``, set up (a user and
a project for ``project``), warm up (first-use imports stay out), mark the window (SIGUSR1),
run the load, mark its end (SIGUSR2), stop with SIGTERM (the server's clean shutdown writes
the profile). The load is ``stretto bench http`` (wrk) for ``health``, wrk with the Bearer
header for ``project`` (``stretto bench http`` sends no headers), ``stretto bench workflow``
for ``workflow``. Units: requests wrk completed, or steps (runs x steps).

Prints: the unprofiled CPU per unit (user and system, from ``getrusage`` in the server over
the window) and the profiled one, the layer table (profile_layers.py), stretto's files, the
top functions by self time. ``--json-out FILE`` keeps everything (the raw entries too).
With ``--peer node|go`` the peer (../shared/bench/run-peers.sh) is measured instead: CPU per
unit from /proc/PID/stat over the same load, no profile. No assertion on speed anywhere.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import profile_layers as layers

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("profile_child.py")
PEERS = Path(os.environ.get("STRETTO_PEERS_DIR", "/work/shared/bench"))
CHEAP_ARGON2 = {"STRETTO_ARGON2_TIME_COST": "1", "STRETTO_ARGON2_MEMORY_KIB": "1024"}
"""The bench's one registration inside the window would cost ~170 ms of CPU at the default
argon2 cost (much of it in libargon2's own threads, which cProfile cannot see): at this cost
it is ~1 ms, its own row (argon2), and the figures are the requests' or the workflow's."""
HANG_S = 120.0
"""Hang guard for every wait (start-up, marks, shutdown): a failure, never a measurement."""


@dataclass(slots=True)
class Load:
    units: float
    unit: str
    result: dict[str, Any]


def _pin(cpu: int) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _call(port: int, method: str, path: str, body: Any = None, token: str = "") -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
    return json.loads(data) if data else None


def _wait(check: Any, what: str) -> None:
    deadline = time.monotonic() + HANG_S
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {HANG_S:g} s")
        time.sleep(0.02)


def _healthy(port: int) -> bool:
    try:
        _call(port, "GET", "/api/health")
    except (OSError, RuntimeError, ValueError):
        return False
    return True


def _stretto(*args: str) -> list[str]:
    return [*_pin(1), sys.executable, "-m", "server", *args]


def _run_json(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_S * 5, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[-8:]} exited {done.returncode}: {done.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _wrk(port: int, path: str, token: str, conns: int, seconds: float) -> dict[str, Any]:
    from server.bench.scenarios.http import parse_wrk

    command = [*_pin(1), "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency"]
    command += ["-H", f"Authorization: Bearer {token}", f"http://127.0.0.1:{port}{path}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_S, check=True)
    return parse_wrk(done.stdout)


def _load(args: argparse.Namespace, port: int, warm: bool, state: dict[str, str]) -> Load:
    """One load of the scenario (``warm``: the short warm-up) against the server on ``port``."""
    url = f"http://127.0.0.1:{port}"
    if args.scenario == "workflow":
        runs = 1 if warm else args.runs
        result = _run_json(
            _stretto(
                "bench",
                "workflow",
                "--url",
                url,
                "--steps",
                str(args.steps),
                "--width",
                str(args.width),
                "--runs",
                str(runs),
                "--latency-ms",
                f"{args.latency_ms:g}",
                "--json",
                "--quiet",
            )
        )
        return Load(float(runs * args.steps), "step", result)
    seconds = 1.0 if warm else args.seconds
    if args.scenario == "project":
        if "token" not in state:
            reg = _call(
                port,
                "POST",
                "/api/auth/register",
                {"email": f"prof-{time.time_ns()}@example.com", "password": "x" * 16},
            )
            state["token"] = str(reg["access_token"])
            project = _call(port, "POST", "/api/projects", {"name": "prof"}, state["token"])
            state["path"] = f"/api/projects/{project['id']}"
        result = _wrk(port, state["path"], state["token"], args.conns, seconds)
    else:
        result = _run_json(
            _stretto(
                "bench",
                "http",
                "--url",
                url,
                "--path",
                args.path,
                "--conns",
                str(args.conns),
                "--seconds",
                f"{seconds:g}",
                "--warmup-s",
                "0",
                "--engine",
                args.engine,
                "--json",
                "--quiet",
            )
        )
    if result.get("non2xx") or result.get("errors"):
        raise RuntimeError(f"the load got errors: {json.dumps(result)[:400]}")
    return Load(float(result["requests"]), "request", result)


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=HANG_S)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_stretto(args: argparse.Namespace, profile: bool, work: Path) -> dict[str, Any]:
    """One fresh server, warmed up, one measured window; the child's report plus the load."""
    port, out = _free_port(), work / f"profile-{'on' if profile else 'off'}.json"
    data = Path(tempfile.mkdtemp(prefix="data-", dir=work))
    command = [*_pin(0), sys.executable, str(CHILD), "--out", str(out)]
    command += [] if profile else ["--off"]
    command += ["--", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data)]
    command += ["--log-level", "warning"]
    env = dict(os.environ, STRETTO_OFFLINE_LATENCY_MS=f"{args.latency_ms:g}", **CHEAP_ARGON2)
    log = (work / f"server-{'on' if profile else 'off'}.log").open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=ROOT
    )
    try:
        _wait(lambda: _healthy(port) or process.poll() is not None, "the server to answer")
        if process.poll() is not None:
            raise RuntimeError(f"the server exited {process.returncode}")
        state: dict[str, str] = {}
        _load(args, port, True, state)
        os.kill(process.pid, signal.SIGUSR1)
        _wait(Path(f"{out}.start").exists, "the start mark")
        load_avg = _uptime()
        load = _load(args, port, False, state)
        os.kill(process.pid, signal.SIGUSR2)
        _wait(Path(f"{out}.end").exists, "the end mark")
    except BaseException:
        _stop(process)
        log.close()
        sys.stderr.write((work / log.name).read_text(errors="replace")[-3000:])
        raise
    _stop(process)
    log.close()
    if not out.exists():
        raise RuntimeError(f"no profile written (exit {process.returncode}); see {log.name}")
    report: dict[str, Any] = json.loads(out.read_text())
    report.update(units=load.units, unit=load.unit, load=load.result, load_avg=load_avg)
    return report


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def run_peer(args: argparse.Namespace) -> dict[str, Any]:
    """The peer on CPU 0, the same warm-up and load; CPU per unit from /proc/PID/stat (10 ms
    ticks: give the load enough units). For workflow, less the bench's own set-up."""
    port = _free_port()
    started = subprocess.run(
        [str(PEERS / "run-peers.sh"), args.peer, str(port), "0"],
        capture_output=True,
        text=True,
        timeout=HANG_S * 3,
        check=True,
        env=dict(os.environ, FAKE_AI_LATENCY_MS=f"{args.latency_ms:g}"),
    )
    pid = int(started.stdout.split()[-1])
    try:
        state: dict[str, str] = {}
        warm = _load(args, port, True, state)
        before, wall = _proc_cpu_s(pid), time.monotonic()
        load = _load(args, port, False, state)
        cpu_s, wall_s = _proc_cpu_s(pid) - before, time.monotonic() - wall
        setup_cpu_s = 0.0
        if args.scenario == "workflow":
            # Each bench run registers a user first (scrypt, ~80 ms on the Node peer): CPU
            # per step is the difference between this run and one of --runs 1 (the warm-up
            # shape), over the difference in steps.
            before = _proc_cpu_s(pid)
            _load(args, port, True, state)
            one_run_s = _proc_cpu_s(pid) - before
            setup_cpu_s = (
                max(0.0, one_run_s - warm.units * (cpu_s - one_run_s) / (load.units - warm.units))
                if load.units > warm.units
                else 0.0
            )
    finally:
        os.kill(pid, signal.SIGTERM)
    return {
        "peer": args.peer,
        "cpu_s": cpu_s - setup_cpu_s,
        "setup_cpu_s": setup_cpu_s,
        "wall_s": wall_s,
        "units": load.units,
        "unit": load.unit,
        "load": load.result,
    }


def summary(args: argparse.Namespace, off: dict[str, Any] | None, on: dict[str, Any]) -> str:
    """The printed report: CPU per unit, then the three tables."""
    unit, units = on["unit"], on["units"]
    lines = [f"scenario {args.scenario}: {_load_line(on)}; before the load: {on['load_avg']}"]
    off_cpu = None
    if off is not None:
        off_cpu = off["cpu_user_s"] + off["cpu_system_s"]
        per = 1e6 / off["units"]
        lines.append(
            f"unprofiled: {off_cpu * per:,.1f} µs CPU per {unit} "
            f"(user {off['cpu_user_s'] * per:,.1f}, system {off['cpu_system_s'] * per:,.1f}); "
            f"{_load_line(off)}; before the load: {off['load_avg']}"
        )
        off_cpu = off_cpu / off["units"] * units  # the unprofiled CPU for the profiled units
    on_cpu = on["cpu_user_s"] + on["cpu_system_s"]
    parts = layers.split(on["entries"], str(ROOT), on.get("calibration"))
    lines.append(
        f"profiled: {on_cpu / units * 1e6:,.1f} µs CPU per {unit} (getrusage), profile sums "
        f"{parts.total_s / units * 1e6:,.1f} µs in {on['threads']} thread(s)"
        + (f"; cProfile x{on_cpu / off_cpu:.2f}" if off_cpu else "")
    )
    cal = on.get("calibration") or {}
    if cal:
        lines.append(
            "profiler cost per call (ns, callee + caller): Python "
            f"{cal['py_callee'] * 1e9:.0f} + {cal['py_caller'] * 1e9:.0f}, "
            f"C {cal['c_callee'] * 1e9:.0f} + {cal['c_caller'] * 1e9:.0f}"
            + (
                f"; the rest scaled x{beta:.2f}"
                if (beta := layers.dilation(parts, off_cpu))
                else ""
            )
        )
    paths = sysconfig.get_paths()
    strip = (paths["purelib"] + "/", paths["stdlib"] + "/", str(ROOT) + "/")
    lines += ["", *layers.layer_table(parts, units, unit, off_cpu), ""]
    lines += [*layers.files_table(parts, units, unit, args.top), ""]
    lines += layers.top_table(parts, units, unit, args.top, strip)
    return "\n".join(lines)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {key: str(value) if isinstance(value, Path) else value for key, value in values.items()}


def _load_line(report: dict[str, Any]) -> str:
    load = report["load"]
    if report["unit"] == "step":
        return (
            f"{report['units']:.0f} steps, wall/critical path {load.get('wall_over_critical_path')}"
        )
    p50 = (load.get("latency_ms") or {}).get("p50")
    return f"{report['units']:.0f} requests, {load.get('rps')} req/s, p50 {p50} ms"


def _uptime() -> str:
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        return "load average " + ", ".join(loadavg.read().split()[:3])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scenario", choices=("health", "project", "workflow"), default="health")
    parser.add_argument("--path", default="/api/health", help="GET path for health (no auth)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--engine", choices=("wrk", "python", "auto"), default="auto")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--no-baseline", action="store_true", help="skip the unprofiled run")
    parser.add_argument("--peer", choices=("node", "go"), help="measure a peer's CPU instead")
    parser.add_argument("--json-out", type=Path, help="write every figure and the raw profile")
    parser.add_argument("--from-json", type=Path, help="print the tables of a --json-out file")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        args.scenario = saved["args"]["scenario"]
        print(summary(args, saved["unprofiled"], saved["profiled"]))
        return 0
    if args.scenario == "project" and not shutil.which("wrk"):
        raise SystemExit("--scenario project needs wrk (apt-get install wrk)")
    if args.peer:
        peer = run_peer(args)
        print(
            f"{args.peer} {args.scenario}: {peer['cpu_s'] / peer['units'] * 1e6:,.1f} µs CPU per"
            f" {peer['unit']} (/proc/PID/stat"
            + (
                f", less {peer['setup_cpu_s'] * 1000:.0f} ms of set-up"
                if peer["setup_cpu_s"]
                else ""
            )
            + f"); {_load_line(peer)}; uptime: {_uptime()}"
        )
        report: dict[str, Any] = {"peer": peer}
    else:
        with tempfile.TemporaryDirectory(prefix="stretto-profile-") as tmp:
            off = None if args.no_baseline else run_stretto(args, False, Path(tmp))
            on = run_stretto(args, True, Path(tmp))
        print(summary(args, off, on))
        report = {"unprofiled": off, "profiled": on}
    if args.json_out:
        args.json_out.write_text(json.dumps({"args": _plain(vars(args)), **report}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
