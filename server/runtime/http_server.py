"""hypercorn: its configuration and the task that serves the app.

The one module that knows hypercorn's API, so it is the place to hook or replace its worker.
The listening sockets are bound earlier (``server.runtime.preflight.bind_listeners``, before
anything is written) and handed over as ``fd://`` binds.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from server.http import install as install_edge
from server.runtime import connection_gate
from server.runtime.connection_gate import ConnectionGate

if TYPE_CHECKING:
    import socket
    from collections.abc import Awaitable, Callable

    from quart_trio import QuartTrio

    from server.config import Settings

# After the grace period, in-flight HTTP requests get this long before hypercorn cancels them.
HTTP_DRAIN_S = 3.0


def hypercorn_config(settings: Settings, binds: list[str] | None = None) -> HypercornConfig:
    """The server's hypercorn settings; ``binds`` default to ``host:port`` from settings."""
    config = HypercornConfig()
    config.bind = binds if binds is not None else [f"{settings.host}:{settings.port}"]
    config.backlog = settings.backlog
    config.graceful_timeout = HTTP_DRAIN_S
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    return install_edge(config, settings)  # keep-alive, body limits, smuggling: server/http


async def serve_http(
    app: QuartTrio,
    settings: Settings,
    listeners: list[socket.socket],
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``listeners`` until ``shutdown_trigger`` returns and the connections
    drain (``HTTP_DRAIN_S``). Reports the URLs it serves through ``task_status``.

    hypercorn gets duplicates of the listening sockets and closes them; the caller keeps
    (and closes) the originals.
    """
    binds = [f"fd://{os.dup(sock.fileno())}" for sock in listeners]
    config = hypercorn_config(settings, binds)
    connection_gate.install()  # after anything else that replaces hypercorn's TCPServer
    connection_gate.attach(
        config, ConnectionGate(connection_gate.connection_cap(settings.max_connections))
    )
    await hypercorn_serve(
        app,
        config,
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
    )
