"""One SSE stream of a project: replay from the log, then live, as bytes.

``event_stream`` is the body of ``GET /api/sse/projects/{id}`` without the HTTP layer.
``open_event_stream`` subscribes and reads where the stream starts BEFORE the response
headers leave, then hands the subscription to the body; the stream replays the log after
the client's ``Last-Event-ID`` (or sends ``reset`` when that id is no longer retained),
then writes live frames. What to write is the ``ReplayCursor``'s answer (every committed event once,
in order, gaps read from the log); a failed log read is retried with backoff, never
skipped. It writes ``: ping`` when idle, coalesces frames already queued into one write,
and ends when the hub closes the subscription (slow reader, project deleted, shutdown) or
the jittered maximum lifetime passes.

With a ``DirectWriter`` (``server.events.sink``; the HTTP edge provides one for HTTP/1.1)
the live part bypasses the server's write path: once the head and the replay went out
through it, the stream arms its subscription while it waits, and frames the cursor allows
go straight to the connection from ``publish``. This task writes the rest (through the
writer), the pings, and re-arms when its queue is empty. The generator then yields nothing
more and returns at the end, so that the server writes the terminating chunk. A write
still pending at the end of the lifetime aborts the connection (``DirectWriter.abort``).

That live part is ``live_writes`` over a ``Live`` (its state), so that it can move: given a
``Parker`` (``server.events.parked``), an idle stream is handed over instead of waiting, and
the generator returns without closing anything (the parker owns the subscription, the
writer and the user's slot, ``StreamSlot``, from then on; the writer tells the server not
to end the response).

Cancellation (the client went away) propagates out of the generator; the subscription is
closed on the way out. A body never iterated (the request cancelled between the route's
return and the first frame) leaves its subscription to the hub, which drops it as slow
once its buffer fills, or at project deletion or shutdown.
"""

from __future__ import annotations

import enum
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import trio

from server.errors import AppError, NotFound, StoreUnavailable
from server.events.cursor import ReplayCursor
from server.events.sse import PING_FRAME, RETRY_FRAME, reset_frame

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    from server.events.hub import EventHub
    from server.events.model import StoredEvent
    from server.events.sink import DirectWriter, Frame
    from server.events.subscription import Subscription
    from server.store.protocol import Store

log = logging.getLogger("stretto.events")

REPLAY_PAGE = 500  # events read from the log per query while replaying
MAX_COALESCED = 256  # frames joined into one write at most
LIFETIME_JITTER = 0.10
READ_RETRY_MIN_S = 0.1  # first wait after a failed log read; doubles up to the max
READ_RETRY_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class StreamOptions:
    heartbeat_s: float
    max_lifetime_s: float
    run_id: str | None = None
    last_event_id_given: bool = False
    last_event_id: int | None = None  # None with ``given``: unparsable, answered with reset


def jittered_lifetime(max_lifetime_s: float, rng: random.Random | None = None) -> float:
    """``max_lifetime_s`` +-10%, so that streams opened together do not end together."""
    factor = (rng or random).uniform(1 - LIFETIME_JITTER, 1 + LIFETIME_JITTER)
    return max_lifetime_s * factor


def reset_reason(
    given: bool, last_event_id: int | None, first: int, last: int
) -> tuple[int | None, str | None]:
    """(cursor to replay after, None) or (None, reason for a reset).

    ``first``/``last``: the first retained and the last assigned seq of the project.
    """
    if not given:
        return last, None  # a new client: live from now on
    if last_event_id is None:
        return None, "invalid_last_event_id"
    if last_event_id > last:
        return None, "unknown_last_event_id"
    if last_event_id < first - 1:
        return None, "expired"
    return last_event_id, None


class Outcome(enum.Enum):
    """How ``live_writes`` returned."""

    PARKED = "parked"  # a ``Parker`` took the stream over (it owns everything now)
    ENDED = "ended"  # the stream ended: the response may end normally
    GONE = "gone"  # the connection broke or was aborted


class Parker(Protocol):
    """Takes over an idle stream that writes directly (``server.events.parked``)."""

    def park(self, live: Live) -> bool:
        """True: the parker owns ``live`` (its subscription, writer and slot) from now on."""
        ...


