"""Sans-IO pieces of the bench's HTTP/1.1 and SSE clients: response heads, chunked decoding,
SSE frame splitting and parsing. Pure code over bytes; the sockets live in ``conn.py``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from server.bench.errors import BenchError

HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    headers: dict[str, str]  # lower-cased names; repeated headers keep the last value

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def content_length(self) -> int | None:
        raw = self.headers.get("content-length")
        return int(raw) if raw is not None and raw.strip().isdigit() else None

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


def parse_head(raw: bytes) -> ResponseHead:
    """Parse a status line and headers (without the final blank line). Raises BenchError."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise BenchError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return ResponseHead(int(parts[1]), headers)


def request_bytes(
    method: str,
    target: str,
    host: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> bytes:
    """An HTTP/1.1 request with keep-alive semantics (the default) and, for a body, its length."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers or ()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ChunkedDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoder; ``done`` after the zero-size chunk.

    Trailers after the last chunk are not read (the bench never sends requests after a
    chunked body ends on the same connection without draining it first)."""

    __slots__ = ("_left", "_pending", "_skip", "done")

    def __init__(self) -> None:
        self._pending = bytearray()
        self._left = 0
        self._skip = 0
        self.done = False

    def feed(self, data: bytes | bytearray) -> bytes:
        pending = self._pending
        pending += data
        out = bytearray()
        while pending and not self.done:
            if self._left:
                take = min(self._left, len(pending))
                out += pending[:take]
                del pending[:take]
                self._left -= take
                if not self._left:
                    self._skip = 2
            elif self._skip:
                take = min(self._skip, len(pending))
                del pending[:take]
                self._skip -= take
            else:
                newline = pending.find(b"\n")
                if newline < 0:
                    if len(pending) > 1024:
                        raise BenchError("bad chunk size line")
                    break
                size_text = bytes(pending[:newline]).split(b";", 1)[0].strip()
                del pending[: newline + 1]
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise BenchError(f"bad chunk size {size_text[:20]!r}") from None
                if size == 0:
                    self.done = True
                else:
                    self._left = size
        return bytes(out)


class FrameSplitter:
    """Cuts an SSE body into whole frames: ``feed`` returns every complete frame received so far
    (``\\n\\n``-terminated, CRLF normalised to LF), or ``b""``."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes | bytearray) -> bytes:
        buffer = self._buffer + data if self._buffer else bytes(data)
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._buffer = buffer
            return b""
        self._buffer = buffer[end + 2 :]
        return buffer[: end + 2]


@dataclass(slots=True)
class SseEvent:
    event: str = "message"
    id: str | None = None
    data: Any = None  # the JSON-decoded data, or the raw text when it is not JSON
    lines: list[str] = field(default_factory=list)


_RETRY_RE = re.compile(rb"(?m)^retry:")
_COMMENT_RE = re.compile(rb"(?m)^:")
_ID_RE = re.compile(rb"(?m)^id:[ ]?(\S*)")


def has_retry(frames: bytes) -> bool:
    return _RETRY_RE.search(frames) is not None


def count_comments(frames: bytes) -> int:
    """Comment lines (``: ping`` heartbeats) in a run of frames."""
    return len(_COMMENT_RE.findall(frames))


def last_event_id(frames: bytes) -> str | None:
    ids = _ID_RE.findall(frames)
    return ids[-1].decode("latin-1") if ids else None


def parse_events(frames: bytes) -> list[SseEvent]:
    """Events with data in a run of whole frames; comments and data-less frames are skipped."""
    events: list[SseEvent] = []
    for block in frames.decode("utf-8", "replace").split("\n\n"):
        event = SseEvent()
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                event.lines.append(value)
            elif name == "event":
                event.event = value
            elif name == "id":
                event.id = value
        if event.lines:
            text = "\n".join(event.lines)
            try:
                event.data = json.loads(text)
            except ValueError:
                event.data = text
            events.append(event)
    return events
