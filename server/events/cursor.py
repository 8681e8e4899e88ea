"""``ReplayCursor``: the one owner of "every committed event once, in order" for a stream.

Pure (no trio, no I/O). A stream feeds it, in any interleaving: pages read from the
project's log (the replay after ``Last-Event-ID``, and gap fills), and live frames from its
subscription (committed, transient, or gap notices from the hub). It answers with the
bytes to write. It remembers ``position``, the last committed seq the client has (written,
or passed over by the ``run_id`` filter), drops what the client has, and holds live frames
that arrive after a gap until the stream has read the gap from the log
(``fill_after``). Until a replay page reaches the end of the log, every live frame is
held. A failed read changes nothing: the stream retries later.

A hole in the log (events trimmed by retention) becomes an ``event: reset`` frame, as in
the contract.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from server.events.model import run_id_of
from server.events.sse import encode_stored, reset_frame

if TYPE_CHECKING:
    from collections.abc import Sequence

    from server.events.model import StoredEvent
    from server.events.sink import Frame


class Fast(enum.Enum):
    """What a live frame needs, asked without changing the cursor (the direct path)."""

    WRITE = "write"  # write it now, then ``advance``
    SKIP = "skip"  # the client has it
    SLOW = "slow"  # it needs the stream's task (a gap, a notice or held frames)


class ReplayCursor:
    """See the module doc. ``page`` and ``live`` return the bytes to write, in order."""

    __slots__ = ("_gap_until", "_held", "position", "project_id", "replaying", "run_id")

    def __init__(self, project_id: str, run_id: str | None, position: int) -> None:
        self.project_id = project_id
        self.run_id = run_id
        self.position = position
        self.replaying = True  # until a page reaches the end of the log
        self._gap_until: int | None = None  # seqs below it are read from the log first
        self._held: list[Frame] = []

    @property
    def fill_after(self) -> int | None:
        """Read the log after this seq (``page`` the result); None when nothing is missing."""
        return self.position if self._gap_until is not None or self.replaying else None

    def page(self, events: Sequence[StoredEvent], *, complete: bool) -> list[bytes]:
        """Events read from the log after ``position`` (in seq order). ``complete``: the
        log holds nothing after the last of them (a short page)."""
        out: list[bytes] = []
        for event in events:
            if event.seq <= self.position:
                continue
            if self._gap_until is not None and event.seq >= self._gap_until:
                complete = True  # the held frames carry on from here
                break
            if event.seq > self.position + 1:
                out.append(reset_frame(self.project_id, event.seq - 1, "expired"))
            if self.run_id is None or run_id_of(event.type, event.data) == self.run_id:
                out.append(encode_stored(event))
            self.position = event.seq
        if self._gap_until is not None and (complete or self.position >= self._gap_until - 1):
            if self.position < self._gap_until - 1:  # the log no longer holds them
                self.position = self._gap_until - 1
                out.append(reset_frame(self.project_id, self.position, "expired"))
            self._gap_until = None
        elif complete:
            self.replaying = False
        if self._gap_until is None and not self.replaying:
            held, self._held = self._held, []
            for frame in held:
                out.extend(self.live(frame))
        return out

    def live(self, frame: Frame) -> list[bytes]:
        """A frame from the subscription."""
        if self.replaying:
            self._held.append(frame)  # gap notices too: the replay may stop short of them
            return []
        if self._gap_until is not None:
            if frame.gap_before is not None:
                self._gap_until = max(self._gap_until, frame.gap_before)
            else:
                self._held.append(frame)
            return []
        if frame.gap_before is not None:
            if frame.gap_before > self.position + 1:
                self._gap_until = frame.gap_before
            return []
        if frame.seq is None:
            return [frame.data]
        if frame.seq <= self.position:
            return []
        if frame.seq > self.position + 1 and self.run_id is None:
            # Unfiltered streams see every seq: a jump is a gap to read from the log.
            self._gap_until = frame.seq
            self._held.append(frame)
            return []
        self.position = frame.seq
        return [frame.data]

    def fast(self, frame: Frame) -> Fast:
        """Whether ``frame`` can be written straight away (see ``Fast``); no change."""
        if self.replaying or self._gap_until is not None or frame.gap_before is not None:
            return Fast.SLOW
        seq = frame.seq
        if seq is None:
            return Fast.WRITE
        if seq <= self.position:
            return Fast.SKIP
        if seq == self.position + 1 or self.run_id is not None:
            return Fast.WRITE
        return Fast.SLOW

    def fast_all(self, frames: Sequence[Frame]) -> bool:
        """Whether ``frames`` can all be written straight away, one after the other (as
        ``fast`` answering ``WRITE`` for each, had the ones before been written); no change."""
        if self.replaying or self._gap_until is not None:
            return False
        position = self.position
        for frame in frames:
            if frame.gap_before is not None:
                return False
            if frame.seq is None:
                continue
            if frame.seq <= position or (frame.seq != position + 1 and self.run_id is None):
                return False
            position = frame.seq
        return True

    def advance(self, frame: Frame) -> None:
        """``frame`` (answered ``Fast.WRITE``) was written."""
        if frame.seq is not None:
            self.position = frame.seq
