"""idle: N SSE streams held open on one project for a while; counts heartbeats (``: ping``)
and streams the server closed, and with a PID the server's RSS per held connection:
(RSS after holding - RSS before connecting) / connected."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import trio

from server.bench.api import ApiClient
from server.bench.scenarios.common import RunContext, Subscriber, open_subscribers
from server.bench.sse import SseRequest
from server.bench.stats import CpuMeter, rounded, rss_kb
from server.bench.wire import count_comments


@dataclass(frozen=True, slots=True)
class IdleOptions:
    conns: int = 100
    hold_s: float = 5.0
    ramp: int = 100
    settle_s: float = 0.5


class _IdleSubscriber(Subscriber):
    __slots__ = ("pings",)

    def __init__(self) -> None:
        super().__init__()
        self.pings = 0

    def on_frames(self, frames: bytes, at: float) -> None:
        self.pings += count_comments(frames)


async def run(ctx: RunContext, opts: IdleOptions) -> dict[str, Any]:
    token, project_id = await ApiClient.project_for(ctx.target)
    request = SseRequest(ctx.target, project_id, token)
    await trio.sleep(opts.settle_s)
    rss_before = rss_kb(ctx.server_pid)
    subs: list[_IdleSubscriber] = [_IdleSubscriber() for _ in range(opts.conns)]
    async with trio.open_nursery() as streams:
        ctx.progress.stage(f"opening {opts.conns} SSE streams")
        opened = await open_subscribers(streams, request, list(subs), ramp=opts.ramp)
        rss_connected = rss_kb(ctx.server_pid)
        ctx.progress.stage(f"holding {len(opened.subscribers)} streams for {opts.hold_s:g} s")
        ctx.progress.track(
            lambda: (
                f"pings {sum(s.pings for s in subs)}  "
                f"closed by server {sum(1 for s in subs if s.closed_by_server)}"
            )
        )
        meter = CpuMeter(ctx.server_pid)
        await trio.sleep(opts.hold_s)
        meter.mark()
        rss_held = rss_kb(ctx.server_pid)
        client_rss = rss_kb(os.getpid())
        ctx.progress.track(None)
        streams.cancel_scope.cancel()
    opened_ids = {id(sub) for sub in opened.subscribers}
    connected = [sub for sub in subs if id(sub) in opened_ids]
    per_conn = (
        rounded((rss_held - rss_before) / len(connected), 1)
        if rss_held is not None and rss_before is not None and connected
        else None
    )
    return {
        "conns": opts.conns,
        "connected": len(connected),
        "connect_failed": opened.failed,
        "connect_error": opened.first_error,
        "closed_by_server": sum(1 for sub in connected if sub.closed_by_server),
        "pings_received": sum(sub.pings for sub in connected),
        "hold_s": opts.hold_s,
        **meter.result(),
        "rss_kb": (
            {"before": rss_before, "connected": rss_connected, "after_hold": rss_held}
            if ctx.server_pid is not None
            else None
        ),
        "rss_per_conn_kb": per_conn,
        "client_rss_kb": client_rss,
    }
