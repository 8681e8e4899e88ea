"""Assembly: the store opened and migrated, the services built, background services started.

``open_services`` is the only place that writes at start-up (migrations, then the JWT secret
when none is configured); ``server.runtime.preflight`` runs before it and writes nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from server.ai.factory import build_provider
from server.auth.passwords import PasswordHasher
from server.auth.ratelimit import LoginGuard
from server.auth.tickets import TicketService
from server.auth.tokens import TokenService
from server.events.hub import EventHub
from server.events.parked import ParkedStreams
from server.events.retention import EventRetention
from server.fairness import FairLimiter
from server.observability.metrics import Metrics, PoolUsage
from server.observability.run_log import RunOutcomeLog
from server.ops import sdnotify
from server.services import Services
from server.store.factory import open_store
from server.store.models import FileLimits
from server.vfs.service import FileService
from server.workflow.supervisor import RunSupervisor
from server.workflow.tools.ai_tools import ai_tools
from server.workflow.tools.defaults import default_registry

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from server.config import Settings
    from server.events.siblings import SiblingNotifier
    from server.runtime.workers import WorkerSlot
    from server.services import Lifecycle
    from server.store.protocol import Store

log = logging.getLogger("stretto")


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def build_services(settings: Settings, store: Store, lifecycle: Lifecycle) -> Services:
    """Assemble the process's services (no I/O beyond reading key files and creating
    ``data_dir/jwt-secret`` when no JWT key is configured)."""
    from server.workflow.planner import Planner

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
            max_user_bytes=settings.max_bytes_per_user,
            history_versions=settings.file_history_versions,
            history_days=settings.file_history_days,
        ),
    )
    tools = default_registry(ai_tools())
    provider = build_provider(settings, observer=metrics)
    planner = Planner(
        provider=provider,
        files=files,
        registry=tools,
        settings=settings,
        limiter=FairLimiter(settings.ai_concurrency),
    )
    supervisor = RunSupervisor(
        store=store,
        publisher=RunOutcomeLog(hub),
        files=files,
        registry=tools,
        settings=settings,
        planner=planner,
        provider=provider,
        instance_id=instance_id,
        observer=metrics,
    )
    metrics.watch_hub(hub.statistics)
    metrics.watch_database_pool(lambda: PoolUsage(*store.pool_usage()))
    return Services(
        settings=settings,
        instance_id=instance_id,
        store=store,
        hub=hub,
        files=files,
        tokens=TokenService.from_settings(settings),
        passwords=PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            max_waiting=settings.password_hash_queue,
        ),
        login_limiter=LoginGuard.from_settings(settings),
        tools=tools,
        supervisor=supervisor,
        provider=provider,
        metrics=metrics,
        lifecycle=lifecycle,
        tickets=TicketService.from_settings(settings),
    )


@asynccontextmanager
async def open_services(
    settings: Settings, lifecycle: Lifecycle, worker: WorkerSlot | None = None
) -> AsyncIterator[Services]:
    """Store opened and migrated, services built; closed on exit. ``worker`` (one of
    ``--workers N`` on SQLite): its sibling notifier carries the hub's events and the
    cancels to the other workers (``start_background`` runs it).

    Raises ``StoreUnavailable`` when the store cannot be opened or migrated.
    """
    async with open_store(settings) as store:
        applied = await store.migrate()
        if applied:
            log.info("applied migrations %s", applied)
        notifier = _sibling_notifier(store, worker)
        services = build_services(settings, store, lifecycle)
        if notifier is not None:
            notifier.attach(services.hub)
            services.siblings = notifier
        try:
            yield services
        finally:
            with trio.CancelScope(shield=True):
                await services.provider.aclose()


def _sibling_notifier(store: Store, worker: WorkerSlot | None) -> SiblingNotifier | None:
    """SQLite with sibling workers: the notifier, installed as the store's ``RunControl``.
    Only the first worker (started alone) may take over leases at its first resume."""
    from server.events.siblings import SiblingNotifier
    from server.store.sqlite import SqliteStore

    if worker is None or worker.inbox is None or not isinstance(store, SqliteStore):
        return None
    notifier = SiblingNotifier(worker.inbox, worker.peers, store)
    store.share_runs(notifier, takeover=worker.index == 0)
    return notifier


async def start_background(nursery: trio.Nursery, services: Services) -> None:
    """Start the background services in ``nursery`` (each reports ready through
    ``nursery.start``), then resume the runs a previous process left unfinished."""
    settings = services.settings
    await nursery.start(services.hub.run)
    parked = ParkedStreams()
    await nursery.start(parked.run)
    services.parked = parked  # idle SSE streams, ended when the nursery is cancelled
    if services.siblings is not None:
        await nursery.start(services.siblings.run)
    await nursery.start(services.tokens.run)  # JWKS URL refresher (no-op without one)
    await nursery.start(services.supervisor.run)
    if settings.database_url is not None:
        from server.events.pgbus import PostgresEventBus

        bus = PostgresEventBus(
            database_url=settings.database_url, store=services.store, hub=services.hub
        )
        services.hub.relay = bus  # step.delta to the other instances and workers
        await nursery.start(bus.run)
    retention = EventRetention.from_settings(settings, services.store, services.hub)
    await nursery.start(retention.run)
    await nursery.start(sdnotify.watchdog)
    await services.supervisor.resume_unfinished()
