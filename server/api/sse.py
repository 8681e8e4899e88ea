"""Server-Sent Events routes: stream tickets and the project event stream.

``POST /api/sse/tickets`` (Bearer) mints a ticket good for streaming one project while the
session lasts (``server.auth.tickets``; browsers' EventSource cannot send headers).
``GET /api/sse/projects/{id}`` authenticates by Bearer header or ``?ticket=`` (never an
access token in a URL), answers 404 for a missing or another user's project, and streams
``server.events.stream``. Tickets are never logged (``server.observability.logging``
redacts them). The subscription is opened here, before the response headers leave, so that
an event published once the client saw them is delivered. HTTP/1.1 streams get the socket
fast path of ``server.api.sse_socket``. During shutdown a stream request gets 200 with
``retry:`` and an empty, ended stream; so does one that meets a database outage
(a retryable ``StoreUnavailable``: checking the ticket or the project, or the replay), since
a 503 would make an EventSource give up for good. A user holds at most
``max_streams_per_user`` streams in this process (429 ``rate_limited`` past it); a stream
counts from its check until its body ends, or until the body is dropped unread (collected:
``weakref.finalize``).
"""

from __future__ import annotations

import weakref
from contextlib import aclosing
from typing import TYPE_CHECKING

from quart import Blueprint, Response

from server.api.deps import current_call, to_response
from server.api.exchange import Answer, authenticate_call, json_answer, read_call_json
from server.api.sse_socket import socket_writer_for_current_request
from server.api.validation import object_schema
from server.errors import NotFound, RateLimited, StoreUnavailable, Unauthorized, ValidationFailed
from server.events.sse import parse_last_event_id
from server.events.stream import StreamOptions, StreamSlot, open_event_stream

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    from server.api.exchange import Call
    from server.api.sse_socket import SocketWriter

blueprint = Blueprint("sse", __name__)

_ID = {"type": "string", "minLength": 1, "maxLength": 128}
TICKET_SCHEMA = object_schema({"project_id": _ID}, ("project_id",))
MAX_RUN_ID_CHARS = 128
SHUTDOWN_RETRY_MS = 1000
STREAM_LIMIT_RETRY_S = 10.0
EVENT_STREAM = "text/event-stream"

STREAM_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}


@blueprint.post("/api/sse/tickets")
async def create_ticket() -> Response:
    return to_response(await ticket_answer(current_call()))


async def ticket_answer(call: Call) -> Answer:
    """``POST /api/sse/tickets``, for both layers (``server.api.edge``)."""
    user = await authenticate_call(call)
    body = await read_call_json(call, TICKET_SCHEMA)
    svc = call.services
    project = await svc.store.get_project(user.user_id, body["project_id"])
    if project is None:
        raise NotFound("No such project.")
    ticket, expires_in = svc.tickets.issue(user.user_id, project.id, user.session_id)
    return json_answer(
        {"ticket": ticket, "expires_in": expires_in}, 201, {"Cache-Control": "no-store"}
    )


async def _stream_user(call: Call, project_id: str) -> str:
    """The caller's user id from the Bearer header, else from ``?ticket=``."""
    if call.header(b"authorization") is not None:
        return (await authenticate_call(call)).user_id
    ticket = call.arg("ticket")
    if ticket:
        svc = call.services
        reconnect = call.header(b"last-event-id") is not None
        return await svc.tickets.verify(ticket, project_id, svc.store, reconnect=reconnect)
    raise Unauthorized("Authentication required: a Bearer token or a stream ticket.")


async def _counted(
    stream: AsyncGenerator[bytes, None], release: Callable[[], None]
) -> AsyncGenerator[bytes, None]:
    """``stream``, releasing the user's stream count when it ends (closed with it)."""
    try:
        async with aclosing(stream) as chunks:
            async for chunk in chunks:
                yield chunk
    finally:
        release()


def _come_back_later(why: str = "shutting down") -> Answer:
    """During shutdown or a database outage: 200 with a ``retry:`` and an ended stream. Any
    non-200 would make an EventSource give up for good; this one reconnects (to the next
    instance, or once the database is back) instead."""
    body = f"retry: {SHUTDOWN_RETRY_MS}\n\n: {why}\n\n".encode()
    return Answer(200, dict(STREAM_HEADERS), body, EVENT_STREAM)


@blueprint.get("/api/sse/projects/<project_id>")
async def stream_project(project_id: str) -> Response:
    call = current_call()
    return to_response(await stream_answer(call, project_id, socket_writer_for_current_request))


async def stream_answer(
    call: Call, project_id: str, connection_of: Callable[[], SocketWriter | None]
) -> Answer:
    """``GET /api/sse/projects/{id}``, for both layers: an ``Answer`` whose ``stream`` owns
    the subscription and the user's stream count. ``connection_of`` finds the socket fast
    path of this request (None: the stream goes through the server's write path)."""
    if call.services.lifecycle.draining:
        return _come_back_later()
    try:
        return await _open_stream(call, project_id, connection_of)
    except StoreUnavailable as exc:
        if not exc.retryable:  # a damaged database or a newer schema: no retry will help
            raise
        return _come_back_later("database unavailable")


async def _open_stream(
    call: Call, project_id: str, connection_of: Callable[[], SocketWriter | None]
) -> Answer:
    svc = call.services
    user_id = await _stream_user(call, project_id)
    if await svc.store.get_project(user_id, project_id) is None:
        raise NotFound("No such project.")
    run_id = call.arg("run_id") or None
    if run_id is not None and len(run_id) > MAX_RUN_ID_CHARS:
        raise ValidationFailed(details={"run_id": f"at most {MAX_RUN_ID_CHARS} characters"})
    given, last_event_id = parse_last_event_id(
        call.header(b"last-event-id"), call.arg("last_event_id")
    )
    options = StreamOptions(
        heartbeat_s=svc.settings.sse_heartbeat_s,
        max_lifetime_s=svc.settings.sse_max_lifetime_s,
        run_id=run_id,
        last_event_id_given=given,
        last_event_id=last_event_id,
    )
    limit = svc.settings.max_streams_per_user
    release = svc.user_streams.take(user_id, limit)
    if release is None:
        raise RateLimited(
            f"A user may hold at most {limit} event streams open; close one first.",
            {"limit": "max_streams_per_user", "max": limit},
            retry_after=STREAM_LIMIT_RETRY_S,
        )
    connection = connection_of()
    direct = connection if svc.settings.sse_direct_writes else None
    # Subscribed before the headers leave. Dropped as slow: the connection is closed.
    abort = connection.abort if connection is not None else None
    slot = StreamSlot(release)  # released by the body, or by the parked stream at its end
    try:
        stream = await open_event_stream(
            svc.hub, svc.store, project_id, options, direct, abort, svc.parked, slot
        )
    except BaseException:
        slot()
        raise
    body = _counted(stream, slot)
    weakref.finalize(body, slot)  # a body never iterated is never closed, only collected
    return Answer(
        200, dict(STREAM_HEADERS), content_type=EVENT_STREAM, stream=body, connection=connection
    )
