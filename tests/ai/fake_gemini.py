"""A fake Gemini API on loopback that the REAL google-genai SDK talks to (via ``base_url``).

It speaks the two REST calls stretto uses, as the real API does:

- ``POST /v1beta/models/{model}:generateContent`` -> one ``GenerateContentResponse`` JSON;
- ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` -> ``text/event-stream``
  with one ``data: {GenerateContentResponse}`` frame per chunk;
- errors as ``{"error": {"code", "message", "status"}}`` with the HTTP status (and
  ``Retry-After`` when scripted).

Tests script it with a queue of ``Reply`` objects (one per request, in order) and inspect
``requests``. ``script_for(needle, reply)`` answers the first request whose prompt text holds
``needle`` (before the queue), for calls made in parallel, whose order is not fixed.
A reply may hang (never answer) or hold a stream open after its chunks; both
wait for the client to go away and then set ``disconnected``, which is how a test proves a
timeout or a cancellation really closed the HTTP request. An unscripted request gets a 500.
"""

from __future__ import annotations

import json
import re
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

_ROUTE = re.compile(r"/v1beta/models/[A-Za-z0-9._-]+:(generateContent|streamGenerateContent)")
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass(frozen=True)
class Reply:
    """One scripted answer: see text_reply, json_reply, error_reply, hang_reply."""

    status: int = 200
    texts: tuple[str, ...] = ()
    error_message: str = ""
    retry_after: str | None = None
    hang: bool = False
    hold_open: bool = False
    gate: trio.Event | None = None  # when set, wait for it before answering
    thoughts: int = 0  # thoughtsTokenCount reported (0: the field is left out)


def text_reply(
    *texts: str, hold_open: bool = False, gate: trio.Event | None = None, thoughts: int = 0
) -> Reply:
    """Model text. Non-streaming calls get the texts joined; streaming calls one chunk each.

    ``hold_open``: after the chunks, keep the stream open until the client disconnects.
    ``gate``: answer only once the event is set. ``thoughts``: thinking tokens reported.
    """
    return Reply(texts=tuple(texts), hold_open=hold_open, gate=gate, thoughts=thoughts)


def json_reply(obj: Any, *, thoughts: int = 0) -> Reply:
    """A structured-output answer: the model's text is the JSON document."""
    return Reply(texts=(json.dumps(obj, ensure_ascii=False),), thoughts=thoughts)


PROMPT_TOKENS = 10
"""promptTokenCount of every answer."""


