"""The server's lifecycle: preflight, services, background nursery, HTTP, shutdown.

``serve`` owns everything the process runs. It binds the listen address and checks the data
directory first (``server.runtime.preflight``: nothing is written yet), then, inside a
trio-asyncio loop (asyncpg and google-genai need it), opens and migrates the store, builds
the services (``server.runtime.assembly``), starts the background services in one nursery,
then hypercorn (``server.runtime.http_server``). Shutdown: ``server.runtime.shutdown``.

Raises ``StartupError`` for a bad start (one line and an exit code for the CLI).
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
import trio_asyncio

from server.app import create_app
from server.errors import StoreUnavailable
from server.ops import sdnotify
from server.ops.connections import raise_open_files_limit
from server.runtime.assembly import open_services, start_background
from server.runtime.http_server import serve_http
from server.runtime.preflight import (
    bind_listeners,
    check_data_dir,
    describe_store_failure,
    only_error,
)
from server.runtime.shutdown import drain, wait_http_stopped, watch_signals
from server.services import Lifecycle

if TYPE_CHECKING:
    import socket

    from server.config import Settings
    from server.runtime.workers import WorkerSlot
    from server.services import Services

log = logging.getLogger("stretto")


@dataclass(frozen=True)
class Running:
    """What ``serve`` reports once it listens."""

    urls: list[str]
    services: Services

    @property
    def url(self) -> str:
        return self.urls[0]


async def serve(
    settings: Settings,
    *,
    handle_signals: bool = False,
    lifecycle: Lifecycle | None = None,
    worker: WorkerSlot | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until shutdown is requested (signal or ``lifecycle.request_shutdown()``).

    Reports ``Running`` through ``task_status`` once it listens and is ready. Raises
    ``StartupError`` when the address cannot be bound, the data directory is unusable or
    the store cannot be opened. ``worker``: this process is one of ``--workers N``
    (``server.runtime.workers``): it shares the port and tells its siblings its events.
    """
    lifecycle = lifecycle or Lifecycle()
    raise_open_files_limit()
    with ExitStack() as stack:
        listeners = bind_listeners(settings, reuse_port=worker is not None)
        for sock in listeners:
            stack.callback(sock.close)
        check_data_dir(settings)
        async with trio_asyncio.open_loop():
            try:
                async with open_services(settings, lifecycle, worker) as services:
                    await _run(services, listeners, handle_signals, worker, task_status)
            except (StoreUnavailable, BaseExceptionGroup) as exc:
                failure = only_error(exc, StoreUnavailable)
                if failure is None or lifecycle.ready:
                    raise
                raise describe_store_failure(settings, failure) from None


async def _run(
    services: Services,
    listeners: list[socket.socket],
    handle_signals: bool,
    worker: WorkerSlot | None,
    task_status: trio.TaskStatus[Running],
) -> None:
    settings = services.settings
    lifecycle = services.lifecycle
    app = create_app(services)
    stop_http = trio.Event()
    async with trio.open_nursery() as nursery:
        if handle_signals:
            nursery.start_soon(watch_signals, lifecycle)
        await start_background(nursery, services)
        http_done = trio.Event()

        async def run_http(task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await serve_http(app, settings, listeners, stop_http.wait, task_status=task_status)
            finally:
                http_done.set()

        urls: list[str] = await nursery.start(run_http)
        for sock in listeners:  # hypercorn listens on its own duplicates from here on
            sock.close()
        nursery.start_soon(drain, services, stop_http)
        lifecycle.ready = True
        sdnotify.notify("READY=1")
        where = "" if worker is None else f", worker {worker.index + 1}/{worker.count}"
        log.info("stretto listening on %s (%s%s)", ", ".join(urls), services.store.backend, where)
        task_status.started(Running(urls, services))
        if worker is not None:
            worker.report_ready()
        await stop_http.wait()
        await wait_http_stopped(http_done, urls)
        nursery.cancel_scope.cancel()
