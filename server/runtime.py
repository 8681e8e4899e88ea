"""Running the server: services, the service nursery, hypercorn, and graceful shutdown.

``serve`` owns everything the process runs. Inside a trio-asyncio loop (asyncpg and
google-genai need it) it opens the store, migrates, builds the services, starts the
background services in one nursery, then hypercorn. On SIGTERM/SIGINT (or
``Lifecycle.request_shutdown``): readiness turns 503, new runs are refused, every SSE
stream ends, running runs get ``shutdown_grace_s`` to finish and are then cancelled with
reason ``shutdown`` (left resumable), hypercorn stops, and the nursery is cancelled.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
import trio_asyncio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from server.app import create_app
from server.auth.passwords import PasswordHasher
from server.auth.ratelimit import LoginRateLimiter
from server.auth.tokens import TokenService
from server.events.hub import EventHub
from server.events.retention import EventRetention
from server.http import install as install_edge
from server.observability.metrics import Metrics, PoolUsage
from server.ops import sdnotify
from server.services import Lifecycle, Services
from server.store.factory import open_store
from server.store.models import FileLimits
from server.vfs.service import FileService
from server.workflow.supervisor import RunSupervisor
from server.workflow.tools.ai_tools import ai_tools
from server.workflow.tools.registry import default_registry

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from server.config import Settings
    from server.store.protocol import Store

log = logging.getLogger("stretto")

# After the grace period, in-flight HTTP requests get this long before hypercorn cancels them.
HTTP_DRAIN_S = 3.0


@dataclass(frozen=True)
class Running:
    """What ``serve`` reports once it listens."""

    urls: list[str]
    services: Services

    @property
    def url(self) -> str:
        return self.urls[0]


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def build_services(settings: Settings, store: Store, lifecycle: Lifecycle) -> Services:
    """Assemble the process's services (no I/O beyond reading key files)."""
    from server.ai.planner import Planner
    from server.ai.provider import build_provider

    instance_id = settings.instance_id or default_instance_id()
    metrics = Metrics()
    hub = EventHub(buffer=settings.sse_buffer, store=store)
    files = FileService(
        store,
        hub,
        FileLimits(
            max_file_bytes=settings.max_file_bytes,
            max_files=settings.max_files_per_project,
            max_total_bytes=settings.max_project_bytes,
        ),
    )
    tools = default_registry(ai_tools())
    provider = build_provider(settings, observer=metrics)
    planner = Planner(
        provider=provider,
        files=files,
        registry=tools,
        settings=settings,
        limiter=trio.CapacityLimiter(settings.ai_concurrency),
    )
    supervisor = RunSupervisor(
        store=store,
        publisher=hub,
        files=files,
        registry=tools,
        settings=settings,
        planner=planner,
        provider=provider,
        instance_id=instance_id,
        observer=metrics,
    )
    metrics.watch_hub(hub.statistics)
    pool_usage = getattr(store, "pool_usage", None)  # PostgreSQL only: SQLite has no pool
    if pool_usage is not None:
        metrics.watch_database_pool(lambda: PoolUsage(*pool_usage()))
    return Services(
        settings=settings,
        instance_id=instance_id,
        store=store,
        hub=hub,
        files=files,
        tokens=TokenService.from_settings(settings),
        passwords=PasswordHasher(
            time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib
        ),
        login_limiter=LoginRateLimiter(
            max_failures=settings.login_max_failures, window_s=settings.login_window_s
        ),
        tools=tools,
        supervisor=supervisor,
        provider=provider,
        metrics=metrics,
        lifecycle=lifecycle,
    )


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one (every SSE stream holds a socket;
    shells and containers often start at a soft 1024). Returns the soft limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.backlog = settings.backlog
    config.graceful_timeout = HTTP_DRAIN_S
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    return install_edge(config, settings)  # keep-alive, body limits, smuggling: server/http


@asynccontextmanager
async def open_services(settings: Settings, lifecycle: Lifecycle) -> AsyncIterator[Services]:
    """Store opened and migrated, services built; closed on exit."""
    async with open_store(settings) as store:
        applied = await store.migrate()
        if applied:
            log.info("applied migrations %s", applied)
        services = build_services(settings, store, lifecycle)
        try:
            yield services
        finally:
            with trio.CancelScope(shield=True):
                await services.provider.aclose()


