"""stretto's HTTP/1.1 protocol: hypercorn's ``H11Protocol`` with the edge rules.

Owns, per connection (see ``EdgeH11Protocol``):

- request smuggling: ``Content-Length`` together with ``Transfer-Encoding`` is refused
  with 400 and the connection closed (RFC 9112 section 6.1);
- the contract's JSON error body on the responses the server writes itself (h11's 400,
  431 and 501, the 400 above, the 503 below), with ``Connection: close``;
- the body budget (``BodyBudget``): a request reserves its declared length when its head
  arrives (503 + ``Retry-After`` when it does not fit), chunked bytes are counted as they
  arrive (past the limit the connection is dropped), all given back when its stream closes;
- early responses: a response that starts before the request body was read whole carries
  ``Connection: close``, so the connection ends after it instead of mistaking the rest of
  the body for the next request;
- the response head goes out with the first body chunk (one send instead of two).

It never does connection I/O beyond ``self.send`` (the TCP server's ``protocol_send``), and
keeps ``stream_send`` and ``HTTPStream`` untouched: the SSE direct-write path
(``server.events.direct``) checks them by identity.
"""

from __future__ import annotations

import json
from itertools import chain
from typing import TYPE_CHECKING, Final

import h11
from hypercorn.events import Closed, RawData, Updated
from hypercorn.protocol.events import Body, Data, EndBody
from hypercorn.protocol.h11 import STREAM_ID, H11Protocol

from server.timeutil import new_id

if TYPE_CHECKING:
    from hypercorn.typing import H11SendableEvent

    from server.http.budget import BodyBudget

# Seconds a client is told to wait (Retry-After) when the body budget is full.
BUSY_RETRY_AFTER_S: Final = 5

_ERRORS: Final[dict[int, tuple[str, str]]] = {
    400: ("bad_request", "The request is not valid HTTP/1.1."),
    408: ("request_timeout", "The request took too long to arrive."),
    413: ("too_large", "The request is too large."),
    431: ("headers_too_large", "The request head is too large."),
    501: ("not_implemented", "The request uses a transfer coding this server does not support."),
    503: ("overloaded", "The server holds too many request bodies; retry later."),
}
SMUGGLING_MESSAGE: Final = "Content-Length and Transfer-Encoding must not be sent together."


def error_body(status: int, message: str | None = None) -> bytes:
    """The contract's error shape for a response the server writes itself."""
    code, default = _ERRORS.get(status, ("bad_request", "The request was refused."))
    error = {"code": code, "message": message or default, "details": {}}
    return json.dumps({"error": error}, separators=(",", ":")).encode()


class Refused(Exception):
    """A request refused before it reached the application (status, message, Retry-After)."""

    def __init__(self, status: int, message: str | None = None, retry_after: int | None = None):
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class EdgeH11Protocol(H11Protocol):
    """``H11Protocol`` with the rules in the module docstring. ``budget`` is shared by the
    worker's connections; None means unbounded."""

    budget: BodyBudget | None = None
    _held = 0  # body bytes this connection's current request holds in ``budget``
    _declared = False  # the current request declared its length (reserved whole)
    _head = b""  # a response head waiting for its first body chunk

    def _refusal(self, request: h11.Request) -> Refused | None:
        length: int | None = None
        chunked = False
        for name, value in request.headers:
            if name == b"content-length":
                length = int(value)  # h11 validated it
            elif name == b"transfer-encoding":
                chunked = True
        if chunked and length is not None:
            return Refused(400, SMUGGLING_MESSAGE)
        if length and self.budget is not None:
            if not self.budget.reserve(length):
                return Refused(503, retry_after=BUSY_RETRY_AFTER_S)
            self._held = length
        self._declared = length is not None
        return None

    def _count_body(self, size: int) -> bool:
        """Count received chunked-body bytes (a declared length was reserved whole);
        False once the budget is exceeded."""
        if self.budget is None or self._declared:
            return True
        self._held += size
        return self.budget.add(size)

    def _release(self) -> None:
        if self._held and self.budget is not None:
            self.budget.release(self._held)
        self._held = 0

    async def _handle_events(self) -> None:
        # hypercorn 0.18.0's loop, plus the refusals and the body count.
        while True:
            if self.connection.they_are_waiting_for_100_continue:
                await self._send_h11_event(
                    h11.InformationalResponse(
                        status_code=100, headers=self.config.response_headers("h11")
                    )
                )
            try:
                event = self.connection.next_event()
            except h11.RemoteProtocolError as error:
                if self.connection.our_state in {h11.IDLE, h11.SEND_RESPONSE}:
                    await self._send_error_response(error.error_status_hint)
                await self.send(Closed())
                break
            if isinstance(event, h11.Request):
                refused = self._refusal(event)
                if refused is not None:
                    await self._send_error_response(
                        refused.status, refused.message, refused.retry_after
                    )
                    self._release()
                    await self.send(Closed())
                    break
                await self.send(Updated(idle=False))
                await self._check_protocol(event)
                await self._create_stream(event)
            elif event is h11.PAUSED:
                await self.can_read.clear()
                await self.can_read.wait()
            elif (
                isinstance(event, h11.ConnectionClosed)
                or event is h11.NEED_DATA
                or self.stream is None
            ):
                break
            elif isinstance(event, h11.Data):
                if not self._count_body(len(event.data)):
                    await self.send(Closed())  # a chunked body past the budget: drop it
                    break
                await self.stream.handle(Body(stream_id=STREAM_ID, data=event.data))
            elif isinstance(event, h11.EndOfMessage):
                await self.stream.handle(EndBody(stream_id=STREAM_ID))
            elif isinstance(event, Data):  # WebSocket pass through
                await self.stream.handle(event)

    async def _send_h11_event(self, event: H11SendableEvent) -> None:
        connection = self.connection
        if (
            type(event) is h11.Response
            and type(connection) is h11.Connection
            and connection.their_state is h11.SEND_BODY
        ):
            # An early response: the body was not read whole, so the connection cannot
            # carry another request.
            event = h11.Response(
                status_code=event.status_code,
                headers=[*event.headers.raw_items(), (b"connection", b"close")],
                reason=event.reason,
            )
        try:
            data = connection.send(event)
        except h11.LocalProtocolError:
            if connection.their_state != h11.ERROR:
                raise
            return
        if type(event) is h11.Response:
            self._head += data
            return
        if self._head:
            data, self._head = self._head + data, b""
        await self.send(RawData(data=data))

    async def _send_error_response(
        self, status_code: int, message: str | None = None, retry_after: int | None = None
    ) -> None:
        body = error_body(status_code, message)
        headers = [
            (b"content-type", b"application/json; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
            (b"x-request-id", new_id().encode()),
        ]
        if retry_after is not None:
            headers.append((b"retry-after", b"%d" % retry_after))
        await self._send_h11_event(
            h11.Response(
                status_code=status_code,
                headers=list(chain(headers, self.config.response_headers("h11"))),
            )
        )
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())

    async def _close_stream(self) -> None:
        self._release()
        self._head = b""  # a response abandoned after its head: the connection closes
        await super()._close_stream()
