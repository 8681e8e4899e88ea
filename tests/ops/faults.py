"""The harness of the end-to-end fault tests (``tests/ops/test_faults_*.py``, issue 11).

A ``Workload`` is a real ``stretto serve`` process (``tests/ops/process.py``) with a user,
a project, files put before the fault, runs submitted around it and ``LiveClient``\\ s: SSE
readers that reconnect with the last id they saw, as an EventSource does. ``Workload.verify``
asserts what must hold after every fault:

- the process is alive, and no answer was a 500;
- every run reached its expected terminal state, and its event log is well formed;
- the replay from 0 is gap-free and equal to what every live client got (no gap, no
  duplicate), and no stream (re)connect was refused with a non-200 (EventSource would give
  up for good);
- the files are byte-identical to what was acknowledged;
- RSS and file descriptors come back to within a bound of the baseline.

Deadlines here are hang guards, never timing assertions.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import trio

from tests.events.sse_client import SSEStream, connect, open_stream, read_head
from tests.fixtures.server import create_project, register_user
from tests.ops.process import ServerProcess
from tests.workflow.invariants import check_run_log

if TYPE_CHECKING:
    from pathlib import Path

    from tests.fixtures.postgres import BackendConfig
    from tests.fixtures.server import AuthedUser

RUNS = "/api/workflow/runs"
RECONNECT_S = 0.1  # a live client's pause before it reconnects
SETTLE_S = 60  # hang guard: runs finishing and clients catching up after a fault
RSS_SLACK_KIB = 48 * 1024  # RSS may not come back exactly (allocator), but no leak of size
FD_SLACK = 6  # pool connections reopened, the bus connection, an accept in flight
RESERVED_STATUSES = frozenset({500, 502, 504})

# Server settings the fault tests share: short database deadline (fast 503s), idle streams
# pinged often (a live client notices a dead connection), slow enough model calls that a
# fault lands mid-run.
FAULT_SETTINGS: dict[str, Any] = {
    "db_timeout_s": 1.0,
    "sse_heartbeat_s": 1.0,
    "offline_latency_ms": 300,
}


def run_plan(index: int) -> dict[str, Any]:
    """Four parallel model calls, a join, a file write from the join's output, a last call."""
    wide = [{"id": f"w{i}", "tool": "ai.generate", "args": {"prompt": f"r{index} p{i}"}}
            for i in range(4)]  # fmt: skip
    join = {"id": "join", "tool": "ai.generate", "args": {"prompt": "join"}, "needs": ["w0", "w3"]}
    write = {
        "id": "write",
        "tool": "vfs.write",
        "args": {"path": f"out/run{index}.txt", "content": f"run {index}: done"},
        "needs": ["join"],
    }
    last = {"id": "last", "tool": "ai.generate", "args": {"prompt": "last"}, "needs": ["write"]}
    return {"steps": [*wide, join, write, last]}


def proc_status(pid: int) -> tuple[int, int]:
    """(RSS in KiB, open file descriptors) of ``pid`` from /proc."""
    rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class LiveClient:
    """An SSE reader that reconnects with ``last_event_id`` as an EventSource does. Events
    with an id are kept in arrival order; a non-200 answer is recorded in ``refusals``, a
    200 with an ended, unchunked body (``retry:``, come back later) in ``told_to_retry``."""

    def __init__(self, url: str, project_id: str, headers: dict[str, str]) -> None:
        self.url = url
        self.project_id = project_id
        self.headers = headers
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.refusals: list[str] = []
        self.connects = 0
        self.told_to_retry = 0

    @property
    def last_id(self) -> int:
        return self.events[-1][0] if self.events else 0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            try:
                target = f"/api/sse/projects/{self.project_id}?last_event_id={self.last_id}"
                stream = await connect(self.url, target, self.headers)
                try:
                    status, headers, rest = await read_head(stream)
                    if status != 200:  # an EventSource would give up for good
                        self.refusals.append(f"{status}: {rest[:200]!r}")
                    elif headers.get("transfer-encoding") != "chunked":
                        self.told_to_retry += 1  # 200, `retry:` and an ended stream
                    else:
                        sse = SSEStream(stream, status, headers)
                        sse._wire = rest  # as open_stream does
                        sse._dechunk()
                        await sse.started()
                        self.connects += 1
                        if not started:
                            started = True
                            task_status.started()
                        await self._read(sse)
                finally:
                    await stream.aclose()
            except (EOFError, OSError, trio.BrokenResourceError, trio.TooSlowError):
                pass  # the stream ended or the connection broke: reconnect
            await trio.sleep(RECONNECT_S)

    async def _read(self, sse: SSEStream) -> None:
        while True:
            message = await sse.next()
            if message.id is not None:
                self.events.append((int(message.id), message.event, json.loads(message.data)))