async def _start_background(nursery: trio.Nursery, services: Services) -> None:
    settings = services.settings
    await nursery.start(services.hub.run)
    await nursery.start(services.supervisor.run)
    if settings.database_url is not None:
        from server.events.pgbus import PostgresEventBus

        bus = PostgresEventBus(
            database_url=settings.database_url, store=services.store, hub=services.hub
        )
        await nursery.start(bus.run)
    retention = EventRetention.from_settings(settings, services.store, services.hub)
    await nursery.start(retention.run)
    await nursery.start(sdnotify.watchdog)
    await services.supervisor.resume_unfinished()


async def _drain(services: Services, stop_http: trio.Event) -> None:
    """The shutdown sequence, from readiness 503 to hypercorn's stop."""
    lifecycle = services.lifecycle
    await lifecycle.shutdown_requested.wait()
    sdnotify.notify("STOPPING=1")
    log.info("shutting down: streams end, runs get %.1fs", services.settings.shutdown_grace_s)
    services.hub.close_all()
    await services.supervisor.shutdown(services.settings.shutdown_grace_s)
    stop_http.set()


def abort_connections(urls: list[str]) -> int:
    """``shutdown(SHUT_RDWR)`` every accepted TCP connection of this process on the ports
    in ``urls`` (Linux: found through /proc/self/fd). A blocked send on it then fails with
    EPIPE instead of waiting for a client that never reads. Returns how many."""
    from urllib.parse import urlsplit

    ports = {urlsplit(url).port for url in urls}
    aborted = 0
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return 0
    for fd in fds:
        try:
            copy = os.dup(fd)
        except OSError:
            continue
        try:
            sock = socket.socket(fileno=copy)
        except OSError:  # not a socket
            os.close(copy)
            continue
        with sock:
            try:
                if sock.type != socket.SOCK_STREAM or sock.family not in (
                    socket.AF_INET,
                    socket.AF_INET6,
                ):
                    continue
                if sock.getsockname()[1] not in ports:
                    continue
                sock.getpeername()  # listening sockets have no peer: OSError
                sock.shutdown(socket.SHUT_RDWR)
                aborted += 1
            except OSError:
                continue
    return aborted


async def _watch_signals(lifecycle: Lifecycle) -> None:
    """SIGTERM/SIGINT start the graceful shutdown (once). SIGHUP is acknowledged: logs go to
    stdout (journald, Fly), so there is no file to reopen."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("SIGHUP: logs go to stdout, nothing to reopen")
                continue
            log.info("received %s", signal.Signals(signum).name)
            lifecycle.request_shutdown()


async def serve(
    settings: Settings,
    *,
    handle_signals: bool = False,
    lifecycle: Lifecycle | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until shutdown is requested (signal or ``lifecycle.request_shutdown()``).

    Reports ``Running`` through ``task_status`` once it listens and is ready.
    """
    lifecycle = lifecycle or Lifecycle()
    raise_open_files_limit()
    async with trio_asyncio.open_loop(), open_services(settings, lifecycle) as services:
        app = create_app(services)
        stop_http = trio.Event()
        async with trio.open_nursery() as nursery:
            if handle_signals:
                nursery.start_soon(_watch_signals, lifecycle)
            await _start_background(nursery, services)
            http_done = trio.Event()

            async def run_http(task_status: trio.TaskStatus[list[str]]) -> None:
                try:
                    await hypercorn_serve(
                        app,
                        hypercorn_config(settings),
                        shutdown_trigger=stop_http.wait,
                        task_status=task_status,
                    )
                finally:
                    http_done.set()

            urls: list[str] = await nursery.start(run_http)
            nursery.start_soon(_drain, services, stop_http)
            lifecycle.ready = True
            sdnotify.notify("READY=1")
            log.info("stretto listening on %s (%s)", ", ".join(urls), services.store.backend)
            task_status.started(Running(urls, services))
            await stop_http.wait()
            # hypercorn returns once its connections are drained (graceful_timeout); a
            # client that stopped reading can hold a shielded write, so bound the wait.
            with trio.move_on_after(HTTP_DRAIN_S + 2):
                await http_done.wait()
            if not http_done.is_set():
                # hypercorn shields socket writes: a client that stopped reading holds its
                # connection task forever. Shutting its socket down fails that write.
                aborted = abort_connections(urls)
                log.warning("shutdown: aborted %d stalled connection(s)", aborted)
                with trio.move_on_after(HTTP_DRAIN_S):
                    await http_done.wait()
            nursery.cancel_scope.cancel()
