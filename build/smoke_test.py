"""Smoke test of a built executable, standard library only (build/smoke-test.sh runs it).

Starts the binary with no configuration (an empty working directory, no STRETTO_*
variables: SQLite in ./stretto-data, offline AI) on a free port, then: register, create a
project, stream the project's SSE events while a prompt runs, check the run succeeded
and /metrics, SIGTERM with a stream still open, and require exit status 0 and the stream
ended. Prints the figures the README reports: size, start to ready, idle memory.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0  # fly.toml kill_timeout, systemd TimeoutStopSec
PROMPT = 'create notes/smoke.md with "hello from the smoke test"'


class SmokeFailure(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.token: str | None = None

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        kind = response.getheader("Content-Type", "")
        return response.status, json.loads(raw) if "json" in kind and raw else raw

    def expect(self, status: int, method: str, path: str, body: Any = None) -> Any:
        got, payload = self.call(method, path, body)
        if got != status:
            raise SmokeFailure(f"{method} {path}: {got} (wanted {status}): {payload!r}")
        return payload


class EventStream(threading.Thread):
    """Reads a project's SSE stream on a thread until it ends."""

    def __init__(self, port: int, token: str, project_id: str) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=RUN_TIMEOUT_S)
        self.conn.request(
            "GET",
            f"/api/sse/projects/{project_id}",
            headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        )
        self.response = self.conn.getresponse()
        if self.response.status != 200:
            raise SmokeFailure(f"SSE: status {self.response.status}")
        # The headers leave before the stream is subscribed; its first frame, `retry:`, is
        # written once it is (API.md): only then is every later event sure to arrive.
        while not self.response.readline().startswith(b"retry:"):
            pass
        self.events: list[str] = []
        self.ended = threading.Event()
        self.changed = threading.Condition()

    def run(self) -> None:
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    with self.changed:
                        self.events.append(line.removeprefix("event: "))
                        self.changed.notify_all()
        except OSError:
            pass
        finally:
            self.ended.set()
            with self.changed:
                self.changed.notify_all()

    def wait_for(self, names: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for name in self.events:
                    if name in names:
                        return name
                left = deadline - time.monotonic()
                if left <= 0 or self.ended.is_set():
                    raise SmokeFailure(f"SSE: none of {names} in {self.events}")
                self.changed.wait(left)


def rss_kib(pid: int) -> int:
    """Resident memory of the process and its children (the one-file bootloader's child)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def smoke(binary: Path) -> dict[str, Any]:
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="stretto-smoke-"))
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env["STRETTO_PORT"] = str(port)  # the only setting: a free port instead of 8080
    log = (workdir / "server.log").open("wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(binary), "serve"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    client = Client(port)
    figures: dict[str, Any] = {"size_bytes": binary.stat().st_size}
    try:
        while True:
            if proc.poll() is not None:
                raise SmokeFailure(f"exited early with {proc.returncode}")
            try:
                if client.call("GET", "/api/ready")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() - started > READY_TIMEOUT_S:
                raise SmokeFailure("not ready in time")
            time.sleep(0.05)
        figures["start_to_ready_s"] = round(time.monotonic() - started, 2)
        time.sleep(1.0)
        figures["idle_rss_mib"] = round(rss_kib(proc.pid) / 1024, 1)

        body = client.expect(
            201, "POST", "/api/auth/register",
            {"email": "smoke@example.com", "password": "smoke-test-password"},
        )  # fmt: skip
        client.token = body["access_token"]
        project = client.expect(201, "POST", "/api/projects", {"name": "smoke"})

        stream = EventStream(port, body["access_token"], project["id"])
        stream.start()
        run = client.expect(
            202, "POST", "/api/workflow/runs", {"project_id": project["id"], "prompt": PROMPT}
        )
        final = stream.wait_for({"run.succeeded", "run.failed", "run.cancelled"}, RUN_TIMEOUT_S)
        run = client.expect(200, "GET", f"/api/workflow/runs/{run['id']}")
        if final != "run.succeeded" or run["status"] != "succeeded":
            raise SmokeFailure(f"run ended {final}: {json.dumps(run)[:2000]}")
        for needed in ("run.created", "run.started", "step.started", "step.succeeded"):
            if needed not in stream.events:
                raise SmokeFailure(f"SSE: no {needed} in {stream.events}")
        figures["events"] = len(stream.events)
        files = client.expect(200, "GET", f"/api/projects/{project['id']}/files")
        if not any(item["path"] == "notes/smoke.md" for item in files["items"]):
            raise SmokeFailure(f"file not written: {files}")
        script = client.expect(200, "GET", "/client/stretto.js")  # package data, bundled
        if b"export class Stretto" not in script:
            raise SmokeFailure("/client/stretto.js is not the browser client")
        page = client.expect(200, "GET", "/")  # the web console, bundled
        if b'src="/console/app.js"' not in page:
            raise SmokeFailure("/ is not the console's index.html")
        for asset in ("app.js", "run.js", "console.css"):
            client.expect(200, "GET", f"/console/{asset}")
        metrics = client.expect(200, "GET", "/metrics")
        for family in (b"stretto_http_requests_total", b"stretto_runs_total"):
            if family not in metrics:
                raise SmokeFailure(f"/metrics lacks {family.decode()}")

        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise SmokeFailure(f"still running {STOP_TIMEOUT_S}s after SIGTERM") from None
        figures["stop_s"] = round(time.monotonic() - stopped, 2)
        if code != 0:
            raise SmokeFailure(f"exit status {code} after SIGTERM")
        if not stream.ended.wait(5):
            raise SmokeFailure("SSE stream still open after exit")
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        sys.stderr.write((workdir / "server.log").read_text(errors="replace")[-8000:])
        sys.stderr.write(f"\n(server log and data kept in {workdir})\n")
        raise
    log.close()
    shutil.rmtree(workdir, ignore_errors=True)  # kept on failure, for its server.log
    return figures


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: smoke_test.py dist/stretto", file=sys.stderr)
        return 2
    try:
        figures = smoke(Path(sys.argv[1]).resolve())
    except SmokeFailure as exc:
        print(f"smoke test FAILED: {exc}", file=sys.stderr)
        return 1
    print("smoke test passed: " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
