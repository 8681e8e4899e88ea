"""One shard of ``stretto bench capacity``: a child process that holds part of the idle SSE
streams (one process may open only ``ulimit -n`` sockets) and watches their heartbeats.

It speaks JSON lines: commands on stdin, one answer line per command on stdout.

- ``{"op": "config", "url", "project_id", "token", "sources": [...], "ramp",
  "connect_timeout_s"}`` -> ``{"ok": true, "fd_limit"}``, first;
- ``{"op": "hold", "n"}`` opens streams until ``n`` were opened in all (failed handshakes
  count), ``ramp`` at a time, round-robin over the source addresses -> ``{"connected",
  "failed", "skipped", "first_error"}`` (after ``GIVE_UP_AFTER`` failures the rest is skipped
  and counted as failed);
- ``{"op": "mark"}`` starts a heartbeat window -> ``{"ok": true}``;
- ``{"op": "report", "limit_s"}`` -> ``{"alive", "closed_by_server", "starved", "max_gap_s",
  "pings", "rss_kb", "cpu_s"}``: a stream is starved when, in the window, more than
  ``limit_s`` passed between two of its frames (or since its last frame).

It exits, closing every stream, at the end of stdin (the coordinator closed it or died).
Owns one nursery holding every stream; cancels it on exit.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import trio

from server.bench.errors import BenchError
from server.bench.scenarios.common import Subscriber, open_subscribers
from server.bench.sse import SseRequest
from server.bench.stats import process_cpu_s, raise_fd_limit, rss_kb
from server.bench.target import parse_target
from server.bench.wire import count_comments

MAX_LINE = 64 * 1024
CHUNK = 500  # streams per source address opened before checking for failures
GIVE_UP_AFTER = 200  # failed handshakes in one step after which the rest is not tried


class WatchedStream(Subscriber):
    """An idle stream that remembers when its last frame came and its longest silence."""

    __slots__ = ("last_at", "pings", "worst_gap")

    def __init__(self) -> None:
        super().__init__()
        self.last_at = trio.current_time()
        self.worst_gap = 0.0
        self.pings = 0

    def on_frames(self, frames: bytes, at: float) -> None:
        self.pings += count_comments(frames)
        self.worst_gap = max(self.worst_gap, at - self.last_at)
        self.last_at = at


class LineReader:
    """Lines from a receive stream (bounded: a longer line is an error)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def readline(self) -> bytes | None:
        """The next line without its newline, or None at the end of the stream."""
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > MAX_LINE:
                raise BenchError("line too long")
            data = await self._stream.receive_some(MAX_LINE)
            if not data:
                return None
            self._buffer += data
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line


class Shard:
    """The streams of one shard and the answers to the coordinator's commands."""

    def __init__(self, nursery: trio.Nursery, config: dict[str, Any]) -> None:
        target = parse_target(str(config["url"]))
        base = SseRequest(
            target,
            str(config["project_id"]),
            str(config["token"]),
            connect_timeout_s=float(config.get("connect_timeout_s", 10.0)),
        )
        sources: list[str | None] = [str(s) for s in config.get("sources") or []] or [None]
        self._requests = [
            SseRequest(base.target, base.project_id, base.token, base.connect_timeout_s, source)
            for source in sources
        ]
        self._ramp = int(config.get("ramp", 100))
        self._nursery = nursery
        self.streams: list[WatchedStream] = []
        self.opened = 0  # handshakes tried, failed ones included
        self.failed = 0

    async def hold(self, n: int) -> dict[str, Any]:
        new = max(0, n - self.opened)
        self.opened += new
        # One batch per source address, all at once; each batch has its share of the ramp.
        by_source: list[list[Subscriber]] = [[] for _ in self._requests]
        for i in range(new):
            by_source[(self.opened - new + i) % len(self._requests)].append(WatchedStream())
        connected: list[Subscriber] = []
        failed = 0
        first_error: str | None = None

        skipped = 0

        async def batch(request: SseRequest, subs: list[Subscriber], ramp: int) -> None:
            # In chunks: past GIVE_UP_AFTER failures (a server out of sockets lets handshakes
            # time out one by one) the rest is not tried, and counts as failed.
            nonlocal failed, first_error, skipped
            for start in range(0, len(subs), CHUNK):
                if failed >= GIVE_UP_AFTER:
                    skipped += len(subs) - start
                    return
                chunk = subs[start : start + CHUNK]
                result = await open_subscribers(self._nursery, request, chunk, ramp=ramp)
                connected.extend(result.subscribers)
                failed += result.failed
                first_error = first_error or result.first_error

        ramp = max(1, self._ramp // len(self._requests))
        async with trio.open_nursery() as batches:
            for request, subs in zip(self._requests, by_source, strict=True):
                if subs:
                    batches.start_soon(batch, request, subs, ramp)
        self.streams += [sub for sub in connected if isinstance(sub, WatchedStream)]
        self.failed += failed + skipped
        return {
            "connected": len(connected),
            "failed": failed + skipped,
            "skipped": skipped,
            "first_error": first_error,
        }

    def mark(self) -> dict[str, Any]:
        for stream in self.streams:
            stream.worst_gap = 0.0
        return {"ok": True}

    def report(self, limit_s: float) -> dict[str, Any]:
        now = trio.current_time()
        alive = [stream for stream in self.streams if not stream.closed_by_server]
        gaps = [max(stream.worst_gap, now - stream.last_at) for stream in alive]
        return {
            "alive": len(alive),
            "closed_by_server": len(self.streams) - len(alive),
            "starved": sum(1 for gap in gaps if gap > limit_s),
            "max_gap_s": round(max(gaps), 2) if gaps else None,
            "pings": sum(stream.pings for stream in self.streams),
            "rss_kb": rss_kb(os.getpid()),
            "cpu_s": process_cpu_s(os.getpid()),
        }


async def serve(stdin: trio.abc.ReceiveStream, stdout: trio.abc.SendStream) -> None:
    """Answer commands until the end of ``stdin``; closes every stream on return."""
    reader = LineReader(stdin)

    async def answer(body: dict[str, Any]) -> None:
        await stdout.send_all(json.dumps(body, separators=(",", ":")).encode() + b"\n")

    async with trio.open_nursery() as nursery:
        shard: Shard | None = None
        while (line := await reader.readline()) is not None:
            command = json.loads(line)
            op = command.get("op")
            try:
                if op == "config":
                    shard = Shard(nursery, command)
                    await answer({"ok": True, "fd_limit": raise_fd_limit()})
                elif shard is None:
                    await answer({"error": "config first"})
                elif op == "hold":
                    await answer(await shard.hold(int(command["n"])))
                elif op == "mark":
                    await answer(shard.mark())
                elif op == "report":
                    await answer(shard.report(float(command["limit_s"])))
                else:
                    await answer({"error": f"unknown op {op!r}"})
            except (BenchError, KeyError, ValueError) as exc:
                await answer({"error": f"{type(exc).__name__}: {exc}"})
        nursery.cancel_scope.cancel()


async def _main() -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    stdout = trio.lowlevel.FdStream(os.dup(sys.stdout.fileno()))
    async with stdin, stdout:
        await serve(stdin, stdout)


def main() -> int:
    """Entry point of the hidden ``stretto bench capacity-shard``."""
    raise_fd_limit()
    try:
        trio.run(_main)
    except KeyboardInterrupt:
        return 130
    return 0
