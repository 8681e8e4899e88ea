"""The hot routes answered below Quart: one small ASGI router in front of the Quart app.

What a frontend hits constantly skips Quart's request machinery (request context, hooks,
werkzeug wrappers: about a quarter to a half of such a request's CPU here):

| route | endpoint | shared route code |
|---|---|---|
| ``GET /api/health`` | ``health.health`` | a constant body |
| ``GET /api/projects/{id}`` | ``projects.get_project`` | ``projects.project_answer`` |
| ``GET /api/workflow/runs/{id}`` | ``workflow.get_run`` | ``workflow.run_answer`` |
| ``GET /api/projects/{id}/files/{path}`` | ``files.read_file`` | ``files.file_answer`` |
| ``POST /api/sse/tickets`` | ``sse.create_ticket`` | ``sse.ticket_answer`` |
| ``GET /api/sse/projects/{id}`` | ``sse.stream_project`` | ``sse.stream_answer`` |

Routing is Quart's own: the request is matched against the app's werkzeug ``url_map``, so
a request reaches the same endpoint with the same arguments either way, and the Quart
routes stay (they are what the OpenAPI document describes, and they still answer every
other method: ``HEAD``, the 405s, and history reads of a file, ``?version(s)``).

Everything around the route is the same code Quart's hooks call: request ids
(``request_id_of``), the target check (``validation.check_request_target``), errors
(``exchange.error_answer`` / ``unexpected_answer``), CORS (``CorsPolicy.headers_for``;
preflights are answered further out by ``cors_middleware``), metrics and the access log
(``record_request``; a stream is measured to its head, as in Quart).

A stream is sent by this request's task. HTTP/1.1 streams get the socket fast path
(``sse_socket.socket_writer_for_send``). A client that leaves cancels the stream: the
connection tells it when it closes (``EdgeTCPServer.on_close``) when the fast path owns it;
otherwise a second task waits for ``http.disconnect``, as quart-trio's does.
An idle fast-path stream is then parked (``server.events.parked``): the generator returns,
the connection's tasks end without closing the socket, and the response is not ended here
(``SocketWriter.parked``): the parked stream ends it.
"""

from __future__ import annotations

import time
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import trio
from werkzeug.exceptions import HTTPException

from server import __version__
from server.api.exchange import (
    JSON_TYPE,
    Answer,
    Call,
    error_answer,
    json_bytes,
    unexpected_answer,
)
from server.api.files import file_answer, is_history_read
from server.api.projects import project_answer
from server.api.sse import stream_answer, ticket_answer
from server.api.sse_socket import socket_writer_for_send
from server.api.validation import check_request_target
from server.api.workflow import run_answer
from server.errors import AppError
from server.observability.http import record_request, request_id_of
from server.observability.logging import bind_request_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from quart import Quart

    from server.api.cors import CorsPolicy
    from server.api.sse_socket import SocketWriter
    from server.services import Services

    ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
    Handler = Callable[[Call, dict[str, Any], Any, Any], Awaitable[Answer | None]]

# Cheap filter before matching: only these can reach an edge route.
PREFIXES = ("/api/health", "/api/projects/", "/api/workflow/runs/", "/api/sse/")
METHODS = frozenset({"GET", "POST"})
_ORIGIN = b"origin"


class ClientGone(Exception):
    """The client disconnected while its request body was read."""


async def _health(call: Call, args: dict[str, Any], receive: Any, send: Any) -> Answer:
    return Answer(200, {}, _HEALTH_BODY, JSON_TYPE)


_HEALTH_BODY = json_bytes({"status": "ok", "version": __version__})


async def _project(call: Call, args: dict[str, Any], receive: Any, send: Any) -> Answer:
    return await project_answer(call, args["project_id"])


async def _run(call: Call, args: dict[str, Any], receive: Any, send: Any) -> Answer:
    return await run_answer(call, args["run_id"])


async def _file(call: Call, args: dict[str, Any], receive: Any, send: Any) -> Answer | None:
    if is_history_read(call):
        return None  # Quart's route answers it
    return await file_answer(call, args["project_id"], args["path"])


async def _ticket(call: Call, args: dict[str, Any], receive: Any, send: Any) -> Answer:
    return await ticket_answer(call)


async def _stream(call: Call, args: dict[str, Any], receive: Any, send: Any) -> Answer:
    version = str(call.scope.get("http_version", ""))
    return await stream_answer(
        call, args["project_id"], lambda: socket_writer_for_send(send, version)
    )


