"""What every scenario shares: the run context, subscriber bookkeeping and opening many SSE
streams with a bounded number of handshakes in flight."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from server.bench.errors import BenchError
from server.bench.sse import SseRequest, hold_with_reconnect, subscribe
from server.bench.stats import rss_kb
from server.bench.wire import last_event_id

if TYPE_CHECKING:
    from server.bench.progress import Progress
    from server.bench.target import Target


@dataclass(frozen=True, slots=True)
class RunContext:
    target: Target
    progress: Progress
    server_pid: int | None = None  # the process holding the connections, for RSS and CPU


class Subscriber:
    """One SSE subscription's state; subclasses look at the frames."""

    __slots__ = ("closed_by_server", "last_id", "reconnect_failed", "server_closes")

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.closed_by_server = False
        self.server_closes = 0
        self.reconnect_failed = False

    def on_frames(self, frames: bytes, at: float) -> None:
        event_id = last_event_id(frames)
        if event_id is not None:
            self.last_id = event_id

    def on_server_close(self) -> None:
        self.closed_by_server = True
        self.server_closes += 1

    def on_reconnect_failed(self) -> None:
        self.reconnect_failed = True


@dataclass(slots=True)
class OpenResult:
    subscribers: list[Subscriber]
    failed: int
    first_error: str | None


async def open_subscribers(
    nursery: trio.Nursery,
    request: SseRequest,
    subscribers: list[Subscriber],
    *,
    ramp: int,
    reconnect: bool = False,
    stall: bool = False,
) -> OpenResult:
    """Open one stream per subscriber, at most ``ramp`` handshakes at a time; each stream then
    lives in ``nursery`` (the caller cancels it to close them). Returns the connected ones."""
    connected: list[Subscriber] = []
    failed = 0
    first_error: str | None = None
    queue = iter(subscribers)

    async def worker() -> None:
        nonlocal failed, first_error
        for sub in queue:
            if stall:
                task = functools.partial(_stalled, request)
            else:
                task = functools.partial(
                    hold_with_reconnect,
                    request,
                    sub.on_frames,
                    reconnect=reconnect,
                    last_id=functools.partial(getattr, sub, "last_id"),
                    on_server_close=sub.on_server_close,
                    on_reconnect_failed=sub.on_reconnect_failed,
                )
            try:
                await nursery.start(task)
            except (BenchError, OSError) as exc:
                failed += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
            else:
                connected.append(sub)

    async with trio.open_nursery() as workers:
        for _ in range(max(1, min(ramp, len(subscribers)))):
            workers.start_soon(worker)
    return OpenResult(connected, failed, first_error)


async def _stalled(request: SseRequest, *, task_status: trio.TaskStatus[None]) -> None:
    await subscribe(request, _ignore, stall=True, task_status=task_status)


def _ignore(frames: bytes, at: float) -> None:
    return None


class RssSampler:
    """Peak RSS of a process, sampled every 100 ms by ``run`` (owned by the caller's nursery)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.peak = rss_kb(pid)

    def sample(self) -> int | None:
        value = rss_kb(self.pid)
        if value is not None:
            self.peak = max(self.peak or 0, value)
        return value

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if self.pid is None:
            return
        while True:
            await trio.sleep(0.1)
            self.sample()
