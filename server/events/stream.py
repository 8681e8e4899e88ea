"""One SSE stream of a project: subscribe, replay from the log, then live, as bytes.

``event_stream`` is the body of ``GET /api/sse/projects/{id}`` without the HTTP layer. It
subscribes FIRST, then replays the log after the client's ``Last-Event-ID`` (or sends
``reset`` when that id is no longer retained), then writes live frames, skipping what the
replay already sent and filling any gap from the log, so that every committed event is
written exactly once and in order. It writes ``: ping`` when idle, coalesces frames that
are already queued into one write, and ends when the hub closes the subscription (slow
reader, project deleted, shutdown) or the jittered maximum lifetime passes.

Cancellation (the client went away) propagates out of the generator; the subscription is
released by its context manager on the way out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from server.events.model import run_id_of
from server.events.sse import PING_FRAME, RETRY_FRAME, encode_stored, reset_frame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

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
    hub: EventHub, store: Store, project_id: str, options: StreamOptions
) -> AsyncIterator[bytes]:
    """The stream's bytes, chunk by chunk. See the module doc."""
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
            chunk, cursor = _encode_replay(project_id, page, cursor, options.run_id)
            if chunk:
                yield chunk
            if len(page) < REPLAY_PAGE:
                break

        now = trio.current_time()
        end_at = now + jittered_lifetime(options.max_lifetime_s)
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
            out: list[bytes] = []
            for frame in frames:
                if frame.seq is None:
                    out.append(frame.data)
                    continue
                if frame.seq <= cursor:
                    continue  # already replayed
                if frame.seq > cursor + 1 and options.run_id is None:
                    # The hub started after a gap (only right after subscribing): fill it.
                    missing = await store.events_after(project_id, cursor, frame.seq - cursor - 1)
                    out.extend(encode_stored(e) for e in missing if e.seq < frame.seq)
                out.append(frame.data)
                cursor = frame.seq
            if out:
                yield b"".join(out)
                last_write = trio.current_time()
            if ended:
                return


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
