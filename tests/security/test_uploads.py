"""Stalled uploads (issue 11 item 9), through raw sockets.

Uploads that declare 5 MB, send 4.5 MB and go silent: each is dropped after
``body_read_timeout_s`` without a byte; past ``max_inflight_body_bytes`` (declared lengths
of the bodies in flight) a new upload gets 503 with ``Retry-After`` and the contract's JSON
before it sends its body (``Expect: 100-continue`` makes that observable: 100 or 503); once
they are gone the budget is free again (a full upload succeeds) and the server process's
memory is back near its baseline (/proc/<pid>/status of a server subprocess).

Bodies stall before they reach storage: SQLite only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from server.config import MIB
from tests.fixtures.server import create_project, register_user
from tests.ops.process import ServerProcess
from tests.security.rawhttp import RawConnection, assert_error_shape, request

if TYPE_CHECKING:
    from pathlib import Path

    from tests.fixtures.postgres import BackendConfig
    from tests.fixtures.server import StartServer
    from tests.security.conftest import Connect

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

HANG_GUARD_S = 30
DECLARED = 5 * MIB
SENT = DECLARED * 9 // 10
UPLOADS = 12
BUDGET = 8 * DECLARED  # 8 uploads fit, 4 are refused
RSS_SLACK_MIB = 10  # memory back near baseline (one upload is 4.5 MB)


async def test_a_stalled_body_is_dropped_after_the_read_timeout(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(body_read_timeout_s=0.5)
    async with httpx.AsyncClient(base_url=server.url) as client:
        user = await register_user(client)
        pid = await create_project(client, user)
    conn = await connect(server.url)
    with trio.fail_after(HANG_GUARD_S):
        head = request(
            "PUT", f"/api/projects/{pid}/files/a.txt", {**user.headers, "Content-Length": "100"}
        )
        await conn.send(head + b"0123456789")
        assert await conn.wait_closed() == b""
    assert server.services.store is not None


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def start_upload(url: str, path: str, headers: dict[str, str]) -> RawConnection | int:
    """Send an upload's head; the connection when the server asks for the body (100), else
    the refusal's status (after checking its shape)."""
    conn = await RawConnection.open(url)
    extra = {"Content-Length": str(DECLARED), "Expect": "100-continue"}
    await conn.send(request("PUT", path, {**headers, **extra}))
    response = await conn.read_response()
    if response.status == 100:
        return conn
    assert_error_shape(response, 503, "overloaded")
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["connection"] == "close"
    await conn.aclose()
    return response.status


async def test_stalled_uploads_are_bounded_dropped_and_give_memory_back(
    nursery: trio.Nursery, backend: BackendConfig, tmp_path: Path
) -> None:
    server = await ServerProcess.start(
        nursery,
        backend,
        tmp_path / "server.log",
        body_read_timeout_s=2,
        max_inflight_body_bytes=BUDGET,
        max_file_bytes=DECLARED,
    )
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=HANG_GUARD_S) as client:
            user = await register_user(client)
            pid = await create_project(client, user)
            path = f"/api/projects/{pid}/files/big.bin"
            # One full upload first, so that the baseline includes its one-off allocations.
            put = await client.put(path, content=b"x" * DECLARED, headers=user.headers)
            assert put.status_code == 201, put.text
            baseline = rss_mib(server.process.pid)
            body = b"y" * SENT
            with trio.fail_after(HANG_GUARD_S):
                outcomes = [
                    await start_upload(server.url, path, user.headers) for _ in range(UPLOADS)
                ]
                admitted = [c for c in outcomes if isinstance(c, RawConnection)]
                assert len(admitted) == BUDGET // DECLARED
                assert outcomes.count(503) == UPLOADS - len(admitted)
                for conn in admitted:
                    await conn.send(body)  # ... and then silence
                held = rss_mib(server.process.pid)
                for conn in admitted:  # the server drops each one
                    assert await conn.wait_closed() == b""
                    await conn.aclose()
                while rss_mib(server.process.pid) > baseline + RSS_SLACK_MIB:  # noqa: ASYNC110
                    await trio.sleep(0.1)
            assert held > baseline + RSS_SLACK_MIB  # the test did make the server hold bodies
            # The budget is free again.
            put = await client.put(path, content=b"z" * DECLARED, headers=user.headers)
            assert put.status_code == 200, put.text
    finally:
        server.terminate()


async def test_a_chunked_body_past_the_budget_is_dropped_and_the_budget_freed(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(max_inflight_body_bytes=64 * 1024)
    async with httpx.AsyncClient(base_url=server.url) as client:
        user = await register_user(client)
        pid = await create_project(client, user)
        path = f"/api/projects/{pid}/files/a.bin"
        conn = await connect(server.url)
        with trio.fail_after(HANG_GUARD_S):
            await conn.send(request("PUT", path, {**user.headers, "Transfer-Encoding": "chunked"}))
            chunk = b"%x\r\n%s\r\n" % (16 * 1024, b"c" * 16 * 1024)
            try:
                for _ in range(8):  # 128 KiB, twice the budget; never terminated
                    await conn.send(chunk)
            except trio.BrokenResourceError:
                pass  # dropped while sending
            await conn.wait_closed()
        put = await client.put(path, content=b"x" * 60_000, headers=user.headers)
        assert put.status_code == 201, put.text