def candidate_tokens(text: str) -> int:
    """candidatesTokenCount the fake reports for an answer's (whole) text."""
    return max(1, len(text) // 4)


def error_reply(status: int, message: str, *, retry_after: str | None = None) -> Reply:
    return Reply(status=status, error_message=message, retry_after=retry_after)


def hang_reply() -> Reply:
    """Read the request, never answer; wait for the client to disconnect."""
    return Reply(hang=True)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any

    @property
    def model(self) -> str:
        return self.path.rsplit("/", 1)[-1].split(":", 1)[0]

    @property
    def streaming(self) -> bool:
        return self.path.endswith(":streamGenerateContent")

    @property
    def prompt_text(self) -> str:
        """All user text parts of the request, joined."""
        parts = [
            part.get("text", "")
            for content in self.body.get("contents", [])
            for part in content.get("parts", [])
        ]
        return "\n".join(parts)


@dataclass
class FakeGemini:
    url: str = ""
    model_version: str = "gemini-fake"
    requests: list[Received] = field(default_factory=list)
    disconnected: trio.Event = field(default_factory=trio.Event)
    disconnects: int = 0
    _replies: deque[Reply] = field(default_factory=deque)
    _keyed: list[tuple[str, Reply]] = field(default_factory=list)
    _waiters: list[tuple[int, trio.Event]] = field(default_factory=list)

    def script(self, *replies: Reply) -> None:
        """Queue replies; each request takes the next one."""
        self._replies.extend(replies)

    def script_for(self, needle: str, reply: Reply) -> None:
        """Answer the first request whose prompt text contains ``needle`` with ``reply``."""
        self._keyed.append((needle, reply))

    def _keyed_reply(self, received: Received) -> Reply | None:
        text = received.prompt_text
        for index, (needle, reply) in enumerate(self._keyed):
            if needle in text:
                del self._keyed[index]
                return reply
        return None

    @property
    def pending_replies(self) -> int:
        return len(self._replies) + len(self._keyed)

    async def wait_for_requests(self, count: int) -> None:
        """Return once ``count`` requests have arrived."""
        if len(self.requests) < count:
            event = trio.Event()
            self._waiters.append((count, event))
            await event.wait()

    def _record(self, received: Received) -> None:
        self.requests.append(received)
        for count, event in self._waiters:
            if len(self.requests) >= count:
                event.set()

    # -- protocol -----------------------------------------------------------------------
    def _response_body(
        self, text: str, *, final: bool, so_far: str | None = None, thoughts: int = 0
    ) -> dict[str, Any]:
        """One answer (or stream chunk). Usage is cumulative, as Gemini's: ``so_far`` is the
        text of the whole answer up to and including this chunk."""
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": text}], "role": "model"},
            "index": 0,
        }
        if final:
            candidate["finishReason"] = "STOP"
        candidates = candidate_tokens(text if so_far is None else so_far)
        usage = {
            "promptTokenCount": PROMPT_TOKENS,
            "candidatesTokenCount": candidates,
            "totalTokenCount": PROMPT_TOKENS + candidates + thoughts,
        }
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": self.model_version,
            "responseId": f"fake-{len(self.requests)}",
        }

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                received = await _read_request(stream, conn)
                if received is None:
                    return
                self._record(received)
                if not _ROUTE.fullmatch(received.path) or received.method != "POST":
                    reply = error_reply(404, f"fake gemini: no route {received.path}")
                elif received.streaming and received.query.get("alt") != ["sse"]:
                    reply = error_reply(400, "fake gemini: streaming needs alt=sse")
                elif (keyed := self._keyed_reply(received)) is not None:
                    reply = keyed
                elif self._replies:
                    reply = self._replies.popleft()
                else:
                    reply = error_reply(500, "fake gemini: no scripted reply")
                keep_going = await self._answer(stream, conn, received, reply)
                if not keep_going or conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            self._note_disconnect()
        finally:
            await stream.aclose()

    async def _answer(
        self, stream: trio.SocketStream, conn: h11.Connection, received: Received, reply: Reply
    ) -> bool:
        """Send ``reply``; return False when the connection is done."""
        if reply.gate is not None:
            await reply.gate.wait()
        if reply.hang:
            await self._wait_for_disconnect(stream)
            return False
        if reply.status != 200:
            body = {
                "error": {
                    "code": reply.status,
                    "message": reply.error_message,
                    "status": _STATUS_NAMES.get(reply.status, "UNKNOWN"),
                }
            }
            headers = [("content-type", "application/json; charset=UTF-8")]
            if reply.retry_after is not None:
                headers.append(("retry-after", reply.retry_after))
            await _send_full(stream, conn, reply.status, headers, json.dumps(body).encode())
            return True
        if not received.streaming:
            body = self._response_body("".join(reply.texts), final=True, thoughts=reply.thoughts)
            headers = [("content-type", "application/json; charset=UTF-8")]
            await _send_full(stream, conn, 200, headers, json.dumps(body).encode())
            return True
        await _send(stream, conn, h11.Response(status_code=200, headers=_SSE_HEADERS))
        for index, text in enumerate(reply.texts):
            final = index == len(reply.texts) - 1 and not reply.hold_open
            so_far = "".join(reply.texts[: index + 1])
            chunk = self._response_body(text, final=final, so_far=so_far, thoughts=reply.thoughts)
            frame = f"data: {json.dumps(chunk)}\r\n\r\n"
            await _send(stream, conn, h11.Data(data=frame.encode()))
        if reply.hold_open:
            await self._wait_for_disconnect(stream)
            return False
        await _send(stream, conn, h11.EndOfMessage())
        return True

    async def _wait_for_disconnect(self, stream: trio.SocketStream) -> None:
        try:
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self._note_disconnect()

    def _note_disconnect(self) -> None:
        self.disconnects += 1
        self.disconnected.set()


_SSE_HEADERS = [
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
]


async def _send(stream: trio.SocketStream, conn: h11.Connection, event: Any) -> None:
    data = conn.send(event)
    if data:
        await stream.send_all(data)


async def _send_full(
    stream: trio.SocketStream,
    conn: h11.Connection,
    status: int,
    headers: Sequence[tuple[str, str]],
    body: bytes,
) -> None:
    all_headers = [*headers, ("content-length", str(len(body)))]
    await _send(stream, conn, h11.Response(status_code=status, headers=all_headers))
    await _send(stream, conn, h11.Data(data=body))
    await _send(stream, conn, h11.EndOfMessage())


async def _read_request(stream: trio.SocketStream, conn: h11.Connection) -> Received | None:
    """The next request on the connection, or None when the client closed it."""
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.ConnectionClosed):
            return None
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            target = urlsplit(request.target.decode())
            headers = {k.decode().lower(): v.decode() for k, v in request.headers}
            return Received(
                method=request.method.decode(),
                path=target.path,
                query=parse_qs(target.query),
                headers=headers,
                body=json.loads(body) if body else None,
            )


@asynccontextmanager
async def open_fake_gemini() -> AsyncIterator[FakeGemini]:
    """Serve a FakeGemini on 127.0.0.1:<free port> for the duration of the block."""
    fake = FakeGemini()
    async with trio.open_nursery() as nursery:
        listeners: list[trio.SocketListener] = await nursery.start(
            partial(trio.serve_tcp, fake._handle, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        fake.url = f"http://127.0.0.1:{port}/"
        yield fake
        nursery.cancel_scope.cancel()
