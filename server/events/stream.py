"""One SSE stream of a project: subscribe, replay from the log, then live, as bytes.

``event_stream`` is the body of ``GET /api/sse/projects/{id}`` without the HTTP layer. It
subscribes FIRST, then replays the log after the client's ``Last-Event-ID`` (or sends
``reset`` when that id is no longer retained), then writes live frames, skipping what the
replay already sent and filling any gap from the log, so that every committed event is
written exactly once and in order. It writes ``: ping`` when idle, coalesces frames that
are already queued into one write, and ends when the hub closes the subscription (slow
reader, project deleted, shutdown) or the jittered maximum lifetime passes.

With a ``DirectSocket`` (an HTTP/1.1 chunked response, see ``server.events.direct``) the
live part skips the server's write path: once the head and the replay went out through it,
the stream arms the subscription and the hub writes frames straight to the socket; this
task only writes what the hub queued (a partly written frame and what followed it), the
pings, and re-arms when its queue is empty. The generator then yields nothing more and
returns at the end, so that the server writes the terminating chunk.

Cancellation (the client went away) propagates out of the generator; the subscription is
released by its context manager on the way out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from server.events.direct import chunk
from server.events.model import run_id_of
from server.events.sse import PING_FRAME, RETRY_FRAME, encode_stored, reset_frame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from server.events.direct import DirectSocket
    from server.events.hub import EventHub, Frame, Subscription
    from server.store.models import StoredEvent
    from server.store.protocol import Store

REPLAY_PAGE = 500  # events read from the log per query while replaying
MAX_COALESCED = 256  # frames joined into one write at most
LIFETIME_JITTER = 0.10


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


async def event_stream(
    hub: EventHub,
    store: Store,
    project_id: str,
    options: StreamOptions,
    direct: DirectSocket | None = None,
) -> AsyncIterator[bytes]:
    """The stream's bytes, chunk by chunk. See the module doc. ``direct`` (owned by the
    caller, closed here) enables direct writes when the response turns out chunked."""
    try:
        if hub.closed:
            return  # shutdown began after the route checked: end the stream, the client retries
        with hub.subscribe(project_id, options.run_id) as subscription:
            if await store.project_owner(project_id) is None:
                return  # deleted between the auth check and the subscription
            first, last = await store.event_bounds(project_id)
            hub.set_baseline(project_id, last)
            cursor, reason = reset_reason(
                options.last_event_id_given, options.last_event_id, first, last
            )
            head = [RETRY_FRAME]
            if cursor is None:
                head.append(reset_frame(project_id, last, reason or "reset"))
                cursor = last
            yield b"".join(head)

            # Replay: every retained event after the cursor, page by page.
            while True:
                page = await store.events_after(project_id, cursor, REPLAY_PAGE)
                if not page:
                    break
                replayed, cursor = _encode_replay(project_id, page, cursor, options.run_id)
                if replayed:
                    yield replayed
                if len(page) < REPLAY_PAGE:
                    break

            now = trio.current_time()
            end_at = now + jittered_lifetime(options.max_lifetime_s)
            # Every byte yielded so far has been written by the server: from here on, this
            # stream may write on the socket itself.
            if direct is not None and direct.start():
                try:
                    await _live_direct(
                        subscription, direct, store, project_id, options, cursor, end_at
                    )
                finally:
                    subscription.disarm_direct()
                return
            last_write = now
            while True:
                frames: list[Frame] = []
                ended = False
                with trio.move_on_at(min(last_write + options.heartbeat_s, end_at)):
                    try:
                        frames.append(await subscription.receive())
                    except trio.EndOfChannel:
                        ended = True
                if not frames and not ended:
                    if trio.current_time() >= end_at:
                        return
                    yield PING_FRAME
                    last_write = trio.current_time()
                    continue
                ended = ended or _drain_queued(subscription, frames)
                out, cursor = await _render(store, project_id, options.run_id, frames, cursor)
                if out:
                    yield b"".join(out)
                    last_write = trio.current_time()
                if ended:
                    return
    finally:
        if direct is not None:
            direct.close()


async def _live_direct(
    subscription: Subscription,
    direct: DirectSocket,
    store: Store,
    project_id: str,
    options: StreamOptions,
    cursor: int,
    end_at: float,
) -> None:
    """The live part in direct mode: write the backlog, arm, sleep until the hub queues
    something, the heartbeat is due, the lifetime ends or the subscription is closed."""
    last_write = trio.current_time()
    while True:
        frames: list[Frame] = []
        ended = _drain_queued(subscription, frames)
        if not frames and not ended:
            subscription.arm_direct(direct, cursor)  # nothing queued, no await since
            with trio.move_on_at(min(last_write + options.heartbeat_s, end_at)):
                try:
                    frames.append(await subscription.receive())
                except trio.EndOfChannel:
                    ended = True
            cursor = subscription.disarm_direct()
            last_write = max(last_write, subscription.last_direct_write)
            if not frames and not ended:
                now = trio.current_time()
                if now >= end_at:
                    return
                if now >= last_write + options.heartbeat_s:
                    if not await direct.send_all(chunk(PING_FRAME)):
                        return  # the client is gone
                    last_write = trio.current_time()
                continue
            ended = ended or _drain_queued(subscription, frames)
        out, cursor = await _render(store, project_id, options.run_id, frames, cursor, chunks=True)
        if out:
            if not await direct.send_all(b"".join(out)):
                return  # the client is gone
            last_write = trio.current_time()
        if ended:
            return


async def _render(
    store: Store,
    project_id: str,
    run_id: str | None,
    frames: list[Frame],
    cursor: int,
    *,
    chunks: bool = False,
) -> tuple[list[bytes], int]:
    """The bytes to write for ``frames`` (and the new cursor): what the replay sent is
    skipped, a gap right after subscribing is filled from the log. With ``chunks``, as
    HTTP/1.1 chunks (a frame's already chunked rest kept as it is)."""
    out: list[bytes] = []
    body: list[bytes] = []
    for frame in frames:
        if frame.chunked:
            if body:
                out.append(chunk(b"".join(body)))
                body = []
            out.append(frame.data)
            continue
        if frame.seq is None:
            body.append(frame.data)
            continue
        if frame.seq <= cursor:
            continue  # already replayed
        if frame.seq > cursor + 1 and run_id is None:
            # The hub started after a gap (only right after subscribing): fill it.
            missing = await store.events_after(project_id, cursor, frame.seq - cursor - 1)
            body.extend(encode_stored(e) for e in missing if e.seq < frame.seq)
        body.append(frame.data)
        cursor = frame.seq
    if not chunks:
        return body, cursor
    if body:
        out.append(chunk(b"".join(body)))
    return out, cursor


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


def _encode_replay(
    project_id: str, page: list[StoredEvent], cursor: int, run_id: str | None
) -> tuple[bytes, int]:
    """A replayed page as one chunk; a hole before it (trimmed meanwhile) becomes a reset."""
    out: list[bytes] = []
    if page[0].seq > cursor + 1:
        out.append(reset_frame(project_id, page[0].seq - 1, "expired"))
    for event in page:
        if run_id is None or run_id_of(event.type, event.data) == run_id:
            out.append(encode_stored(event))
    return b"".join(out), page[-1].seq
