"""A raw-socket SSE subscriber on trio: one task and one socket per stream, no per-frame
objects beyond the bytes read, so one process can hold thousands of streams.

``subscribe`` is started with ``nursery.start``: it reports started once the stream's
``retry`` frame was read (the server has subscribed it), then reads until the server ends the
stream or the caller cancels. Handshake failures raise to the starter; after the start it
never raises except Cancelled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from server.bench.conn import RECEIVE_BYTES, open_stream, read_head
from server.bench.errors import BenchError
from server.bench.wire import ChunkedDecoder, FrameSplitter, has_retry, request_bytes

if TYPE_CHECKING:
    from server.bench.target import Target

OnFrames = Callable[[bytes, float], None]
"""Called with whole frames and the monotonic arrival time (trio clock) of the read."""


@dataclass(frozen=True, slots=True)
class SseRequest:
    target: Target
    project_id: str
    token: str
    connect_timeout_s: float = 30.0
    local_address: str | None = None  # source address of the connection (None: the kernel's)

    def head(self, last_event_id: str | None) -> bytes:
        headers = [("Accept", "text/event-stream"), ("Authorization", f"Bearer {self.token}")]
        if last_event_id is not None:
            headers.append(("Last-Event-ID", last_event_id))
        path = self.target.path(f"/api/sse/projects/{self.project_id}")
        return request_bytes("GET", path, self.target.host_header, headers)


async def subscribe(
    request: SseRequest,
    on_frames: OnFrames,
    *,
    last_event_id: str | None = None,
    stall: bool = False,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> bool:
    """Hold one SSE stream. Reports started after the ``retry`` frame was read.

    Returns True when the server ended the stream (end of body, close or reset), which a
    caller may answer by reconnecting. With ``stall`` it stops reading after the start and
    holds the socket until cancelled (a slow client). Raises BenchError or OSError only
    before the start (refused, non-200, timeout)."""
    stream = None
    try:
        with trio.fail_after(request.connect_timeout_s):
            stream = await open_stream(request.target, request.local_address)
            await stream.send_all(request.head(last_event_id))
            buffer = bytearray()
            head = await read_head(stream, buffer)
            if head.status != 200:
                raise BenchError(f"SSE status {head.status}")
            decoder = ChunkedDecoder() if head.chunked else None
            splitter = FrameSplitter()
            pending: bytes | bytearray = bytes(buffer)
            while True:
                now = trio.current_time()
                body = decoder.feed(pending) if decoder is not None else pending
                frames = splitter.feed(body)
                if frames and has_retry(frames):
                    on_frames(frames, now)
                    break
                if frames:
                    on_frames(frames, now)
                if decoder is not None and decoder.done:
                    raise BenchError("SSE stream ended before its retry frame")
                pending = await stream.receive_some(RECEIVE_BYTES)
                if not pending:
                    raise BenchError("SSE stream closed before its retry frame")
    except (trio.TooSlowError, trio.BrokenResourceError) as exc:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        reason = "timeout" if isinstance(exc, trio.TooSlowError) else "connection broken"
        raise BenchError(f"SSE handshake failed: {reason}") from None
    except BaseException:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise
    task_status.started()
    try:
        if stall:
            await trio.sleep_forever()
        return await _read_until_end(stream, decoder, splitter, on_frames)
    finally:
        await trio.aclose_forcefully(stream)


async def _read_until_end(
    stream: trio.abc.Stream,
    decoder: ChunkedDecoder | None,
    splitter: FrameSplitter,
    on_frames: OnFrames,
) -> bool:
    while True:
        try:
            data = await stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, OSError):
            return True
        if not data:
            return True
        now = trio.current_time()
        try:
            body = decoder.feed(data) if decoder is not None else data
        except BenchError:
            return True
        frames = splitter.feed(body)
        if frames:
            on_frames(frames, now)
        if decoder is not None and decoder.done:
            return True


async def hold_with_reconnect(
    request: SseRequest,
    on_frames: OnFrames,
    *,
    reconnect: bool,
    last_id: Callable[[], str | None],
    on_server_close: Callable[[], None],
    on_reconnect_failed: Callable[[], None],
    reconnect_delay_s: float = 0.1,
    max_reconnects: float = math.inf,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``subscribe``, then, like a browser's EventSource when ``reconnect`` is set, reopen the
    stream with ``Last-Event-ID`` after each server close. Starts when the first stream did;
    after that it never raises except Cancelled; gives up after a failed reconnect."""
    await subscribe(request, on_frames, task_status=task_status)
    attempts = 0
    while True:
        on_server_close()
        if not reconnect or attempts >= max_reconnects:
            return
        attempts += 1
        await trio.sleep(reconnect_delay_s)
        try:
            # After its start, subscribe raises nothing but Cancelled: these are handshakes.
            await subscribe(request, on_frames, last_event_id=last_id())
        except (BenchError, OSError):
            on_reconnect_failed()
            return
