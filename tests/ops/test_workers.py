"""``stretto serve --workers 2``: two processes on one port (SO_REUSEPORT), both databases.

The split is forced and checked from outside: a client connection is attributed to the
worker that accepted it through ``/proc`` (the process holding the server end of its TCP
connection), so the server needs no test-only field. A stream on one worker gets every
event of writes served by the other (each id once, in order), ``step.delta`` included; a
cancel sent to one worker ends a run executing in the other; SIGTERM to the parent drains
both and the parent exits 0.
"""

from __future__ import annotations

import json
import os
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h11
import httpx
import pytest
import trio

from server.cli.main import main
from server.config import load_settings
from server.events import pgchannel
from server.runtime.preflight import ExitCode
from tests.events.sse_client import open_stream
from tests.fixtures.server import create_project, register_user
from tests.ops.process import ServerProcess

if TYPE_CHECKING:
    from tests.events.sse_client import SSEStream
    from tests.fixtures.postgres import BackendConfig
    from tests.fixtures.server import AuthedUser

pytestmark = [pytest.mark.slow]

NEVER_MS = 600_000  # a model call only a cancel ends
HANG_GUARD_S = 30  # fails a hung test; never a timing assertion
WRITES = 5


def worker_pids(parent: int) -> list[int]:
    text = Path(f"/proc/{parent}/task/{parent}/children").read_text()
    return sorted(int(pid) for pid in text.split())


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _hex_address(address: tuple[str, int]) -> str:
    host, port = address
    packed = bytes(int(part) for part in host.split("."))[::-1].hex().upper()
    return f"{packed}:{port:04X}"


def accepting_pid(client: trio.socket.SocketType, pids: list[int]) -> int | None:
    """The worker holding the server end of ``client``'s connection (None: not accepted)."""
    server_end = (_hex_address(client.getpeername()), _hex_address(client.getsockname()))
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    inodes = {row[9] for row in rows if (row[1], row[2]) == server_end}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    return None


