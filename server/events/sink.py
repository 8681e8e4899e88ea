"""The seam between the hub and whatever carries a subscriber's frames to its client.

The hub hands each frame to a ``FrameSink`` with ``offer``, which never blocks and never
raises (like Mercure's subscriber ``Dispatch``: a non-blocking channel send); the hub knows
nothing about queues, tasks or sockets. ``Subscription`` (``server.events.subscription``)
is the sink every stream uses.

A sink may in turn hand frames to a ``DirectWriter``: a non-blocking writer on the
response's connection, provided by the HTTP edge (``server.api.sse_socket``), so that a
frame reaches the socket from ``publish`` with no task switch. This module only states the
shapes; nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True, slots=True)
class Frame:
    """One event as written to the wire, shared by every subscriber that receives it.

    A frame with ``gap_before`` set carries no data: the hub skipped committed events
    before that seq (it could not read them in time); the receiving stream reads them from
    the log itself.
    """

    seq: int | None  # the project's event sequence number; None for transient events
    run_id: str | None
    data: bytes
    gap_before: int | None = None
    events: int = 1  # transient events joined in ``data`` (``server.events.coalesce``)


class Offer(enum.Enum):
    QUEUED = "queued"  # taken into the sink's buffer
    WRITTEN = "written"  # written through to the client (a ``DirectWriter``)
    IGNORED = "ignored"  # not for this sink (another run), or the client has it
    FULL = "full"  # the sink's buffer is full: the hub drops the subscriber (slow)
    GONE = "gone"  # the sink is closed or its connection broke: the hub forgets it


class FrameSink(Protocol):
    """Where the hub delivers one subscriber's frames, in the order it offers them."""

    project_id: str

    def offer(self, frame: Frame) -> Offer:
        """Take ``frame`` without blocking; never raises."""
        ...

    def offer_many(self, frames: Sequence[Frame], joined: bytes) -> list[Offer]:
        """``offer`` each frame in order until one is ``FULL`` or ``GONE`` (the answers so
        far); ``joined`` is their bytes, shared by every sink (one write for them all)."""
        ...

    def close(self, reason: str) -> None:
        """The hub ends this subscriber (``slow``, ``project_deleted``, ``shutdown``)."""
        ...


class WriteResult(enum.Enum):
    WRITTEN = "written"  # the whole frame went to the connection
    HELD = "held"  # part went out; the writer holds the rest until ``write`` flushes it
    REFUSED = "refused"  # nothing written (busy or buffer full): queue the frame instead
    BROKEN = "broken"  # the connection is gone


class DirectWriter(Protocol):
    """A response body writer that bypasses the server's write path (the HTTP edge owns
    the framing, e.g. HTTP/1.1 chunks). One stream task owns it; ``write_nowait`` is only
    called by that stream's subscription while the stream task waits."""

    def start(self) -> bool:
        """True when direct writes may begin (call after the server wrote a first chunk)."""
        ...

    def write_nowait(self, data: bytes) -> WriteResult:
        """Write ``data`` now if the connection takes it; never blocks, never raises."""
        ...

    async def write(self, data: bytes) -> bool:
        """Write a held rest, then ``data``, waiting for the connection; False when it
        broke. Cancellable: a cancelled write leaves the connection unusable (``abort``)."""
        ...

    def abort(self) -> None:
        """Close the connection now (a dropped stream must not keep its socket)."""
        ...

    def close(self) -> None:
        """Release what the writer holds; the server ends the response normally."""
        ...