@dataclass
class Workload:
    """One server under faults, and what it acknowledged."""

    server: ServerProcess
    client: httpx.AsyncClient
    user: AuthedUser
    project_id: str
    files: dict[str, bytes] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)  # run id -> expected final status
    live: list[LiveClient] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    baseline: tuple[int, int] = (0, 0)

    @classmethod
    async def start(
        cls, nursery: trio.Nursery, backend: BackendConfig, log: Path, **settings: Any
    ) -> Workload:
        server = await ServerProcess.start(nursery, backend, log, **(FAULT_SETTINGS | settings))
        client = httpx.AsyncClient(base_url=server.url, timeout=30)
        user = await register_user(client)
        project_id = await create_project(client, user)
        return cls(server, client, user, project_id)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call as a client makes it: every answer's status is kept (no 500 allowed)."""
        headers = self.user.headers | kwargs.pop("headers", {})
        response = await self.client.request(method, path, headers=headers, **kwargs)
        self.statuses.append(response.status_code)
        return response

    async def retried(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The call, repeated while the server answers 503 (with ``Retry-After``)."""
        with trio.fail_after(SETTLE_S):
            while True:
                try:
                    response = await self.request(method, path, **kwargs)
                except httpx.TransportError:
                    await trio.sleep(0.2)
                    continue
                if response.status_code != 503:
                    return response
                assert response.json()["error"]["code"] == "not_ready", response.text
                assert int(response.headers["Retry-After"]) >= 1
                await trio.sleep(0.2)

    async def put_files(self, count: int = 3) -> None:
        rng = random.Random(11)
        contents = [
            rng.randbytes(256 * 1024),
            "héllo, wörld ✓\n".encode() * 100,
            b"",
        ]
        for index in range(count):
            path = f"in/file{index}.bin"
            content = contents[index % len(contents)]
            response = await self.retried(
                "PUT", f"/api/projects/{self.project_id}/files/{path}", content=content
            )
            assert response.status_code in (200, 201), response.text
            self.files[path] = content

    async def submit(
        self, index: int, expected: str = "succeeded", plan: dict[str, Any] | None = None
    ) -> str:
        """Submit a run (``run_plan(index)`` unless ``plan``) expected to end ``expected``."""
        body = {"project_id": self.project_id, "plan": plan or run_plan(index)}
        key = {"Idempotency-Key": f"run-{index}"}  # a retried POST is the same run
        response = await self.retried("POST", RUNS, json=body, headers=key)
        assert response.status_code == 202, response.text
        run_id = str(response.json()["id"])
        self.runs[run_id] = expected
        if plan is None:
            self.files[f"out/run{index}.txt"] = f"run {index}: done".encode()
        return run_id

    async def wait_running(self, run_id: str) -> None:
        """Until a step of the run is running (the fault then lands mid-run)."""
        with trio.fail_after(SETTLE_S):
            while True:
                run = (await self.retried("GET", f"{RUNS}/{run_id}")).json()
                if any(s["status"] == "running" for s in run["steps"]):
                    return
                assert run["finished_at"] is None, run
                await trio.sleep(0.05)

    async def connect_clients(self, nursery: trio.Nursery, count: int) -> None:
        for _ in range(count):
            live = LiveClient(self.server.url, self.project_id, self.user.headers)
            await nursery.start(live.run)
            self.live.append(live)

    def measure_baseline(self) -> None:
        self.baseline = proc_status(self.server.process.pid)

    async def verify(self, clients_scope: trio.CancelScope) -> None:
        """Everything the module docstring lists; cancels ``clients_scope`` (the live
        clients) once they caught up."""
        assert self.server.process.returncode is None, self.server.log()
        finished = {run_id: await self.wait_finished(run_id) for run_id in self.runs}
        replay = await self._replay_through_sentinel()
        ids = [seq for seq, _, _ in replay]
        assert ids == list(range(1, len(ids) + 1)), "the replay has a gap or a duplicate"
        with trio.fail_after(SETTLE_S):
            while any(live.last_id < ids[-1] for live in self.live):  # noqa: ASYNC110
                await trio.sleep(0.05)
        clients_scope.cancel()
        for live in self.live:
            assert live.refusals == [], live.refusals
            assert live.events == replay, "a live client missed or repeated events"
        for run_id, run in finished.items():
            outcome = (run_id, run["status"], run["error"])
            assert run["status"] == self.runs[run_id], (outcome, self.server.log()[-3000:])
            check_run_log(data for _, _, data in replay if data.get("run_id") == run_id)
        for path, content in self.files.items():
            response = await self.request("GET", f"/api/projects/{self.project_id}/files/{path}")
            assert response.status_code == 200, response.text
            assert response.content == content, path
        assert not RESERVED_STATUSES & set(self.statuses), self.statuses
        assert self.server.process.returncode is None, self.server.log()
        await self._resources_back()

    async def wait_finished(self, run_id: str) -> dict[str, Any]:
        with trio.fail_after(SETTLE_S):
            while True:
                run: dict[str, Any] = (await self.retried("GET", f"{RUNS}/{run_id}")).json()
                if run["finished_at"] is not None:
                    return run
                await trio.sleep(0.1)

    async def _replay_through_sentinel(self) -> list[tuple[int, str, dict[str, Any]]]:
        """Put a sentinel file (its event is the last), then replay from 0 up to it."""
        path = "sentinel.txt"
        await self.retried("PUT", f"/api/projects/{self.project_id}/files/{path}", content=b"s")
        self.files[path] = b"s"
        replay: list[tuple[int, str, dict[str, Any]]] = []
        params = {"last_event_id": "0"}
        async with open_stream(self.server.url, self.project_id, self.user.headers, params) as s:
            while True:
                message = await s.next()
                if message.id is None:
                    continue
                data = json.loads(message.data)
                replay.append((int(message.id), message.event, data))
                if message.event == "file.changed" and data.get("path") == path:
                    return replay

    async def _resources_back(self) -> None:
        """RSS and fds within a bound of the baseline, once the live clients are gone."""
        rss0, fds0 = self.baseline
        with trio.fail_after(SETTLE_S):
            while True:
                rss, fds = proc_status(self.server.process.pid)
                if fds <= fds0 + FD_SLACK:
                    break
                await trio.sleep(0.2)
        assert rss <= rss0 + RSS_SLACK_KIB, (rss0, rss)

    async def stop(self) -> None:
        """SIGTERM: a clean exit (code 0)."""
        await self.client.aclose()
        self.server.terminate()
        with trio.fail_after(SETTLE_S):
            code = await self.server.process.wait()
        assert code == 0, self.server.log()
