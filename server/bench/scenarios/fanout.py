"""fanout: N subscribers on one project, M file writes at R per second, and for every
(event, subscriber) pair the delivery latency = arrival of the read holding the frame minus the
moment the PUT was issued. Reports lost and duplicate deliveries, PUT latencies, CPU shares and
the server's RSS (with a PID). Writes are open loop: slow answers do not hold back the next."""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass
from typing import Any

import trio

from server.bench.api import ApiClient
from server.bench.errors import BenchError
from server.bench.scenarios.common import (
    RssSampler,
    RunContext,
    Subscriber,
    open_subscribers,
)
from server.bench.sse import SseRequest
from server.bench.stats import CpuMeter, percentiles, rounded, rss_kb

_PATH_RE = re.compile(rb'"path":\s*"bench/(?:x*/)?(\d+)\.txt"')


@dataclass(frozen=True, slots=True)
class FanoutOptions:
    subs: int = 100
    events: int = 100
    rate: float = 100.0
    ramp: int = 100
    drain_s: float = 10.0
    size: int = 128
    stall: int = 0
    pad: int = 0
    reconnect: bool = False


class _Deliveries:
    """Latencies of every (event, subscriber) pair delivered so far, in one flat array."""

    def __init__(self, subs: int, events: int) -> None:
        self.send_at = array("d", bytes(8 * events))
        self.latency_ms = array("d", bytes(8 * subs * events))
        self.delivered = 0
        self.duplicates = 0
        self.last_at = 0.0
        self.events = events


class _FanoutSubscriber(Subscriber):
    __slots__ = ("_book", "_seen")

    def __init__(self, book: _Deliveries) -> None:
        super().__init__()
        self._book = book
        self._seen = bytearray(book.events)

    def on_frames(self, frames: bytes, at: float) -> None:
        super().on_frames(frames, at)
        book, seen = self._book, self._seen
        for match in _PATH_RE.finditer(frames):
            index = int(match.group(1))
            if index >= book.events:
                continue
            if seen[index]:
                book.duplicates += 1
                continue
            seen[index] = 1
            book.latency_ms[book.delivered] = (at - book.send_at[index]) * 1000
            book.delivered += 1
            book.last_at = at


async def run(ctx: RunContext, opts: FanoutOptions) -> dict[str, Any]:
    api = ApiClient(ctx.target)
    try:
        return await _run(ctx, opts, api)
    finally:
        await api.aclose()


async def _run(ctx: RunContext, opts: FanoutOptions, api: ApiClient) -> dict[str, Any]:
    progress = ctx.progress
    project_id = await api.setup_project()
    assert api.token is not None
    request = SseRequest(ctx.target, project_id, api.token)
    prefix = f"bench/{'x' * opts.pad}/" if opts.pad else "bench/"
    book = _Deliveries(opts.subs, opts.events)
    rss_before = rss_kb(ctx.server_pid)
    sampler = RssSampler(ctx.server_pid)
    put_ms: list[float] = []
    put_errors = 0
    first_put_error: str | None = None

    async def put(index: int) -> None:
        nonlocal put_errors, first_put_error
        path = f"/api/projects/{project_id}/files/{prefix}{index}.txt"
        try:
            status, body = await api.request(
                "PUT", path, body=b"x" * opts.size, content_type="application/octet-stream"
            )
        except BenchError as exc:
            put_errors += 1
            first_put_error = first_put_error or str(exc)
            return
        if status in (200, 201):
            put_ms.append((trio.current_time() - book.send_at[index]) * 1000)
        else:
            put_errors += 1
            first_put_error = first_put_error or f"PUT status {status} {body[:120]!r}"

    async with trio.open_nursery() as streams:
        await streams.start(sampler.run)
        progress.stage(f"connecting {opts.subs} subscribers")
        subs: list[Subscriber] = [_FanoutSubscriber(book) for _ in range(opts.subs)]
        started = trio.current_time()
        progress.track(lambda: f"{len(subs)} subscribers requested")
        opened = await open_subscribers(
            streams, request, subs, ramp=opts.ramp, reconnect=opts.reconnect
        )
        connect_s = trio.current_time() - started
        stalled = await open_subscribers(
            streams,
            request,
            [Subscriber() for _ in range(opts.stall)],
            ramp=opts.ramp,
            stall=True,
        )
        if not opened.subscribers:
            raise BenchError(f"no subscriber could connect ({opened.first_error})")
        rss_connected = rss_kb(ctx.server_pid)
        expected = opts.events * len(opened.subscribers)
        progress.stage(f"writing {opts.events} files at {opts.rate:g}/s")
        progress.track(
            lambda: (
                f"PUTs {len(put_ms) + put_errors}/{opts.events}  "
                f"delivered {book.delivered}/{expected}"
            )
        )
        meter = CpuMeter(ctx.server_pid)
        t0 = trio.current_time()
        async with trio.open_nursery() as puts:
            for index in range(opts.events):
                await trio.sleep_until(t0 + index / opts.rate)
                book.send_at[index] = trio.current_time()
                puts.start_soon(put, index)
            last_send = trio.current_time()
        meter.mark()
        deadline = trio.current_time() + opts.drain_s
        seen = book.delivered
        while book.delivered < expected and trio.current_time() < deadline:
            await trio.sleep(0.02)
            if book.delivered != seen:
                seen = book.delivered
                meter.mark()
        progress.track(None)
        streams.cancel_scope.cancel()

    subscribers = opened.subscribers
    server_closes = sum(sub.server_closes for sub in subscribers)
    return {
        "subs": opts.subs,
        "connected": len(subscribers),
        "connect_failed": opened.failed,
        "connect_error": opened.first_error,
        "connect_s": rounded(connect_s),
        "disconnected_by_server": sum(1 for sub in subscribers if sub.closed_by_server),
        "stalled": opts.stall,
        "stalled_connected": len(stalled.subscribers),
        "event_path_bytes": len(f"{prefix}{opts.events - 1}.txt"),
        "events": opts.events,
        "rate_target": opts.rate,
        "rate_achieved": (
            rounded((opts.events - 1) / (last_send - t0), 1)
            if opts.events > 1 and last_send > t0
            else None
        ),
        "expected": expected,
        "delivered": book.delivered,
        "lost": expected - book.delivered,
        "duplicates": book.duplicates,
        "reconnects": server_closes if opts.reconnect else 0,
        "reconnect_failed": sum(1 for sub in subscribers if sub.reconnect_failed),
        "latency_ms": percentiles(book.latency_ms[: book.delivered]),
        "put_ms": percentiles(put_ms),
        "put_errors": put_errors,
        "put_error": first_put_error,
        "delivery_window_s": rounded(max(book.last_at - t0, 0.0)),
        **meter.result(),
        "rss_kb": (
            {
                "before": rss_before,
                "connected": rss_connected,
                "peak": max(sampler.peak or 0, rss_connected or 0),
            }
            if ctx.server_pid is not None
            else None
        ),
    }
