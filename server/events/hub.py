"""The in-process event hub: per-project fan-out of frames to subscribers (``FrameSink``).

``EventHub`` implements ``server.events.publisher.Publisher``. It owns:
- the set of subscribers (``FrameSink``s) per project; ``publish`` offers each frame to
  them without waiting and closes one whose buffer is full (the client reconnects and
  replays);
- one encoding per event: the same ``Frame`` (and its bytes) goes to every subscriber;
- per-project ordering of committed events: the last delivered ``seq`` of each project
  that has subscribers; duplicates are dropped, and an event arriving after a gap is held
  until the gap is filled, by a later ``publish`` or by reading the store's log in
  ``run()`` (the hub's service task, required when a store is given).
Transient events (``step.delta``) bypass ordering and carry no ``seq``; those of one
project published in one scheduler tick go out as one frame (``server.events.coalesce``,
flushed by ``run``; a project's held ones before anything else of it).

Other processes (``--workers N``, other instances): an optional ``relay`` (``HubRelay``) is
told what this process publishes (committed seqs, transient events, closed projects) and
carries it to the others; what they receive goes back in through ``notify_committed``,
``deliver_transient`` and ``end_project``, which never relay again.

Subscribers are ``FrameSink``s (``server.events.sink``): the hub offers them frames and
knows nothing about their queues or sockets. Before the first subscriber's stream has read
the log (``set_baseline``), committed events are held, so that nothing before them is
silently skipped. A failing log read (any exception) is retried with backoff; when the
hub gives up on a gap (the log no longer holds it, or too many events are held), it
tells every subscriber with a gap notice and their streams read it themselves.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import trio

from server.errors import ShuttingDown
from server.events.coalesce import TransientBatch
from server.events.model import run_id_of
from server.events.sink import Frame, FrameSink, Offer
from server.events.sse import encode_stored, encode_transient
from server.events.subscription import Subscription

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from server.events.model import StoredEvent
    from server.store.protocol import Store

__all__ = ["EventHub", "Frame", "FrameSink", "HubRelay", "HubStatistics", "Subscription"]

log = logging.getLogger("stretto.events")

FILL_BATCH = 500  # events read from the log per gap-fill query
FILL_RETRY_MIN_S = 0.1  # first wait after a failed log read; doubles up to the max
FILL_RETRY_MAX_S = 5.0
FAILURE_LOG_EVERY_S = 30.0  # a failing log read is logged at most this often


class HubRelay(Protocol):
    """Carries what this process publishes to the other processes' hubs. Every method is
    called from ``publish`` and must not block nor raise (drop, count and log instead)."""

    def committed(self, project_id: str, seq: int) -> None: ...

    def transient(self, project_id: str, data: Mapping[str, Any]) -> None: ...

    def project_closed(self, project_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class HubStatistics:
    subscribers: int
    projects: int  # projects with at least one subscriber
    published: int  # events handed to publish / publish_transient
    delivered: int  # frames queued to subscribers
    dropped: int  # subscribers closed because their buffer was full
    duplicates: int  # committed events dropped as already delivered
    gap_fills: int  # reads of the log to fill a gap or catch up
    direct_writes: int = 0  # frames a sink wrote through to its client from ``publish``


@dataclass(slots=True)
class _Topic:
    subscribers: dict[FrameSink, None] = field(default_factory=dict)
    last: int | None = None  # highest seq delivered; None until the first one
    pending: dict[int, Frame] = field(default_factory=dict)  # after a gap / before baseline
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
        self.relay: HubRelay | None = None  # other processes (``server.events.siblings``)
        self._transient = TransientBatch(self._deliver_held)
        # While ``_accept`` runs: each topic's frames, offered together when it ends.
        self._outbox: dict[int, tuple[_Topic, list[Frame]]] | None = None

    # -- Publisher ---------------------------------------------------------------------
    def publish(self, events: Sequence[StoredEvent]) -> None:
        """Deliver committed events in ``seq`` order per project, each once. Never blocks."""
        self._published += len(events)
        for event in events:
            self._active.add(event.project_id)
        self._accept(events)
        if self.relay is not None:
            last: dict[str, int] = {}
            for event in events:
                last[event.project_id] = max(event.seq, last.get(event.project_id, 0))
            for project_id, seq in last.items():
                self.relay.committed(project_id, seq)

    def publish_transient(self, project_id: str, data: Mapping[str, Any]) -> None:
        """Deliver a live-only event (no ``seq``) to the project's current subscribers, here
        and (through the ``relay``) in the other processes."""
        if self.relay is not None:
            self.relay.transient(project_id, data)
        self.deliver_transient(project_id, data)

    def deliver_transient(self, project_id: str, data: Mapping[str, Any]) -> None:
        """``publish_transient`` for this process's subscribers only (a relayed event)."""
        self._published += 1
        topic = self._topics.get(project_id)
        if topic is None:
            return
        run_id = run_id_of(str(data.get("type", "")), data)
        encoded = encode_transient(data)
        if not self._transient.hold(project_id, run_id, encoded):
            self._fan_out(topic, Frame(None, run_id, encoded))

    def _deliver_held(self, project_id: str, frame: Frame) -> None:
        topic = self._topics.get(project_id)
        if topic is not None:
            self._fan_out(topic, frame)

    # -- subscribers ------------------------------------------------------------------------
    def open_subscription(self, project_id: str, run_id: str | None = None) -> Subscription:
        """Register a subscriber now; the caller owns it and must ``close`` it (reason
        ``unsubscribed``). Raises ``ShuttingDown`` after ``close_all``."""
        if self._closed:
            raise ShuttingDown("The server is shutting down.")
        subscription = Subscription(project_id, run_id, self._buffer, self.remove_sink)
        self.add_sink(subscription)
        return subscription

    @contextmanager
    def subscribe(self, project_id: str, run_id: str | None = None) -> Iterator[Subscription]:
        """``open_subscription`` for the block; leaving it closes the subscription."""
        subscription = self.open_subscription(project_id, run_id)
        try:
            yield subscription
        finally:
            subscription.close("unsubscribed")
            subscription.receive_channel.close()

    def add_sink(self, sink: FrameSink) -> None:
        """Offer ``sink`` its project's frames until it is closed or ``remove_sink``."""
        topic = self._topics.get(sink.project_id)
        if topic is None:
            topic = self._topics[sink.project_id] = _Topic()
        topic.subscribers[sink] = None

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
        """The project was deleted: end its streams, here and in the other processes."""
        if self.relay is not None:
            self.relay.project_closed(project_id)
        self.end_project(project_id)

    def end_project(self, project_id: str) -> None:
        """End the project's streams in this process (queued frames are still read)."""
        self._transient.flush(project_id)
        topic = self._topics.pop(project_id, None)
        self._fill_wanted.pop(project_id, None)
        if topic is not None:
            for subscription in list(topic.subscribers):
                subscription.close("project_deleted")

    def close_all(self) -> None:
        """Shutdown: end every stream and refuse new subscribers."""
        self._transient.flush_all()
        self._closed = True
        topics, self._topics = self._topics, {}
        self._fill_wanted.clear()
        for topic in topics.values():
            for subscription in list(topic.subscribers):
                subscription.close("shutdown")
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
        """Fill gaps from the store's log, and flush the transient events held in a tick
        (``TransientBatch.run``). Runs until cancelled; needs ``store``.

        Survives any error of the store (the database may be away): the projects it could
        not read are retried with a doubling backoff, and the failure is logged at most
        once per ``FAILURE_LOG_EVERY_S``. Never raises but ``trio.Cancelled``.
        """
        async with trio.open_nursery() as nursery:
            await nursery.start(self._transient.run)
            task_status.started()
            await self._fill_forever()

    async def _fill_forever(self) -> None:
        backoff = 0.0
        last_logged = float("-inf")
        while True:
            await self._fill_wakeup.wait()
            self._fill_wakeup = trio.Event()
            wanted, self._fill_wanted = list(self._fill_wanted), {}
            failed: Exception | None = None
            for index, project_id in enumerate(wanted):
                try:
                    await self._fill(project_id)
                except Exception as exc:  # any driver error: the hub must not end
                    failed = exc
                    for retry in wanted[index:]:
                        self._request_fill(retry)
                    break
            if failed is None:
                backoff = 0.0
                continue
            backoff = min(max(backoff * 2, FILL_RETRY_MIN_S), FILL_RETRY_MAX_S)
            now = trio.current_time()
            if now - last_logged >= FAILURE_LOG_EVERY_S:
                last_logged = now
                log.warning(
                    "event log read failed (retrying every %.1f s at most): %r",
                    FILL_RETRY_MAX_S,
                    failed,
                )
            await trio.sleep(backoff)

    # -- internals -----------------------------------------------------------------------
    def _request_fill(self, project_id: str) -> None:
        if self._store is None or self._closed:
            return
        self._fill_wanted[project_id] = None
        self._fill_wakeup.set()

    async def _fill(self, project_id: str) -> None:
        """Read the project's log after the last delivered seq; raises what the store
        raises (``run`` retries)."""
        assert self._store is not None
        topic = self._topics.get(project_id)
        if topic is None:
            return
        self._gap_fills += 1
        while True:
            after = topic.last
            if after is None:
                # Nothing delivered yet: wait for ``set_baseline`` to say where the
                # subscribers start.
                topic.fill_missed = True
                return
            events = await self._store.events_after(project_id, after, FILL_BATCH)
            if self._topics.get(project_id) is not topic:
                return  # unsubscribed or closed meanwhile
            self._accept(events)
            if len(events) < FILL_BATCH:
                break
        if topic.pending:
            # What the log does not hold (trimmed) is skipped; the streams are told.
            self._skip_gap(project_id, topic)

    def _accept(self, events: Sequence[StoredEvent]) -> None:
        """Deliver committed events; the frames one call delivers to a topic are offered
        together (``offer_many``: one write per stream for one commit's events)."""
        self._outbox = {}
        try:
            self._accept_each(events)
        finally:
            outbox, self._outbox = self._outbox, None
            for topic, frames in outbox.values():
                self._fan_out_all(topic, frames)

    def _accept_each(self, events: Sequence[StoredEvent]) -> None:
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
        self._transient.flush(project_id)  # the transient events published before it first
        if (topic.last is None and self._store is None) or (
            topic.last is not None and frame.seq == topic.last + 1
        ):
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
        self._transient.flush(project_id)
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
        self._transient.flush(project_id)
        first = min(topic.pending)
        if topic.last is not None:
            log.warning("events of project %s missing before seq %d", project_id, first)
            self._fan_out(topic, Frame(None, None, b"", gap_before=first))
        topic.last = first - 1
        self._drain_pending(project_id, topic)

    def _fan_out(self, topic: _Topic, frame: Frame) -> None:
        if self._outbox is not None:  # in ``_accept``: offered with the topic's others
            self._outbox.setdefault(id(topic), (topic, []))[1].append(frame)
            return
        self._fan_out_all(topic, [frame])

    def _fan_out_all(self, topic: _Topic, frames: list[Frame]) -> None:
        if len(frames) == 1:  # the common case (one event per publish): no lists per sink
            frame = frames[0]
            dropped = [
                d
                for sink in topic.subscribers
                if (d := self._count(sink, frame, sink.offer(frame)))
            ]
        else:
            joined = b"".join(f.data for f in frames)
            dropped = []
            for sink in topic.subscribers:
                offers = sink.offer_many(frames, joined)
                for frame, offer in zip(frames, offers, strict=False):
                    if drop := self._count(sink, frame, offer):
                        dropped.append(drop)
        for sink, reason in dropped:
            topic.subscribers.pop(sink, None)
            sink.close(reason)

    def _count(self, sink: FrameSink, frame: Frame, offer: Offer) -> tuple[FrameSink, str] | None:
        """Count one offer's outcome; the sink and why, when the hub must drop it."""
        if offer is Offer.WRITTEN:
            self._delivered += frame.events
            self._direct_writes += frame.events
        elif offer is Offer.QUEUED:
            self._delivered += frame.events
        elif offer is Offer.FULL:
            self._dropped += 1
            return sink, "slow"
        elif offer is Offer.GONE:
            return sink, "disconnected"
        return None

    def remove_sink(self, sink: FrameSink) -> None:
        """Stop offering frames to ``sink`` (idempotent)."""
        topic = self._topics.get(sink.project_id)
        if topic is None:
            return
        topic.subscribers.pop(sink, None)
        if not topic.subscribers and self._topics.get(sink.project_id) is topic:
            del self._topics[sink.project_id]
            self._fill_wanted.pop(sink.project_id, None)
