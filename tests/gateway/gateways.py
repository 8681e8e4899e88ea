"""Real gateways (nginx, Caddy) started from the deployment files in ``build/gateway/``.

The files are used as shipped; only their addresses are rewritten to this test's ports:
the listen port, the stretto upstream (127.0.0.1:8080 in the file) and the legacy upstream
(127.0.0.1:3000). A missing gateway binary fails the test when ``CI`` or
``STRETTO_TEST_REQUIRE_GATEWAYS`` is set, and skips it with the reason otherwise.
"""

from __future__ import annotations

import os
import socket
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

GATEWAY_DIR = Path(__file__).resolve().parents[2] / "build" / "gateway"
BINARIES = {"nginx": "/usr/sbin/nginx", "caddy": "/usr/bin/caddy"}
START_GUARD_S = 20  # fails a gateway that never listens; not a timing assertion


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rewrite(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, f"{old!r} not found in the shipped gateway file"
        text = text.replace(old, new)
    return text


def nginx_config(workdir: Path, port: int, stretto: int, legacy: int) -> list[str]:
    site = _rewrite(
        (GATEWAY_DIR / "nginx-hybrid.conf").read_text(),
        {
            "listen 80;": f"listen 127.0.0.1:{port};",
            "server 127.0.0.1:8080;": f"server 127.0.0.1:{stretto};",
            "server 127.0.0.1:3000;": f"server 127.0.0.1:{legacy};",
        },
    )
    (workdir / "site.conf").write_text(site)
    for temp in ("client_body", "proxy"):
        (workdir / temp).mkdir()
    (workdir / "nginx.conf").write_text(
        f"""daemon off;
master_process off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/client_body;
    proxy_temp_path {workdir}/proxy;
    include {workdir}/site.conf;
}}
"""
    )
    return [BINARIES["nginx"], "-p", str(workdir), "-c", str(workdir / "nginx.conf")]


def caddy_config(workdir: Path, port: int, stretto: int, legacy: int) -> list[str]:
    site = _rewrite(
        (GATEWAY_DIR / "Caddyfile").read_text(),
        {
            ":80 {": f"http://127.0.0.1:{port} {{",
            "127.0.0.1:8080": f"127.0.0.1:{stretto}",
            "127.0.0.1:3000": f"127.0.0.1:{legacy}",
        },
    )
    (workdir / "Caddyfile").write_text("{\n\tadmin off\n}\n\n" + site)
    return [
        BINARIES["caddy"], "run", "--adapter", "caddyfile", "--config", str(workdir / "Caddyfile"),
    ]  # fmt: skip


def require_binary(kind: str) -> None:
    if Path(BINARIES[kind]).exists():
        return
    package = "nginx-light" if kind == "nginx" else "caddy"
    reason = f"{kind} is not installed (Debian: apt-get install {package})"
    if os.environ.get("CI") or os.environ.get("STRETTO_TEST_REQUIRE_GATEWAYS"):
        pytest.fail(reason)
    pytest.skip(reason)


@asynccontextmanager
async def running_gateway(
    kind: str, workdir: Path, stretto_port: int, legacy_port: int
) -> AsyncIterator[str]:
    """Start the gateway in front of both upstreams; yield its base URL."""
    require_binary(kind)
    port = free_port()
    build = nginx_config if kind == "nginx" else caddy_config
    argv = build(workdir, port, stretto_port, legacy_port)
    home = str(workdir)
    env = {**os.environ, "HOME": home, "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home}
    log = (workdir / "gateway.log").open("wb")
    process = await trio.lowlevel.open_process(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        with trio.fail_after(START_GUARD_S):
            while True:
                if process.poll() is not None:
                    log.flush()
                    raise AssertionError(f"{kind} exited: {(workdir / 'gateway.log').read_text()}")
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                except OSError:
                    await trio.sleep(0.05)
                    continue
                await stream.aclose()
                break
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        with trio.move_on_after(10) as waited:
            await process.wait()
        if waited.cancelled_caught:
            process.kill()
            await process.wait()
        log.close()