class Connection:
    """One keep-alive HTTP/1.1 connection (h11), to know which worker serves it."""

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self.conn = h11.Connection(h11.CLIENT)

    async def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        fields = [("Host", self.host), ("Content-Length", str(len(body))), *headers.items()]
        data = self.conn.send(h11.Request(method=method, target=target, headers=fields))
        data += self.conn.send(h11.Data(data=body)) if body else b""
        data += self.conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        status, out = 0, b""
        with trio.fail_after(HANG_GUARD_S):
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    self.conn.receive_data(await self.stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    out += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self.conn.start_next_cycle()
                    return status, out


async def connection_to(url: str, pid: int, pids: list[int], stack: AsyncExitStack) -> Connection:
    """A keep-alive connection served by worker ``pid`` (new connections until one is)."""
    host, port = url.removeprefix("http://").split(":")
    with trio.fail_after(HANG_GUARD_S):
        while True:
            stream = await trio.open_tcp_stream(host, int(port))
            connection = Connection(stream, host)
            status, _ = await connection.request("GET", "/api/health", {})
            assert status == 200
            if accepting_pid(stream.socket, pids) == pid:
                await stack.enter_async_context(stream)
                return connection
            await stream.aclose()


async def stream_on(
    url: str, project_id: str, user: AuthedUser, pid: int, pids: list[int], stack: AsyncExitStack
) -> SSEStream:
    with trio.fail_after(HANG_GUARD_S):
        while True:
            candidate = open_stream(url, project_id, user.headers)
            stream = await candidate.__aenter__()
            if accepting_pid(stream.stream.socket, pids) == pid:
                stack.push_async_exit(candidate)
                return stream
            await candidate.__aexit__(None, None, None)


async def read_events(stream: SSEStream, count: int, kind: str) -> list[tuple[int, Any]]:
    """The next ``count`` events of type ``kind`` as (id, data); other events are skipped."""
    found: list[tuple[int, Any]] = []
    with trio.fail_after(HANG_GUARD_S):
        while len(found) < count:
            message = await stream.next()
            if message.event == kind:
                found.append((int(message.id or 0), json.loads(message.data)))
    return found


async def read_until(stream: SSEStream, kind: str) -> list[tuple[str, Any]]:
    """Every event up to and including the first of type ``kind``, as (type, data)."""
    events: list[tuple[str, Any]] = []
    with trio.fail_after(HANG_GUARD_S):
        while not events or events[-1][0] != kind:
            message = await stream.next()
            events.append((message.event, json.loads(message.data)))
    return events


async def put_files(connection: Connection, user: AuthedUser, project_id: str, tag: str) -> None:
    for index in range(WRITES):
        target = f"/api/projects/{project_id}/files/{tag}{index}.txt"
        status, body = await connection.request("PUT", target, user.headers, tag.encode())
        assert status == 201, body


async def start_workers(
    nursery: trio.Nursery, backend: BackendConfig, tmp_path: Path, **settings: Any
) -> tuple[ServerProcess, list[int]]:
    log_path = tmp_path / "server.log"
    server = await ServerProcess.start(nursery, backend, log_path, workers=2, **settings)
    with trio.fail_after(HANG_GUARD_S):
        while len(pids := worker_pids(server.process.pid)) < 2:  # noqa: ASYNC110
            await trio.sleep(0.05)
    return server, pids


async def test_events_written_on_one_worker_reach_streams_on_the_other(
    backend: BackendConfig, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        server, (a, b) = await start_workers(nursery, backend, tmp_path)
        try:
            async with AsyncExitStack() as stack, httpx.AsyncClient(base_url=server.url) as client:
                user = await register_user(client)
                project_id = await create_project(client, user)
                on_a = await stream_on(server.url, project_id, user, a, [a, b], stack)
                on_b = await stream_on(server.url, project_id, user, b, [a, b], stack)
                to_a = await connection_to(server.url, a, [a, b], stack)
                to_b = await connection_to(server.url, b, [a, b], stack)

                # Only A writes: nothing local on B could fill B's gap.
                await put_files(to_a, user, project_id, "a")
                seen_b = await read_events(on_b, WRITES, "file.changed")
                await put_files(to_b, user, project_id, "b")
                seen_a = await read_events(on_a, 2 * WRITES, "file.changed")
                seen_b += await read_events(on_b, WRITES, "file.changed")

                assert [data["path"] for _, data in seen_a] == [
                    *(f"a{i}.txt" for i in range(WRITES)),
                    *(f"b{i}.txt" for i in range(WRITES)),
                ]
                assert seen_b == seen_a  # the same ids, once each, in the same order
                ids = [event_id for event_id, _ in seen_a]
                assert ids == sorted(set(ids))

                # step.delta (live only) of a run executing on A reaches B's stream.
                plan = {"steps": [{"id": "g", "tool": "ai.generate", "args": {"prompt": "hi"}}]}
                body = json.dumps({"project_id": project_id, "plan": plan}).encode()
                headers = {**user.headers, "Content-Type": "application/json"}
                status, text = await to_a.request("POST", "/api/workflow/runs", headers, body)
                assert status == 202, text
                run_id = json.loads(text)["id"]
                deltas = await read_events(on_b, 1, "step.delta")
                assert deltas[0][1]["run_id"] == run_id
                await read_events(on_b, 1, "run.succeeded")

                # Deleting the project on A ends B's stream, after project.deleted.
                target = f"/api/projects/{project_id}"
                status, text = await to_a.request("DELETE", target, user.headers)
                assert status == 204, text
                ending = await on_b.until_end()
                assert [message.event for message in ending][-1:] == ["project.deleted"]
        finally:
            server.ensure_dead()


async def test_cancel_crosses_workers_and_sigterm_drains_both(
    backend: BackendConfig, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        server, (a, b) = await start_workers(
            nursery, backend, tmp_path, offline_latency_ms=NEVER_MS
        )
        try:
            async with AsyncExitStack() as stack, httpx.AsyncClient(base_url=server.url) as client:
                user = await register_user(client)
                project_id = await create_project(client, user)
                on_b = await stream_on(server.url, project_id, user, b, [a, b], stack)
                to_a = await connection_to(server.url, a, [a, b], stack)
                to_b = await connection_to(server.url, b, [a, b], stack)
                plan = {"steps": [{"id": "g", "tool": "ai.generate", "args": {"prompt": "hi"}}]}
                body = json.dumps({"project_id": project_id, "plan": plan}).encode()
                headers = {**user.headers, "Content-Type": "application/json"}
                status, text = await to_a.request("POST", "/api/workflow/runs", headers, body)
                assert status == 202, text
                run_id = json.loads(text)["id"]
                await read_events(on_b, 1, "step.started")

                target = f"/api/workflow/runs/{run_id}/cancel"
                status, text = await to_b.request("POST", target, user.headers)
                assert status == 202, text
                assert json.loads(text)["status"] == "cancelled"
                events = await read_until(on_b, "run.cancelled")
                kinds = [kind for kind, _ in events]
                assert kinds.count("step.cancelled") == 1, kinds
                assert events[-1][1]["run_id"] == run_id
                status, text = await to_a.request("GET", f"/api/workflow/runs/{run_id}", headers)
                step = json.loads(text)["steps"][0]
                assert (step["status"], step["error"]["reason"]) == ("cancelled", "user")

                server.terminate()
                with trio.fail_after(HANG_GUARD_S):
                    await on_b.until_end()  # the stream ends cleanly: the worker drains
                    await server.process.wait()
            assert server.process.returncode == 0, server.log()
            assert not alive(a)
            assert not alive(b)
            assert server.log().count("shutting down: streams end") == 2
        finally:
            server.ensure_dead()


def test_transient_payload_round_trips_and_old_payloads_still_parse() -> None:
    data = json.dumps({"type": "step.delta", "text": "a:b\nc", "run_id": "r1"})
    note = pgchannel.Transient("p1", data)
    assert pgchannel.parse(pgchannel.encode(note)) == note
    assert pgchannel.parse("p1:7") == pgchannel.Committed("p1", 7)
    assert pgchannel.parse("p1:deleted") == pgchannel.Deleted("p1")
    assert pgchannel.parse("p1:cancel:r1") == pgchannel.Cancel("p1", "r1")
    assert pgchannel.parse("~p1") is None


@pytest.mark.parametrize("value", ["0", "-1", "two", "257"])
def test_bad_worker_count_is_a_bad_setting(value: str, tmp_path: Path) -> None:
    code = main(["serve", "--workers", value, "--data-dir", str(tmp_path), "--port", "0"])
    assert code == ExitCode.BAD_SETTINGS


def test_auto_is_one_worker_per_usable_core() -> None:
    settings = load_settings({"workers": "auto"}, environ={})
    assert settings.worker_count == len(os.sched_getaffinity(0))


async def test_second_worker_does_not_take_over_the_first_workers_runs(
    backend: BackendConfig, tmp_path: Path
) -> None:
    """A run left by a killed server is taken over once (by the first worker, before its
    sibling starts), never again by the sibling while the first worker holds it."""
    async with trio.open_nursery() as nursery:
        old = await ServerProcess.start(
            nursery, backend, tmp_path / "old.log", offline_latency_ms=NEVER_MS
        )
        async with httpx.AsyncClient(base_url=old.url, timeout=30) as client:
            user = await register_user(client)
            project_id = await create_project(client, user)
            plan = {"steps": [{"id": "g", "tool": "ai.generate", "args": {"prompt": "hi"}}]}
            body = {"project_id": project_id, "plan": plan}
            response = await client.post("/api/workflow/runs", json=body, headers=user.headers)
            assert response.status_code == 202, response.text
            replay = {"last_event_id": "0"}
            async with open_stream(old.url, project_id, user.headers, replay) as stream:
                await read_events(stream, 1, "step.started")
        await old.kill()  # the lease stays held by a dead process

        server, _ = await start_workers(
            nursery, backend, tmp_path, offline_latency_ms=NEVER_MS, run_lease_s=30
        )
        try:
            with trio.fail_after(HANG_GUARD_S):
                while server.log().count("stretto listening on") < 2:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            takeovers = server.log().count("taking over from")
            assert takeovers == (1 if backend.database_url is None else 0), server.log()
        finally:
            server.ensure_dead()
