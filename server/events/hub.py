"""The in-process event hub: per-project fan-out over bounded trio memory channels.

``EventHub`` implements ``server.events.publisher.Publisher``. It owns:
- one bounded memory channel per subscriber; ``publish`` uses ``send_nowait`` and closes a
  subscriber whose buffer is full (the client reconnects and replays): it never waits;
- one encoding per event: the same ``Frame`` (and its bytes) goes to every subscriber;
- per-project ordering of committed events: the last delivered ``seq`` of each project
  that has subscribers; duplicates are dropped, and an event arriving after a gap is held
  until the gap is filled, by a later ``publish`` or by reading the store's log in
  ``run()`` (the hub's service task, required when a store is given).
Transient events (``step.delta``) bypass ordering and carry no ``seq``.

Direct mode (HTTP/1.1 fast path): a subscriber whose stream armed a ``DirectSocket``
(``Subscription.arm_direct``, only while its queue is empty) gets frames written as
HTTP/1.1 chunks straight to its socket from ``publish``, with no task switch. When the
socket takes only part of a frame (or a frame needs the stream's gap filling), the hub
disarms it and queues the rest; the stream's task writes its backlog and re-arms. A
broken socket closes the subscriber (``disconnected``).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from server.errors import AppError, ShuttingDown
from server.events.direct import chunk
from server.events.model import run_id_of
from server.events.sse import encode_stored, encode_transient

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from server.events.direct import DirectSocket
    from server.store.models import StoredEvent
    from server.store.protocol import Store

log = logging.getLogger("stretto.events")

FILL_BATCH = 500  # events read from the log per gap-fill query


@dataclass(frozen=True, slots=True)
class Frame:
    """One event as written to the wire, shared by every subscriber that receives it."""

    seq: int | None  # the project's event sequence number; None for transient events
    run_id: str | None
    data: bytes
    chunked: bool = False  # ``data`` is already HTTP/1.1 chunk bytes (a direct write's rest)


@dataclass(frozen=True, slots=True)
class HubStatistics:
    subscribers: int
    projects: int  # projects with at least one subscriber
    published: int  # events handed to publish / publish_transient
    delivered: int  # frames queued to subscribers
    dropped: int  # subscribers closed because their buffer was full
    duplicates: int  # committed events dropped as already delivered
    gap_fills: int  # reads of the log to fill a gap or catch up
    direct_writes: int = 0  # frames written whole to a socket from ``publish`` (direct mode)


class Subscription:
    """A subscriber's receive side. ``receive`` raises ``trio.EndOfChannel`` once the hub
    closed it (``closed_reason``: ``slow``, ``project_deleted`` or ``shutdown``) and the
    frames already queued have been read."""

    __slots__ = (
        "_armed",
        "_cursor",
        "_direct",
        "_last_direct_write",
        "_send",
        "closed_reason",
        "project_id",
        "receive_channel",
        "run_id",
    )

    def __init__(
        self,
        project_id: str,
        run_id: str | None,
        send: trio.MemorySendChannel[Frame],
        receive: trio.MemoryReceiveChannel[Frame],
    ) -> None:
        self.project_id = project_id
        self.run_id = run_id
        self._send = send
        self.receive_channel = receive
        self.closed_reason: str | None = None
        self._direct: DirectSocket | None = None
        self._armed = False  # the hub may write to ``_direct`` (the queue is empty)
        self._cursor = 0  # last committed seq written (direct mode)
        self._last_direct_write = float("-inf")

    @property
    def closed_as_slow(self) -> bool:
        return self.closed_reason == "slow"

    async def receive(self) -> Frame:
        return await self.receive_channel.receive()

    def receive_nowait(self) -> Frame:
        return self.receive_channel.receive_nowait()

    def arm_direct(self, direct: DirectSocket, cursor: int) -> None:
        """Let the hub write frames straight to ``direct`` (committed ones after ``cursor``).
        Only while nothing is queued: the caller drained the queue without awaiting since."""
        self._direct = direct
        self._cursor = cursor
        self._armed = True

    def disarm_direct(self) -> int:
        """Stop direct writes (they resume on the next ``arm_direct``); returns the last
        committed seq written so far."""
        self._armed = False
        return self._cursor

    @property
    def last_direct_write(self) -> float:
        """``trio.current_time()`` of the hub's last whole direct write."""
        return self._last_direct_write

    def wants(self, frame: Frame) -> bool:
        return self.run_id is None or frame.run_id == self.run_id

    def _close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        self._armed = False
        self._send.close()


@dataclass(slots=True)
class _Topic:
    subscribers: dict[Subscription, None] = field(default_factory=dict)
    last: int | None = None  # highest seq delivered; None until the first one
    pending: dict[int, Frame] = field(default_factory=dict)  # held after a gap
    fill_missed: bool = False  # a fill was asked for before ``last`` was known


