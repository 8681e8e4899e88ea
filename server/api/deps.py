"""What route code needs from the request: services, the caller, a strict JSON body, paging.

Every helper raises ``server.errors`` types; the single error handler in
``server.api.errors`` renders them in the contract's shape.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from quart import Response, current_app, g, request

from server.api.validation import check_request_target as validate_request_target
from server.api.validation import parse_json, validate_body
from server.errors import (
    TooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from server.auth.principal import Principal
    from server.services import Services

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def services() -> Services:
    return cast("Services", current_app.extensions["stretto"])


def bearer_token() -> str | None:
    """The token of an ``Authorization: Bearer`` header; ``None`` when absent."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


async def require_user() -> Principal:
    """The authenticated caller (cached per request); raises ``Unauthorized``."""
    cached = g.get("principal")
    if cached is not None:
        return cast("Principal", cached)
    from server.auth.principal import authenticate

    token = bearer_token()
    if token is None:
        raise Unauthorized("Authentication required.")
    svc = services()
    principal = await authenticate(token, svc.tokens, svc.store)
    g.principal = principal
    return principal


async def read_body(limit: int) -> bytes:
    """The raw body, refusing it with 413 as soon as it passes ``limit`` bytes."""
    length = request.content_length
    if length is not None and length > limit:
        raise TooLarge(f"The body is larger than {limit} bytes.", {"max_bytes": limit})
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.body:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"The body is larger than {limit} bytes.", {"max_bytes": limit})
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON object body validated strictly against ``schema`` (unknown fields rejected)."""
    mimetype = request.mimetype
    if mimetype != "application/json":
        raise UnsupportedMediaType("The request body must be application/json.")
    raw = await read_body(services().settings.max_body_bytes)
    return validate_body(parse_json(raw), schema)


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
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    response = Response(data, status=status, content_type="application/json; charset=utf-8")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def empty_response(status: int, headers: Mapping[str, str] | None = None) -> Response:
    """A response without a body (204, 304).

    Always with ``b""``: quart turns a missing body into a sync iterable that it iterates
    on an asyncio executor, which fails under trio.
    """
    return Response(b"", status=status, headers=dict(headers or {}))
