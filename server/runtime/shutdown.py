"""Graceful shutdown: signals, the drain sequence, and stopping HTTP even under stalled clients.

On SIGTERM/SIGINT (or ``Lifecycle.request_shutdown``): readiness turns 503, new runs are
refused, every SSE stream ends, running runs get ``shutdown_grace_s`` to finish and are then
cancelled with reason ``shutdown`` (left resumable), then hypercorn is told to stop.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

import trio

from server.ops import sdnotify
from server.ops.connections import abort_connections
from server.runtime.http_server import HTTP_DRAIN_S

if TYPE_CHECKING:
    from server.services import Lifecycle, Services

log = logging.getLogger("stretto")


async def watch_signals(lifecycle: Lifecycle) -> None:
    """SIGTERM/SIGINT start the graceful shutdown (once). SIGHUP is acknowledged: logs go to
    stdout (journald, Fly), so there is no file to reopen."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("SIGHUP: logs go to stdout, nothing to reopen")
                continue
            log.info("received %s", signal.Signals(signum).name)
            lifecycle.request_shutdown()


async def drain(services: Services, stop_http: trio.Event) -> None:
    """Wait for a shutdown request, then end streams and runs and set ``stop_http``."""
    lifecycle = services.lifecycle
    await lifecycle.shutdown_requested.wait()
    sdnotify.notify("STOPPING=1")
    log.info("shutting down: streams end, runs get %.1fs", services.settings.shutdown_grace_s)
    services.hub.close_all()
    await services.supervisor.shutdown(services.settings.shutdown_grace_s)
    stop_http.set()


async def wait_http_stopped(http_done: trio.Event, urls: list[str]) -> None:
    """Wait for hypercorn to return after it was told to stop, bounded.

    hypercorn returns once its connections drain (``graceful_timeout``), but it shields
    socket writes: a client that stopped reading holds its connection task for ever.
    Past the bound, those sockets are shut down under it, which fails the write.
    """
    with trio.move_on_after(HTTP_DRAIN_S + 2):
        await http_done.wait()
    if not http_done.is_set():
        aborted = abort_connections(urls)
        log.warning("shutdown: aborted %d stalled connection(s)", aborted)
        with trio.move_on_after(HTTP_DRAIN_S):
            await http_done.wait()