class EventHub:
    """In-process fan-out of a project's events to its subscribers. See the module doc."""

    def __init__(self, *, buffer: int, store: Store | None = None, max_pending: int = 1024):
        if buffer < 1:
            raise ValueError("buffer must be positive")
        self._buffer = buffer
        self._store = store
        self._max_pending = max_pending
        self._topics: dict[str, _Topic] = {}
        self._fill_wanted: dict[str, None] = {}
        self._fill_wakeup = trio.Event()
        self._closed = False
        self._active: set[str] = set()  # projects with committed events since last taken
        self._published = 0
        self._delivered = 0
        self._dropped = 0
        self._duplicates = 0
        self._gap_fills = 0
        self._direct_writes = 0

    # -- Publisher ---------------------------------------------------------------------
    def publish(self, events: Sequence[StoredEvent]) -> None:
        """Deliver committed events in ``seq`` order per project, each once. Never blocks."""
        self._published += len(events)
        for event in events:
            self._active.add(event.project_id)
        self._accept(events)

    def publish_transient(self, project_id: str, data: Mapping[str, Any]) -> None:
        """Deliver a live-only event (no ``seq``) to the project's current subscribers."""
        self._published += 1
        topic = self._topics.get(project_id)
        if topic is None:
            return
        event_type = str(data.get("type", ""))
        frame = Frame(None, run_id_of(event_type, data), encode_transient(data))
        self._fan_out(topic, frame)

    # -- subscribers ------------------------------------------------------------------------
    @contextmanager
    def subscribe(self, project_id: str, run_id: str | None = None) -> Iterator[Subscription]:
        """Register a subscriber for the block; raises ``ShuttingDown`` after ``close_all``.

        Leaving the block unregisters it and closes its channel.
        """
        if self._closed:
            raise ShuttingDown("The server is shutting down.")
        send, receive = trio.open_memory_channel[Frame](self._buffer)
        subscription = Subscription(project_id, run_id, send, receive)
        topic = self._topics.get(project_id)
        if topic is None:
            topic = self._topics[project_id] = _Topic()
        topic.subscribers[subscription] = None
        try:
            yield subscription
        finally:
            self._remove(subscription)
            send.close()
            receive.close()

    def set_baseline(self, project_id: str, seq: int) -> None:
        """Tell the hub the project's events up to ``seq`` are known to its subscribers
        (the endpoint read the log after subscribing). Only used while no event has been
        delivered yet, so that a gap right after subscribing is filled from the log."""
        topic = self._topics.get(project_id)
        if topic is not None and topic.last is None:
            topic.last = seq
            self._drain_pending(project_id, topic)
            if topic.fill_missed:
                topic.fill_missed = False
                self._request_fill(project_id)

    def close_project(self, project_id: str) -> None:
        """The project was deleted: end its streams (queued frames are still read)."""
        topic = self._topics.pop(project_id, None)
        self._fill_wanted.pop(project_id, None)
        if topic is not None:
            for subscription in topic.subscribers:
                subscription._close("project_deleted")

    def close_all(self) -> None:
        """Shutdown: end every stream and refuse new subscribers."""
        self._closed = True
        topics, self._topics = self._topics, {}
        self._fill_wanted.clear()
        for topic in topics.values():
            for subscription in topic.subscribers:
                subscription._close("shutdown")
        self._fill_wakeup.set()

    @property
    def closed(self) -> bool:
        """True after ``close_all``: new subscriptions are refused."""
        return self._closed

    def statistics(self) -> HubStatistics:
        return HubStatistics(
            subscribers=sum(len(t.subscribers) for t in self._topics.values()),
            projects=len(self._topics),
            published=self._published,
            delivered=self._delivered,
            dropped=self._dropped,
            duplicates=self._duplicates,
            gap_fills=self._gap_fills,
            direct_writes=self._direct_writes,
        )

    # -- cross-instance and retention hooks ----------------------------------------------------
    def watched_projects(self) -> list[str]:
        """Projects with at least one subscriber here."""
        return list(self._topics)

    def notify_committed(self, project_id: str, seq: int) -> None:
        """Events up to ``seq`` were committed (maybe by another instance): if a subscriber
        here has not seen them, read them from the log (in ``run``)."""
        topic = self._topics.get(project_id)
        if topic is None or (topic.last is not None and seq <= topic.last):
            return
        self._request_fill(project_id)

    def catch_up_all(self) -> None:
        """Read every watched project's log for events not delivered yet (polling)."""
        for project_id in self._topics:
            self._request_fill(project_id)

    def take_active_projects(self) -> set[str]:
        """Projects that committed events since the last call (the retention service)."""
        active, self._active = self._active, set()
        return active

    # -- service -------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fill gaps from the store's log. Runs until cancelled; needs ``store``."""
        task_status.started()
        while True:
            await self._fill_wakeup.wait()
            self._fill_wakeup = trio.Event()
            wanted, self._fill_wanted = list(self._fill_wanted), {}
            for project_id in wanted:
                await self._fill(project_id)

    # -- internals -----------------------------------------------------------------------
    def _request_fill(self, project_id: str) -> None:
        if self._store is None or self._closed:
            return
        self._fill_wanted[project_id] = None
        self._fill_wakeup.set()

    async def _fill(self, project_id: str) -> None:
        assert self._store is not None
        topic = self._topics.get(project_id)
        if topic is None:
            return
        self._gap_fills += 1
        while True:
            after = topic.last
            if after is None:
                # Nothing delivered yet: start at the first held event, if any; otherwise
                # wait for ``set_baseline`` to say where the subscribers start.
                if not topic.pending:
                    topic.fill_missed = True
                    return
                after = min(topic.pending) - 1
                topic.last = after
            try:
                events = await self._store.events_after(project_id, after, FILL_BATCH)
            except AppError as exc:
                log.warning("event log read failed for project %s: %s", project_id, exc)
                events = []
            if self._topics.get(project_id) is not topic:
                return  # unsubscribed or closed meanwhile
            self._accept(events)
            if len(events) < FILL_BATCH:
                break
        if topic.pending:
            # What the log no longer holds (trimmed) is skipped: endpoints reset on their own.
            self._skip_gap(project_id, topic)

    def _accept(self, events: Sequence[StoredEvent]) -> None:
        for event in events:
            topic = self._topics.get(event.project_id)
            if topic is None:
                continue
            if (topic.last is not None and event.seq <= topic.last) or event.seq in topic.pending:
                self._duplicates += 1
                continue
            frame = Frame(event.seq, run_id_of(event.type, event.data), encode_stored(event))
            self._deliver_committed(event.project_id, topic, frame)

    def _deliver_committed(self, project_id: str, topic: _Topic, frame: Frame) -> None:
        assert frame.seq is not None
        if topic.last is None or frame.seq == topic.last + 1:
            self._fan_out(topic, frame)
            topic.last = frame.seq
            if topic.pending:
                self._drain_pending(project_id, topic)
            return
        topic.pending[frame.seq] = frame
        if len(topic.pending) > self._max_pending:
            self._skip_gap(project_id, topic)
        else:
            self._request_fill(project_id)

    def _drain_pending(self, project_id: str, topic: _Topic) -> None:
        assert topic.last is not None
        for seq in [s for s in topic.pending if s <= topic.last]:
            del topic.pending[seq]
            self._duplicates += 1
        while topic.pending and topic.last + 1 in topic.pending:
            frame = topic.pending.pop(topic.last + 1)
            self._fan_out(topic, frame)
            topic.last += 1
        if topic.pending:
            self._request_fill(project_id)

    def _skip_gap(self, project_id: str, topic: _Topic) -> None:
        if not topic.pending:
            return
        log.warning("events of project %s missing before seq %d", project_id, min(topic.pending))
        topic.last = min(topic.pending) - 1
        self._drain_pending(project_id, topic)

    def _fan_out(self, topic: _Topic, frame: Frame) -> None:
        slow: list[Subscription] = []
        gone: list[Subscription] = []
        wire: bytes | None = None  # the frame as one HTTP/1.1 chunk, built once
        now = 0.0
        for subscription in topic.subscribers:
            if not subscription.wants(frame):
                continue
            queued = frame
            if subscription._armed:
                seq = frame.seq
                if seq is not None and seq <= subscription._cursor:
                    continue  # the stream replayed it already
                if (
                    seq is None
                    or subscription.run_id is not None
                    or seq == subscription._cursor + 1
                ):
                    if wire is None:
                        wire = chunk(frame.data)
                        now = trio.current_time()
                    direct = subscription._direct
                    assert direct is not None
                    try:
                        sent = direct.send_some(wire)
                    except OSError:
                        subscription._armed = False
                        subscription._close("disconnected")
                        gone.append(subscription)
                        continue
                    if seq is not None:
                        subscription._cursor = seq
                    if sent == len(wire):
                        self._direct_writes += 1
                        self._delivered += 1
                        subscription._last_direct_write = now
                        continue
                    queued = Frame(None, frame.run_id, wire[sent:], chunked=True)
                # The rest (or a frame after a gap) goes to the queue, in order; the
                # stream's task writes it and re-arms.
                subscription._armed = False
            try:
                subscription._send.send_nowait(queued)
            except trio.WouldBlock:
                slow.append(subscription)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                gone.append(subscription)
            else:
                self._delivered += 1
        for subscription in slow:
            self._dropped += 1
            subscription._close("slow")
            topic.subscribers.pop(subscription, None)
        for subscription in gone:
            topic.subscribers.pop(subscription, None)

    def _remove(self, subscription: Subscription) -> None:
        topic = self._topics.get(subscription.project_id)
        if topic is None:
            return
        topic.subscribers.pop(subscription, None)
        if not topic.subscribers:
            del self._topics[subscription.project_id]
            self._fill_wanted.pop(subscription.project_id, None)
