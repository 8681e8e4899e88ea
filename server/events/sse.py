"""SSE framing (the text/event-stream format), sans I/O.

Encoders turn an event into the exact bytes written to every subscriber; the hub calls
them once per event and shares the result. ``SSEDecoder`` is the reverse, for tests and
the benchmark client. ``parse_last_event_id`` serves the endpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server.events.model import EventType, dumps, event_data

if TYPE_CHECKING:
    from collections.abc import Mapping

    from server.events.model import StoredEvent

RETRY_MS = 3000
RETRY_FRAME = f"retry: {RETRY_MS}\n\n".encode()
PING_FRAME = b": ping\n\n"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encode_frame(event_type: str, data: str, seq: int | None = None) -> bytes:
    """``id: <seq>`` (when given), ``event: <type>``, one ``data:`` line per line of data.

    Raises ``ValueError`` for a type that would break the framing.
    """
    if not event_type or _LINE_BREAK.search(event_type):
        raise ValueError(f"invalid SSE event type: {event_type!r}")
    parts: list[str] = []
    if seq is not None:
        parts.append(f"id: {seq}\n")
    parts.append(f"event: {event_type}\n")
    for line in _LINE_BREAK.split(data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    text = "".join(parts)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate (JSON allows "\ud800"): never fail a publish
        return text.encode("utf-8", "replace")


def encode_stored(event: StoredEvent) -> bytes:
    """A committed event: its project ``seq`` is the SSE ``id``."""
    return encode_frame(event.type, event.data, event.seq)


def encode_transient(data: Mapping[str, Any]) -> bytes:
    """A live-only event (``step.delta``, ``project.deleted``): no ``id`` line."""
    return encode_frame(str(data["type"]), dumps(data))


def reset_frame(project_id: str, last_seq: int, reason: str) -> bytes:
    """``event: reset`` with ``id: <last_seq>``: the client refetches state, then resumes
    from ``last_seq`` (EventSource sends it back as ``Last-Event-ID``)."""
    data = event_data(EventType.RESET, project_id, reason=reason, last_event_id=last_seq)
    return encode_frame(EventType.RESET, dumps(data), last_seq)


def parse_last_event_id(header: str | None, query: str | None) -> tuple[bool, int | None]:
    """(given, value) from ``Last-Event-ID`` (preferred) or ``?last_event_id=``.

    ``value`` is ``None`` when the id was given but is not a non-negative integer: the
    stream then answers with a reset instead of failing (EventSource would stop retrying).
    """
    raw = header if header is not None and header.strip() else query
    if raw is None or not raw.strip():
        return False, None
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return True, None
    return True, int(text)


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched SSE message (``event`` defaults to ``message`` as in browsers)."""

    event: str
    data: str
    id: str | None
    retry: int | None = None


@dataclass(slots=True)
class _Pending:
    event: str = ""
    data: list[str] | None = None
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Incremental text/event-stream parser (WHATWG rules, enough for tests and bench).

    ``feed(bytes)`` returns the messages completed so far; comments are counted in
    ``comments`` and ``retry`` fields recorded in ``retry``.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._pending = _Pending()
        self.comments: list[str] = []
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        self._buffer += chunk
        out: list[SSEMessage] = []
        while True:
            index = self._buffer.find(b"\n")
            if index < 0:
                return out
            line = self._buffer[:index].rstrip(b"\r").decode()
            self._buffer = self._buffer[index + 1 :]
            message = self._line(line)
            if message is not None:
                out.append(message)

    def _line(self, line: str) -> SSEMessage | None:
        pending = self._pending
        if line == "":
            self._pending = _Pending()
            if pending.data is None:
                return None
            return SSEMessage(pending.event or "message", "\n".join(pending.data), pending.id)
        if line.startswith(":"):
            self.comments.append(line[1:].strip())
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            pending.data = [*(pending.data or []), value]
        elif name == "event":
            pending.event = value
        elif name == "id":
            pending.id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None
