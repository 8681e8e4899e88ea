"""`stretto serve` as a real subprocess (`python -m server serve`) for operations tests.

``ServerProcess`` starts the server with ``STRETTO_*`` settings in its environment, on a free
loopback port, its output in a log file (shown when a test fails), and waits until
``/api/ready`` answers 200. ``kill()`` is ``kill -9``; ``terminate()`` is SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import trio

from tests.fixtures.server import TEST_JWT_SECRET

if TYPE_CHECKING:
    from pathlib import Path

    from tests.fixtures.postgres import BackendConfig

READY_DEADLINE_S = 60  # hang guard for a start (2 cores shared: generous on purpose)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(backend: BackendConfig, port: int, **settings: Any) -> dict[str, str]:
    """The environment of a server process: no inherited STRETTO_*/DATABASE_URL, cheap
    password hashing, text logs, and ``settings`` as ``STRETTO_<NAME>``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRETTO_")}
    env.pop("DATABASE_URL", None)
    env.pop("NOTIFY_SOCKET", None)
    env |= {
        "STRETTO_HOST": "127.0.0.1",
        "STRETTO_PORT": str(port),
        "STRETTO_DATA_DIR": str(backend.data_dir),
        "STRETTO_JWT_SECRET": TEST_JWT_SECRET,
        "STRETTO_LOG_FORMAT": "text",
        "STRETTO_ARGON2_TIME_COST": "1",
        "STRETTO_ARGON2_MEMORY_KIB": str(8 * 1024),
        "STRETTO_DB_POOL_SIZE": "4",
    }
    if backend.database_url is not None:
        env["DATABASE_URL"] = backend.database_url
    env |= {f"STRETTO_{name.upper()}": str(value) for name, value in settings.items()}
    return env


@dataclass
class ServerProcess:
    """One ``python -m server serve`` process started in ``nursery``."""

    process: trio.Process
    url: str
    log_path: Path
    signals: list[str] = field(default_factory=list)

    @classmethod
    async def start(
        cls, nursery: trio.Nursery, backend: BackendConfig, log_path: Path, **settings: Any
    ) -> ServerProcess:
        port = free_port()
        log = log_path.open("ab")
        try:
            run = partial(
                trio.run_process,
                [sys.executable, "-m", "server", "serve"],
                env=server_env(backend, port, **settings),
                check=False,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            process: trio.Process = await nursery.start(run)
        finally:
            log.close()  # the child holds its own copy
        server = cls(process, f"http://127.0.0.1:{port}", log_path)
        await server.wait_ready()
        return server

    async def wait_ready(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            with trio.fail_after(READY_DEADLINE_S):
                while self.process.returncode is None:
                    try:
                        if (await client.get("/api/ready")).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.05)
        raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    async def kill(self) -> None:
        """``kill -9``: nothing runs after it (no final writes, leases left held)."""
        self.process.kill()
        await self.process.wait()

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def ensure_dead(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
