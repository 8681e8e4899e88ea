"""Events across instances on PostgreSQL: one LISTEN connection per process.

The store sends one ``Committed`` notification (``server.events.pgchannel``, the one
file that knows the payloads) per project in every transaction that appends events.
``PostgresEventBus`` listens on a dedicated asyncpg connection (through trio-asyncio)
and tells the hub: the hub reads the events it has not delivered yet from the log
(``EventHub.notify_committed``), so notifications carry only (project, sequence) and a
local event that also comes back as a notification is delivered once. ``Deleted`` ends
that project's streams here; ``Cancel`` (another instance cancels a run) goes to the
store's ``RunControl.deliver_cancel_request`` (the supervisor cancels the run if this
process executes it).

While the connection is down, the bus polls the log of every watched project every
``poll_interval_s`` and reconnects with exponential backoff and jitter.

Transient events (``step.delta``): the bus is the hub's ``HubRelay``. What this process
publishes is queued (bounded: ``SEND_QUEUE``) and sent by the bus's sender task on the LISTEN
connection (``Transient``, one NOTIFY each, so PostgreSQL never folds two equal ones); the
other instances deliver it as is, and the sender ignores its own. Live only, as locally: one
that does not fit the queue or the NOTIFY limit, or is published while the connection is
down, is dropped and counted (``BusStatistics.transient_dropped``). Committed events and
deleted projects need no relay: the store notifies them in its transactions.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
import trio
import trio_asyncio

from server.backoff import Backoff
from server.events.model import EventType, event_data
from server.events.pgchannel import (
    EVENTS_CHANNEL,
    MAX_PAYLOAD,
    Cancel,
    Committed,
    Deleted,
    Transient,
    encode,
    parse,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from server.events.hub import EventHub
    from server.store.protocol import Store

log = logging.getLogger("stretto.events.pgbus")

# Every class asyncpg raises when a connection fails (InternalClientError is not an
# InterfaceError nor a PostgresError: "cannot switch to state 12" on a dying connection).
_DRIVER_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
_LISTEN_ERRORS: tuple[type[Exception], ...] = (*_DRIVER_ERRORS, trio.TooSlowError)
APPLICATION_NAME = "stretto-events"  # how the LISTEN connection shows in pg_stat_activity
SEND_QUEUE = 1024  # transient events waiting for the sender; more are dropped


@dataclass(frozen=True, slots=True)
class BusStatistics:
    connected: bool
    connects: int
    notifications: int
    polls: int
    transient_sent: int = 0
    transient_dropped: int = 0


class PostgresEventBus:
    """The LISTEN side of cross-instance events (see the module doc). A service: ``run``."""

    def __init__(
        self,
        *,
        database_url: str,
        store: Store,
        hub: EventHub,
        poll_interval_s: float = 1.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        health_interval_s: float = 10.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self._url = database_url
        self._store = store
        self._hub = hub
        self._poll_interval_s = poll_interval_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._health_interval_s = health_interval_s
        self._connect_timeout_s = connect_timeout_s
        self._connected = False
        self._connects = 0
        self._notifications = 0
        self._polls = 0
        self._own_pid: int | None = None  # the LISTEN connection's backend
        self._use = trio.Lock()  # one query at a time on the LISTEN connection
        self._outbox, self._queued = trio.open_memory_channel[str](SEND_QUEUE)
        self._transient_sent = 0
        self._transient_dropped = 0

    def statistics(self) -> BusStatistics:
        return BusStatistics(
            self._connected,
            self._connects,
            self._notifications,
            self._polls,
            self._transient_sent,
            self._transient_dropped,
        )

    # -- HubRelay (the hub calls these from ``publish``: never block) ----------------------------
    def committed(self, project_id: str, seq: int) -> None:
        """Nothing to do: the store's transaction notified it."""

    def project_closed(self, project_id: str) -> None:
        """Nothing to do: the store's delete notified it."""

    def transient(self, project_id: str, data: Mapping[str, Any]) -> None:
        if data.get("type") == EventType.PROJECT_DELETED or not self._connected:
            self._transient_dropped += data.get("type") != EventType.PROJECT_DELETED
            return
        payload = encode(Transient(project_id, json.dumps(data, separators=(",", ":"))))
        if len(payload.encode()) > MAX_PAYLOAD:
            self._transient_dropped += 1
            return
        try:
            self._outbox.send_nowait(payload)
        except trio.WouldBlock:
            self._transient_dropped += 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled. Reports started after the first connection attempt,
        successful or not (the server starts anyway and polls meanwhile)."""
        started = False
        failures = 0
        while True:
            connected = await self._connect()
            if not started:
                task_status.started()
                started = True
            if connected is not None:
                connection, lost = connected
                failures = 0
                try:
                    self._connected = True
                    self._own_pid = connection.get_server_pid()
                    self._hub.catch_up_all()  # whatever was committed while we were away
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._send_transient, connection)
                        await self._listen_until_lost(connection, lost)
                        nursery.cancel_scope.cancel()
                finally:
                    self._connected = False
                    connection.terminate()
                log.warning("event listener connection lost; polling until it is back")
            failures += 1
            backoff = Backoff(self._backoff_initial_s, self._backoff_max_s, 0.8, 1.2)
            await self._poll_for(backoff.delay(failures))

    async def _connect(self) -> tuple[Any, trio.Event] | None:
        """A connection LISTENing on the channel, and the event set when it closes."""
        try:
            with trio.fail_after(self._connect_timeout_s):
                connection = await trio_asyncio.aio_as_trio(asyncpg.connect)(
                    self._url,
                    timeout=self._connect_timeout_s,
                    server_settings={"application_name": APPLICATION_NAME},
                )
        except _LISTEN_ERRORS as exc:
            log.warning("event listener cannot connect: %s", type(exc).__name__)
            return None
        lost = trio.Event()
        try:
            connection.add_termination_listener(lambda _connection: lost.set())
            await trio_asyncio.aio_as_trio(connection.add_listener)(EVENTS_CHANNEL, self._on_notify)
        except _DRIVER_ERRORS as exc:
            connection.terminate()
            log.warning("event listener cannot LISTEN: %s", type(exc).__name__)
            return None
        except BaseException:
            connection.terminate()
            raise
        self._connects += 1
        return connection, lost

    async def _listen_until_lost(self, connection: Any, lost: trio.Event) -> None:
        """Return when the connection closes or stops answering the health check."""
        while True:
            with trio.move_on_after(self._health_interval_s):
                await lost.wait()
                return
            try:
                with trio.fail_after(self._connect_timeout_s):
                    async with self._use:
                        await trio_asyncio.aio_as_trio(connection.fetchval)("SELECT 1")
            except _LISTEN_ERRORS:
                return

    async def _send_transient(self, connection: Any) -> None:
        """Send queued transient events on the LISTEN connection until cancelled; a failed
        send drops the event (the health check notices a dead connection)."""
        async for payload in self._queued:
            try:
                with trio.fail_after(self._connect_timeout_s):
                    async with self._use:
                        await trio_asyncio.aio_as_trio(connection.execute)(
                            "SELECT pg_notify($1, $2)", EVENTS_CHANNEL, payload
                        )
                self._transient_sent += 1
            except _LISTEN_ERRORS:
                self._transient_dropped += 1

    async def _poll_for(self, duration: float) -> None:
        deadline = trio.current_time() + duration
        while True:
            self._polls += 1
            self._hub.catch_up_all()
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                return
            await trio.sleep(min(self._poll_interval_s, remaining))

    # -- asyncpg callbacks (run in the trio-asyncio loop, on the trio thread) ------------------
    def _on_notify(self, _connection: Any, pid: int, _channel: str, payload: str) -> None:
        self._notifications += 1
        note = parse(payload)
        if note is None:
            log.warning("ignoring malformed event notification")
        elif isinstance(note, Transient):
            if pid != self._own_pid:  # our own was delivered here when published
                try:
                    data = json.loads(note.data)
                except ValueError:
                    log.warning("ignoring malformed transient event notification")
                    return
                self._hub.deliver_transient(note.project_id, data)
        elif isinstance(note, Cancel):
            control = self._store.run_control()
            if control is not None:
                control.deliver_cancel_request(note.run_id)
        elif isinstance(note, Committed):
            self._hub.notify_committed(note.project_id, note.seq)
        elif isinstance(note, Deleted):
            self._hub.deliver_transient(
                note.project_id, event_data(EventType.PROJECT_DELETED, note.project_id)
            )
            self._hub.end_project(note.project_id)
