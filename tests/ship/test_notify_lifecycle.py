"""The real server tells systemd READY=1 once it listens and STOPPING=1 when it stops."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import httpx
import trio

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

    from tests.fixtures.server import StartServer


async def test_ready_after_listening_and_stopping_on_shutdown(
    start_server: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify"
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        await sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        server = await start_server()
        with trio.fail_after(10):
            assert (await sock.recv(4096)).decode().splitlines()[0] == "READY=1"
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/api/ready")).status_code == 200
        await server.stop()
        with trio.fail_after(10):
            assert (await sock.recv(4096)).decode().splitlines()[0] == "STOPPING=1"
