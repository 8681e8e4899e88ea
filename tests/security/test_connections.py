"""Connections always end (issue 12 item 4), through raw sockets.

Every connection has an idle deadline after every response and from accept; ``Connection:
close`` is honoured; an early response (401/413 before the body was read) closes the
connection, so the next request is answered or refused, never left hanging; ``HEAD`` on an
SSE route returns its head and frees the connection; and no descriptor outlives its client
(counted in /proc/<pid>/fd of a server subprocess).

Connection handling does not touch storage: SQLite only.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from tests.fixtures.server import create_project, register_user
from tests.ops.process import ServerProcess
from tests.security.rawhttp import RawConnection, assert_error_shape, request

if TYPE_CHECKING:
    from pathlib import Path

    from tests.fixtures.postgres import BackendConfig
    from tests.fixtures.server import RunningServer, StartServer
    from tests.security.conftest import Connect

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

KEEP_ALIVE_S = 0.5
HANG_GUARD_S = 15  # a bound on every wait: a hang fails the test instead of freezing it


async def authed(server: RunningServer) -> tuple[dict[str, str], str]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        user = await register_user(client)
        return user.headers, await create_project(client, user)


async def next_request_is_answered_or_refused(conn: RawConnection) -> None:
    """After an early response: a new request on the connection gets an answer or EOF."""
    try:
        await conn.send(request("GET", "/api/health"))
    except trio.BrokenResourceError:
        return  # closed already
    try:
        response = await conn.read_response()
    except EOFError:
        return
    assert response.status == 200


async def test_idle_connection_closes_from_accept(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(keep_alive_s=KEEP_ALIVE_S)
    conn = await connect(server.url)
    with trio.fail_after(HANG_GUARD_S):
        assert await conn.wait_closed() == b""


@pytest.mark.parametrize("path", ["/api/ready", "/api/health", "/api/projects/{pid}"])
async def test_keep_alive_connection_closes_when_idle_after_each_response(
    start_server: StartServer, connect: Connect, path: str
) -> None:
    server = await start_server(keep_alive_s=KEEP_ALIVE_S)
    headers, pid = await authed(server)
    conn = await connect(server.url)
    with trio.fail_after(HANG_GUARD_S):
        for _ in range(3):  # the connection is reused while the client is active
            await conn.send(request("GET", path.format(pid=pid), headers))
            response = await conn.read_response()
            assert response.status == 200, response.body
            assert "connection" not in response.headers
        assert await conn.wait_closed() == b""


async def test_connection_close_is_honoured(start_server: StartServer, connect: Connect) -> None:
    server = await start_server()  # the default keep-alive (75 s) would outlast the guard
    headers, pid = await authed(server)
    for path in ("/api/ready", f"/api/projects/{pid}", "/api/health"):
        conn = await connect(server.url)
        with trio.fail_after(HANG_GUARD_S):
            await conn.send(request("GET", path, {**headers, "Connection": "close"}))
            assert (await conn.read_response()).status == 200
            assert await conn.wait_closed() == b""


async def test_early_401_closes_instead_of_reading_the_body_as_a_request(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server()
    conn = await connect(server.url)
    with trio.fail_after(HANG_GUARD_S):
        head = request("POST", "/api/projects", {"Content-Length": "1000"})
        await conn.send(head + b'{"name": "x"')  # most of the body never comes
        response = await conn.read_response()
        assert_error_shape(response, 401, "unauthorized")
        assert response.headers["connection"] == "close"
        await next_request_is_answered_or_refused(conn)
        await conn.wait_closed()


async def test_early_413_closes_and_the_next_request_never_hangs(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(max_file_bytes=1000)
    headers, pid = await authed(server)
    conn = await connect(server.url)
    with trio.fail_after(HANG_GUARD_S):
        put = request(
            "PUT", f"/api/projects/{pid}/files/a.txt", {**headers, "Content-Length": "5000"}
        )
        await conn.send(put + b"x" * 100)
        response = await conn.read_response()
        assert_error_shape(response, 413, "too_large")
        assert response.headers["connection"] == "close"
        await next_request_is_answered_or_refused(conn)
        await conn.wait_closed()


async def test_small_body_read_whole_keeps_the_connection(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(keep_alive_s=KEEP_ALIVE_S)
    headers, pid = await authed(server)
    conn = await connect(server.url)
    with trio.fail_after(HANG_GUARD_S):
        for name in ("a.txt", "b.txt"):
            put = request(
                "PUT", f"/api/projects/{pid}/files/{name}", {**headers, "Content-Length": "5"}
            )
            await conn.send(put + b"hello")
            response = await conn.read_response()
            assert response.status == 201, response.body
            assert "connection" not in response.headers


async def test_head_on_a_stream_returns_headers_and_frees_the_connection(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(keep_alive_s=KEEP_ALIVE_S)
    headers, pid = await authed(server)
    conn = await connect(server.url)
    with trio.fail_after(HANG_GUARD_S):
        await conn.send(request("HEAD", f"/api/sse/projects/{pid}", headers))
        response = await conn.read_response(head_only=True)
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        await conn.send(request("GET", "/api/health"))  # the same connection, answered
        assert (await conn.read_response()).status == 200
        assert await conn.wait_closed() == b""
    assert server.services.hub.statistics().subscribers == 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_no_descriptor_outlives_its_client(
    nursery: trio.Nursery, backend: BackendConfig, tmp_path: Path, connect: Connect
) -> None:
    server = await ServerProcess.start(
        nursery, backend, tmp_path / "server.log", keep_alive_s=1, body_read_timeout_s=1
    )
    try:
        pid = server.process.pid
        await trio.sleep(0.5)  # the readiness probe's connection closes
        baseline = open_fds(pid)
        conns = []
        with trio.fail_after(HANG_GUARD_S):
            for i in range(60):
                conn = await connect(server.url)
                if i % 3 == 0:  # unauthenticated, body half sent, then the client leaves
                    head = request("POST", "/api/projects", {"Content-Length": "100"})
                    await conn.send(head + b"{")
                    await conn.read_response()
                    await conn.aclose()
                elif i % 3 == 1:  # a keep-alive client that goes silent (never closes)
                    await conn.send(request("GET", "/api/ready"))
                    await conn.read_response()
                    conns.append(conn)
                else:  # a request head that never ends
                    await conn.send(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
                    conns.append(conn)
            assert open_fds(pid) > baseline  # the server holds the silent ones for now
            while open_fds(pid) > baseline:  # noqa: ASYNC110 (polling another process)
                await trio.sleep(0.1)
    finally:
        server.terminate()


async def test_pipelined_requests_are_all_answered_in_order(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(keep_alive_s=KEEP_ALIVE_S)
    headers, pid = await authed(server)
    paths = ["/api/health", f"/api/projects/{pid}", "/api/ready", "/api/health"]
    conn = await connect(server.url)
    with trio.fail_after(HANG_GUARD_S):
        await conn.send(b"".join(request("GET", path, headers) for path in paths))
        responses = [await conn.read_response() for _ in paths]
        assert [r.status for r in responses] == [200] * len(paths)
        assert responses[1].json()["id"] == pid
        assert await conn.wait_closed() == b""
