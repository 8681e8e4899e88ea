"""``Subscription``: the ``FrameSink`` of one SSE stream.

It owns the stream's bounded queue (a trio memory channel) and, while the stream's task
waits with nothing queued, the right to write frames straight through a ``DirectWriter``
(``arm``/``disarm``). Which frames may go straight through is the stream's
``ReplayCursor``'s decision (``ReplayCursor.fast``); anything else (a gap, a frame the
connection refused, what follows a partly written frame) is queued, in order, and the
stream's task writes it. ``offer`` never blocks and never raises. ``offer_many`` offers
several frames in order, and writes them straight through in one write when all of them may
go (``ReplayCursor.fast_all``): one send for the events of one commit or one tick.

Closing it as ``slow`` (buffer full) also aborts its connection, if the stream gave one
(``on_drop``): a client that stopped reading must not keep its socket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from server.events.cursor import Fast
from server.events.sink import Frame, Offer, WriteResult

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from server.events.cursor import ReplayCursor
    from server.events.sink import DirectWriter

FLUSH = Frame(None, None, b"")  # queued after a partly written frame: wakes the stream


class Subscription:
    """A subscriber's receive side. ``receive`` raises ``trio.EndOfChannel`` once it was
    closed (``closed_reason``: ``slow``, ``project_deleted``, ``shutdown``,
    ``disconnected`` or ``unsubscribed``) and the frames already queued have been read."""

    __slots__ = (
        "_cursor",
        "_on_close",
        "_send",
        "_writer",
        "closed_reason",
        "direct_writes",
        "on_drop",
        "project_id",
        "receive_channel",
        "run_id",
        "wake",
    )

    def __init__(
        self,
        project_id: str,
        run_id: str | None,
        buffer: int,
        on_close: Callable[[Subscription], None],
    ) -> None:
        self.project_id = project_id
        self.run_id = run_id
        self._send, self.receive_channel = trio.open_memory_channel[Frame](buffer)
        self._on_close = on_close
        self.closed_reason: str | None = None
        self._writer: DirectWriter | None = None  # armed: frames may go straight through
        self._cursor: ReplayCursor | None = None
        self.direct_writes = 0  # frames written straight through so far
        self.on_drop: Callable[[], None] | None = None  # aborts the connection
        # Set while the stream is parked (``server.events.parked``): called when a frame is
        # queued or the subscription closes, since no task waits on the queue then.
        self.wake: Callable[[], None] | None = None

    @property
    def closed_as_slow(self) -> bool:
        return self.closed_reason == "slow"

    async def receive(self) -> Frame:
        return await self.receive_channel.receive()

    def receive_nowait(self) -> Frame:
        return self.receive_channel.receive_nowait()

    def arm(self, writer: DirectWriter, cursor: ReplayCursor) -> None:
        """Let ``offer`` write through ``writer`` what ``cursor`` allows. Only while nothing
        is queued: the caller drained the queue without awaiting since."""
        if self.closed_reason is None:
            self._writer = writer
            self._cursor = cursor

    def disarm(self) -> None:
        """Stop direct writes (they resume on the next ``arm``)."""
        self._writer = None

    def wants(self, frame: Frame) -> bool:
        return self.run_id is None or frame.run_id == self.run_id or frame.gap_before is not None

    # -- FrameSink --------------------------------------------------------------------------
    def offer(self, frame: Frame) -> Offer:
        if not self.wants(frame):
            return Offer.IGNORED
        writer = self._writer
        if writer is not None:
            cursor = self._cursor
            assert cursor is not None
            fast = cursor.fast(frame)
            if fast is Fast.SKIP:
                return Offer.IGNORED
            self._writer = None  # disarmed unless the whole frame is written below
            if fast is Fast.WRITE:
                result = writer.write_nowait(frame.data)
                if result is WriteResult.WRITTEN:
                    cursor.advance(frame)
                    self._writer = writer
                    self.direct_writes += 1
                    return Offer.WRITTEN
                if result is WriteResult.BROKEN:
                    return Offer.GONE  # the hub closes it (``disconnected``)
                if result is WriteResult.HELD:
                    cursor.advance(frame)
                    frame = FLUSH  # the writer holds the rest: the stream's task writes it
        return self._queue(frame)

    def offer_many(self, frames: Sequence[Frame], joined: bytes) -> list[Offer]:
        """``offer`` each of ``frames`` in order, stopping at ``FULL`` or ``GONE``: the
        answers so far. ``joined``: their bytes (the same object for every sink): written in
        one write when every frame may go straight through, else frame by frame."""
        writer, cursor = self._writer, self._cursor
        result = None
        if (
            writer is not None
            and cursor is not None
            and all(map(self.wants, frames))
            and cursor.fast_all(frames)
        ):
            self._writer = None  # disarmed unless they are all written below
            result = writer.write_nowait(joined)
        if result is WriteResult.BROKEN:
            return [Offer.GONE]
        if result is None or result is WriteResult.REFUSED:  # frame by frame (queued if refused)
            offers: list[Offer] = []
            for frame in frames:
                offers.append(self.offer(frame) if result is None else self._queue(frame))
                if offers[-1] in (Offer.FULL, Offer.GONE):
                    break
            return offers
        assert cursor is not None
        assert writer is not None
        for frame in frames:
            cursor.advance(frame)
        if result is WriteResult.HELD:  # the writer holds the rest: the stream's task writes it
            return [*([Offer.WRITTEN] * (len(frames) - 1)), self._queue(FLUSH)]
        self._writer = writer
        self.direct_writes += len(frames)
        return [Offer.WRITTEN] * len(frames)

    def _queue(self, frame: Frame) -> Offer:
        try:
            self._send.send_nowait(frame)
        except trio.WouldBlock:
            return Offer.FULL
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return Offer.GONE
        if self.wake is not None:
            self.wake()
        return Offer.QUEUED

    def close(self, reason: str) -> None:
        """End the subscription (idempotent): queued frames can still be read. The hub
        forgets it; ``slow`` also aborts the connection."""
        if self.closed_reason is None:
            self.closed_reason = reason
        self._writer = None
        self._send.close()
        self._on_close(self)
        if reason == "slow" and self.on_drop is not None:
            self.on_drop()
        if self.wake is not None:
            self.wake()
