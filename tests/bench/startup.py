"""Start-up time and idle memory of a server: start it, time until ``GET /api/health`` answers
200, let it settle, read the RSS of its processes, stop it. Standard library only.

    python tests/bench/startup.py --label stretto --port 18080 [--cpu 0] [--runs 3] \\
        -- 'exec stretto serve --port $PORT --data-dir "$(mktemp -d)"'

The command runs under ``bash -c`` with ``$PORT`` in its environment, in a session of its own,
pinned to ``--cpu``; every process of that session counts (a supervisor and its workers, the
PyInstaller bootloader and its Python child). ``ready_ms``: spawn -> first 200 (polled every
5 ms on a fresh connection); ``idle_rss_kb``: summed RSS ``--settle-s`` after ready. One JSON
line per run on stdout, shaped like the load generators' (``scenario`` ``startup``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any


def _session_pids(sid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of stat: session id
            pids.append(int(name))
    return pids


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/api/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # Workers of a supervisor may outlive it by a moment: wait for the whole session.
    for _ in range(100):
        if not _session_pids(process.pid):
            return
        time.sleep(0.05)


def measure(
    command: str, port: int, cpu: str | None, settle_s: float, limit_s: float
) -> dict[str, Any]:
    argv = ["bash", "-c", command]
    if cpu is not None:
        argv = ["taskset", "-c", cpu, *argv]
    started = time.perf_counter()
    process = subprocess.Popen(
        argv,
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ready_ms = None
        while time.perf_counter() - started < limit_s and process.poll() is None:
            if _healthy(port):
                ready_ms = (time.perf_counter() - started) * 1000
                break
            time.sleep(0.005)
        if ready_ms is None:
            return {"error": f"not healthy within {limit_s:g} s (exit {process.poll()})"}
        time.sleep(settle_s)
        pids = _session_pids(process.pid)
        return {
            "ready_ms": round(ready_ms, 1),
            "idle_rss_kb": sum(_rss_kb(pid) for pid in pids),
            "processes": len(pids),
            "settle_s": settle_s,
        }
    finally:
        _stop(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--label", required=True)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "18080")))
    parser.add_argument("--cpu", default=None, help="Pin the server to this CPU (taskset).")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--settle-s", type=float, default=2.0)
    parser.add_argument("--limit-s", type=float, default=60.0)
    parser.add_argument("command", help="Server command line for bash -c ($PORT set).")
    args = parser.parse_args(argv)
    for _ in range(args.runs):
        result = measure(args.command, args.port, args.cpu, args.settle_s, args.limit_s)
        line = {"scenario": "startup", "label": args.label, **result}
        print(json.dumps(line), flush=True)
        time.sleep(1)  # sockets settle
    return 0


if __name__ == "__main__":
    sys.exit(main())
