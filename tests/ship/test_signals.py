"""`stretto serve` as a process: systemd notifications, SIGHUP survived, SIGTERM exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from functools import partial
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

if TYPE_CHECKING:
    from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_ready(client: httpx.AsyncClient, process: trio.Process) -> None:
    with trio.fail_after(60):
        while process.returncode is None:
            try:
                if (await client.get("/api/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await trio.sleep(0.1)
    raise AssertionError(f"server exited with {process.returncode} before it was ready")


@pytest.mark.slow
async def test_serve_notifies_survives_sighup_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    notify_path = tmp_path / "notify"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRETTO_")}
    env.pop("DATABASE_URL", None)
    env |= {"NOTIFY_SOCKET": str(notify_path), "STRETTO_PORT": str(port)}
    command = [sys.executable, "-m", "server.cli.main", "serve", "--data-dir", str(tmp_path)]
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        await notify.bind(str(notify_path))
        async with (
            trio.open_nursery() as nursery,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            run = partial(
                trio.run_process, command, env=env, check=False,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            process: trio.Process = await nursery.start(run)
            try:
                await wait_ready(client, process)
                with trio.fail_after(10):
                    assert (await notify.recv(4096)).startswith(b"READY=1")

                process.send_signal(signal.SIGHUP)  # logs go to stdout: nothing to reopen
                assert (await client.get("/api/health")).status_code == 200
                assert process.returncode is None

                process.send_signal(signal.SIGTERM)
                with trio.fail_after(30):
                    assert (await notify.recv(4096)).startswith(b"STOPPING=1")
                    assert await process.wait() == 0
            finally:
                if process.returncode is None:
                    process.kill()
