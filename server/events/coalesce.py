"""Coalesced transient events: the ``step.delta`` frames of one project published in one
scheduler tick reach each subscriber as one frame, so a stream writes them in one send.

Ten steps streaming at once publish a delta each per tick; sent one by one they cost a
socket write each (~25 us), on the event loop, right when the steps end and their commit
waits. ``TransientBatch`` holds each project's encoded transient events since its last
flush; its ``run`` task (in the hub's service nursery) flushes them once per tick: the
first event held wakes it, and it runs in the scheduler's next batch, after every task
woken with it had its turn. Consecutive events of one run become one ``Frame`` (its bytes
joined, ``events`` counting them), so the ``?run_id=`` filter still applies per frame.

Order: the hub flushes a project's held events before it delivers anything else of that
project (a committed event, a gap notice, the end of its streams), so every subscriber
sees events in the order they were published. Transient events carry no ``seq``: holding
them for a tick changes no cursor and no replay. While ``run`` is not running (a hub
without its service task, or once it ended) nothing is held: ``hold`` answers False and
the hub delivers the event at once. ``run`` flushes what it holds when it ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from server.events.sink import Frame

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence


def combined(held: Sequence[tuple[str | None, bytes]]) -> Iterator[Frame]:
    """The held ``(run_id, bytes)`` in order, consecutive ones of one run joined."""
    start = 0
    for i in range(1, len(held) + 1):
        if i == len(held) or held[i][0] != held[start][0]:
            part = held[start:i]
            yield Frame(None, part[0][0], b"".join(data for _, data in part), events=len(part))
            start = i


class TransientBatch:
    """Holds transient frames per project until the next tick. ``deliver(project_id,
    frame)`` fans a flushed frame out (the hub's); it must not block nor raise."""

    def __init__(self, deliver: Callable[[str, Frame], None]) -> None:
        self._deliver = deliver
        self._held: dict[str, list[tuple[str | None, bytes]]] = {}
        self._wakeup = trio.Event()
        self._running = False

    def hold(self, project_id: str, run_id: str | None, data: bytes) -> bool:
        """Hold an encoded transient event for this tick's flush; False when not running
        (the caller delivers it now)."""
        if not self._running:
            return False
        held = self._held.get(project_id)
        if held is None:
            held = self._held[project_id] = []
            self._wakeup.set()
        held.append((run_id, data))
        return True

    def flush(self, project_id: str) -> None:
        """Deliver the project's held events now (before anything else of the project)."""
        held = self._held.pop(project_id, None)
        if held:
            for frame in combined(held):
                self._deliver(project_id, frame)

    def flush_all(self) -> None:
        for project_id in list(self._held):
            self.flush(project_id)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush once per tick in which something was held, until cancelled; then flush
        what is left and hold nothing more."""
        self._running = True
        task_status.started()
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                self.flush_all()
        finally:
            self._running = False
            self.flush_all()