HANDLERS: dict[str, Handler] = {
    "health.health": _health,
    "projects.get_project": _project,
    "workflow.get_run": _run,
    "files.read_file": _file,
    "sse.create_ticket": _ticket,
    "sse.stream_project": _stream,
}


def edge_router(app: Quart, inner: ASGIApp, services: Services, policy: CorsPolicy) -> EdgeRouter:
    """``inner`` (Quart's ASGI app) with the ``HANDLERS`` endpoints answered in front of it.
    Call once the blueprints are registered (routing uses ``app.url_map``)."""
    return EdgeRouter(app, inner, services, policy)


class EdgeRouter:
    """The ASGI app in front of Quart (see the module doc); ``inner`` is Quart's."""

    __slots__ = ("_adapter", "_metrics", "_policy", "_services", "inner")

    def __init__(self, app: Quart, inner: ASGIApp, services: Services, policy: CorsPolicy):
        self._adapter = app.url_map.bind("localhost")
        self._metrics = services.metrics
        self._services = services
        self._policy = policy
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in METHODS
            or not scope["path"].startswith(PREFIXES)
        ):
            await self.inner(scope, receive, send)
            return
        try:
            rule, args = self._adapter.match(scope["path"], scope["method"], return_rule=True)
        except HTTPException:  # 404, 405, a redirect: Quart answers
            await self.inner(scope, receive, send)
            return
        handler = HANDLERS.get(str(rule.endpoint))
        if handler is None:
            await self.inner(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope["headers"])
        bind_request_id(request_id)
        call = Call(scope, self._services, lambda: _body(receive))
        method, path = call.method, call.path
        try:
            check_request_target(
                scope.get("raw_path") or path.encode("utf-8", "surrogateescape"),
                scope.get("query_string", b""),
            )
            answer = await handler(call, dict(args), receive, send)
        except ClientGone:
            return
        except AppError as error:
            answer = error_answer(error, method, path)
        except Exception as error:
            answer = unexpected_answer(error, method, path)
        if answer is None:
            await self.inner(scope, receive, send)
            return
        headers = _head(answer, request_id, self._policy.headers_for(call.header(_ORIGIN)))
        start = {"type": "http.response.start", "status": answer.status, "headers": headers}
        if answer.stream is None:
            await send(start)
            await send({"type": "http.response.body", "body": answer.body, "more_body": False})
            record_request(self._metrics, method, path, rule.rule, answer.status, _since(started))
            return
        async with aclosing(answer.stream) as stream:
            await send(start)
            record_request(self._metrics, method, path, rule.rule, answer.status, _since(started))
            await _send_stream(stream, receive, send, answer.connection)


def _since(started: float) -> float:
    return time.perf_counter() - started


def _head(answer: Answer, request_id: str, cors: list[tuple[bytes, bytes]]) -> list[Any]:
    """The response head: what Quart would send for ``answer`` (``to_response``), plus
    ``X-Request-ID`` and the CORS headers its hooks add."""
    headers = [
        (key.encode("latin-1"), value.encode("latin-1")) for key, value in answer.headers.items()
    ]
    if answer.content_type is not None:
        headers.append((b"content-type", answer.content_type.encode("latin-1")))
    if answer.stream is None:
        headers.append((b"content-length", b"%d" % len(answer.body)))
    headers.append((b"x-request-id", request_id.encode("latin-1")))
    headers.extend(cors)
    return headers


async def _body(receive: Any) -> AsyncIterator[bytes]:
    """The request body from ASGI ``receive``; ``ClientGone`` when the client left."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _send_stream(
    stream: AsyncIterator[bytes], receive: Any, send: Any, connection: SocketWriter | None
) -> None:
    """Send ``stream``'s chunks, then end the body; cancelled when the client leaves: told
    by the connection itself when the socket fast path owns the stream (no task), else by
    a task waiting for ``http.disconnect``."""
    with trio.CancelScope() as scope:
        if connection is not None and connection.when_closed(scope.cancel):
            await _send_chunks(stream, send)
            if not connection.parked:  # else the parked stream ends the response itself
                await send(_END)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_disconnect, receive, scope)
            await _send_chunks(stream, send)
            await send(_END)
            nursery.cancel_scope.cancel()


async def _send_chunks(stream: AsyncIterator[bytes], send: Any) -> None:
    async for chunk in stream:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})


_END = {"type": "http.response.body", "body": b"", "more_body": False}


async def _cancel_on_disconnect(receive: Any, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