class StreamSlot:
    """The user's stream count (``release``, idempotent), released once by whoever ends the
    stream: the body, or a ``Parker`` that took the stream over (``take_over``)."""

    __slots__ = ("__weakref__", "_release")

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def __call__(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def take_over(self) -> Callable[[], None]:
        """The release, which this slot no longer calls."""
        release, self._release = self._release, None
        return release or _nothing


def _nothing() -> None:
    return None


class Live:
    """The live part of a stream that writes through a ``DirectWriter``: what
    ``live_writes`` needs, so that another task (a ``Parker``'s) can go on with it."""

    __slots__ = (
        "cursor",
        "end_at",
        "heartbeat_s",
        "last_write",
        "parker",
        "release",
        "state",
        "store",
        "subscription",
        "writer",
    )

    def __init__(
        self,
        store: Store,
        subscription: Subscription,
        cursor: ReplayCursor,
        writer: DirectWriter,
        heartbeat_s: float,
        end_at: float,
    ) -> None:
        self.store = store
        self.subscription = subscription
        self.cursor = cursor
        self.writer = writer
        self.heartbeat_s = heartbeat_s
        self.end_at = end_at
        self.last_write = trio.current_time()
        self.release: Callable[[], None] = _nothing  # set by a parker that takes it over
        self.parker: Any = None  # the parker's own state
        self.state = 0  # the parker's own state


async def open_event_stream(
    hub: EventHub,
    store: Store,
    project_id: str,
    options: StreamOptions,
    direct: DirectWriter | None = None,
    on_drop: Callable[[], None] | None = None,
    parker: Parker | None = None,
    slot: StreamSlot | None = None,
) -> AsyncGenerator[bytes, None]:
    """Subscribe and read where the stream starts, then return its body (``event_stream``).

    Call it BEFORE the response headers leave: an event committed once the client saw them
    is then delivered. ``on_drop`` (aborting the connection) is called if the hub drops
    the stream as slow. Raises ``NotFound`` (the project is gone), ``ShuttingDown``, or
    ``StoreUnavailable`` (any store error not already an ``AppError``); nothing stays
    subscribed then. The body owns the subscription and ``direct`` from the return on;
    ``parker``/``slot``: see ``event_stream``.
    """
    subscription = hub.open_subscription(project_id, options.run_id)
    subscription.on_drop = on_drop
    try:
        if await store.project_owner(project_id) is None:
            raise NotFound("No such project.")  # deleted since the caller's check
        first, last = await store.event_bounds(project_id)
    except BaseException as exc:
        subscription.close("unsubscribed")
        subscription.receive_channel.close()
        if direct is not None:
            direct.close()
        if isinstance(exc, Exception) and not isinstance(exc, AppError):
            # A driver error the store did not translate: 503, never a 500.
            raise StoreUnavailable() from exc
        raise
    hub.set_baseline(project_id, last)
    return event_stream(store, subscription, options, first, last, direct, parker, slot)


async def event_stream(
    store: Store,
    subscription: Subscription,
    options: StreamOptions,
    first: int,
    last: int,
    direct: DirectWriter | None = None,
    parker: Parker | None = None,
    slot: StreamSlot | None = None,
) -> AsyncGenerator[bytes, None]:
    """The stream's bytes, chunk by chunk. See the module doc. ``first``/``last``: the
    project's first retained and last assigned seq, read after ``subscription`` was made.
    Owns ``subscription`` and ``direct``: both are closed when the generator ends, unless
    ``parker`` took the stream over (then the generator returns without closing them, and
    the parker also owns ``slot``'s release; the response must not be ended by the server:
    ``DirectWriter`` says so)."""
    project_id = subscription.project_id
    parked = False
    try:
        position, reason = reset_reason(
            options.last_event_id_given, options.last_event_id, first, last
        )
        head = [RETRY_FRAME]
        if position is None:
            head.append(reset_frame(project_id, last, reason or "reset"))
            position = last
        cursor = ReplayCursor(project_id, options.run_id, position)
        yield b"".join(head)

        # Replay: every retained event after the cursor, page by page.
        while True:
            page = await _read_log(store, project_id, cursor.position)
            replayed = cursor.page(page, complete=len(page) < REPLAY_PAGE)
            if replayed:
                yield b"".join(replayed)
            if len(page) < REPLAY_PAGE:
                break

        end_at = trio.current_time() + jittered_lifetime(options.max_lifetime_s)
        # Every byte yielded so far has been written by the server: from here on, the
        # stream may write on the connection itself.
        if direct is not None and direct.start():
            live = Live(store, subscription, cursor, direct, options.heartbeat_s, end_at)
            if parker is not None and slot is not None:
                live.release = slot.take_over()
                outcome = await live_writes(live, parker)
                if outcome is Outcome.PARKED:
                    parked = True
                    return
                live.release()
            else:
                await live_writes(live, None)
            return
        last_write = trio.current_time()
        while True:
            frames: list[Frame] = []
            ended = _drain_queued(subscription, frames)
            if not frames and not ended:
                with trio.move_on_at(min(last_write + options.heartbeat_s, end_at)):
                    try:
                        frames.append(await subscription.receive())
                    except trio.EndOfChannel:
                        ended = True
                if frames:
                    ended = ended or _drain_queued(subscription, frames)
            out = await _encode_live(store, project_id, cursor, frames)
            now = trio.current_time()
            if not out and not ended:
                if now >= end_at:
                    return
                if now < last_write + options.heartbeat_s:
                    continue
                out.append(PING_FRAME)
            yield b"".join(out)
            last_write = trio.current_time()
            if ended:
                return
    finally:
        if not parked:
            subscription.close("unsubscribed")
            subscription.receive_channel.close()
            if direct is not None:
                direct.close()


async def live_writes(live: Live, parker: Parker | None) -> Outcome:
    """The live part of a stream through its ``DirectWriter``: frames the subscription
    queued, gaps read from the log, and pings, written by this task; the subscription is
    armed while it waits so that ``publish`` writes the rest straight through. With a
    ``parker``, an idle stream is handed to it instead of waiting (``Outcome.PARKED``).
    Closes nothing: the caller (or the parker) owns the subscription and the writer."""
    subscription = live.subscription
    cursor = live.cursor
    writer = live.writer
    store = live.store
    project_id = subscription.project_id
    while True:
        frames: list[Frame] = []
        ended = _drain_queued(subscription, frames)
        if not frames and not ended:
            written = subscription.direct_writes
            subscription.arm(writer, cursor)  # nothing queued, no await since
            if parker is not None and subscription.closed_reason is None and parker.park(live):
                return Outcome.PARKED
            with trio.move_on_at(min(live.last_write + live.heartbeat_s, live.end_at)):
                try:
                    frames.append(await subscription.receive())
                except trio.EndOfChannel:
                    ended = True
            subscription.disarm()
            if subscription.direct_writes != written:
                live.last_write = trio.current_time()
            if frames:
                ended = ended or _drain_queued(subscription, frames)
        out = await _encode_live(store, project_id, cursor, frames)
        now = trio.current_time()
        if not out and not ended:
            if now >= live.end_at:
                return Outcome.ENDED
            if now < live.last_write + live.heartbeat_s:
                continue
            out.append(PING_FRAME)
        with trio.move_on_at(live.end_at) as lifetime:
            if not await writer.write(b"".join(out)):
                return Outcome.GONE  # the client is gone
        if lifetime.cancelled_caught:
            writer.abort()  # a chunk may be half written: the response cannot end
            return Outcome.GONE
        live.last_write = trio.current_time()
        if ended:
            return Outcome.ENDED


async def _encode_live(
    store: Store, project_id: str, cursor: ReplayCursor, frames: list[Frame]
) -> list[bytes]:
    """The bytes of ``frames`` through ``cursor``, with any gap they reveal read from the
    log (the one step both live loops share)."""
    out: list[bytes] = []
    for frame in frames:
        out.extend(cursor.live(frame))
    while cursor.fill_after is not None:  # a gap: read it from the log
        page = await _read_log(store, project_id, cursor.fill_after)
        out.extend(cursor.page(page, complete=len(page) < REPLAY_PAGE))
    return out


async def _read_log(store: Store, project_id: str, after: int) -> list[StoredEvent]:
    """A page of the log after ``after``; a failed read (any error: the database may be
    away) is retried with a doubling backoff, logged once per stream."""
    delay = READ_RETRY_MIN_S
    logged = False
    while True:
        try:
            return await store.events_after(project_id, after, REPLAY_PAGE)
        except Exception as exc:
            if not logged:
                logged = True
                log.warning("event log read failed for a stream of %s: %r", project_id, exc)
        await trio.sleep(delay)
        delay = min(delay * 2, READ_RETRY_MAX_S)


def _drain_queued(subscription: Subscription, frames: list[Frame]) -> bool:
    """Append frames already queued (up to ``MAX_COALESCED``); True when the channel ended."""
    while len(frames) < MAX_COALESCED:
        try:
            frames.append(subscription.receive_nowait())
        except trio.WouldBlock:
            return False
        except trio.EndOfChannel:
            return True
    return False
