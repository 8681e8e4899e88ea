"""The process's services, built once at startup and shared by every request.

``Lifecycle`` is the server's readiness state: ready after migrations, draining after
SIGTERM. ``Services`` is a plain container; ``server.runtime.assembly`` builds it and owns the
nursery its background services live in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from server.fairness import UserCounter

if TYPE_CHECKING:
    from server.ai.provider import ModelProvider
    from server.auth.passwords import PasswordHasher
    from server.auth.ratelimit import LoginGuard
    from server.auth.tickets import TicketService
    from server.auth.tokens import TokenService
    from server.config import Settings
    from server.events.hub import EventHub
    from server.events.parked import ParkedStreams
    from server.events.siblings import SiblingNotifier
    from server.observability.metrics import Metrics
    from server.store.protocol import Store
    from server.vfs.service import FileService
    from server.workflow.supervisor import RunSupervisor
    from server.workflow.tools.registry import ToolRegistry


@dataclass
class Lifecycle:
    """Readiness: ``ready`` once migrations are done; ``draining`` from SIGTERM on."""

    ready: bool = False
    draining: bool = False
    shutdown_requested: trio.Event = field(default_factory=trio.Event)

    def request_shutdown(self) -> None:
        self.draining = True
        self.shutdown_requested.set()


@dataclass
class Services:
    settings: Settings
    instance_id: str
    store: Store
    hub: EventHub
    files: FileService
    tokens: TokenService
    passwords: PasswordHasher
    login_limiter: LoginGuard
    tools: ToolRegistry
    supervisor: RunSupervisor
    provider: ModelProvider
    metrics: Metrics
    lifecycle: Lifecycle
    tickets: TicketService
    user_streams: UserCounter = field(default_factory=UserCounter)  # SSE streams per user
    siblings: SiblingNotifier | None = None  # ``--workers N`` on SQLite: the other workers
    parked: ParkedStreams | None = None  # idle SSE streams served by one task
