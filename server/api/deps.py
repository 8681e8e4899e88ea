"""What route code needs from the request: services, the caller, a strict JSON body, paging.

Every helper raises ``server.errors`` types; the single error handler in
``server.api.errors`` renders them in the contract's shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from quart import Response, current_app, g, request

from server.api.exchange import (
    Call,
    authenticate_call,
    json_answer,
    read_call_body,
    read_call_json,
)
from server.api.validation import check_request_target as validate_request_target
from server.errors import ValidationFailed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from server.api.exchange import Answer
    from server.auth.principal import Principal
    from server.services import Services

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def services() -> Services:
    return cast("Services", current_app.extensions["stretto"])


def _request_body() -> AsyncIterator[bytes]:
    return aiter(request.body)


def current_call() -> Call:
    """The current Quart request as a ``Call`` (one per request), for the route code it
    shares with the layer below Quart (``server.api.exchange``)."""
    call = g.get("call")
    if call is None:
        call = Call(request.scope, services(), _request_body)
        g.call = call
    return cast("Call", call)


async def require_user() -> Principal:
    """The authenticated caller (cached per request); raises ``Unauthorized``."""
    return await authenticate_call(current_call())


async def read_body(limit: int) -> bytes:
    """The raw body, refusing it with 413 as soon as it passes ``limit`` bytes."""
    return await read_call_body(current_call(), limit)


async def read_json(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON object body validated strictly against ``schema`` (unknown fields rejected)."""
    return await read_call_json(current_call(), schema)


async def check_request_target() -> None:
    """``before_request`` hook: the path and query string decode to valid text without NUL
    (see ``server.api.validation.check_request_target``)."""
    scope = request.scope
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    validate_request_target(raw_path, scope.get("query_string", b""))


def page_params() -> tuple[int, str | None]:
    """``?limit=`` (default 50, 1..200) and ``?cursor=``."""
    raw = request.args.get("limit")
    limit = DEFAULT_LIMIT
    if raw is not None:
        try:
            limit = int(raw)
        except ValueError:
            raise ValidationFailed(details={"limit": "must be an integer"}) from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationFailed(details={"limit": f"must be between 1 and {MAX_LIMIT}"})
    cursor = request.args.get("cursor") or None
    return limit, cursor


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return to_response(json_answer(body, status, headers))


def to_response(answer: Answer) -> Response:
    """``answer`` as a Quart ``Response`` (a stream gets no response timeout)."""
    if answer.stream is not None:
        response = Response(
            answer.stream,
            status=answer.status,
            headers=answer.headers,
            content_type=answer.content_type,
        )
        response.timeout = None  # quart would cut the stream after RESPONSE_TIMEOUT
        return response
    response = Response(
        answer.body, status=answer.status, headers=answer.headers, content_type=answer.content_type
    )
    if answer.content_type is None:  # a 304: no body, no type (quart would say text/html)
        del response.headers["Content-Type"]
    return response


def empty_response(status: int, headers: Mapping[str, str] | None = None) -> Response:
    """A response without a body (204, 304).

    Always with ``b""``: quart turns a missing body into a sync iterable that it iterates
    on an asyncio executor, which fails under trio.
    """
    return Response(b"", status=status, headers=dict(headers or {}))
