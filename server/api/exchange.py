"""One request and its answer, without a framework: what both HTTP layers share.

The hot routes are answered twice over: by Quart (``server.api.*`` blueprints) and, for the
requests they match, below Quart by ``server.api.edge``. Both layers build a ``Call`` over
the same ASGI scope and run the SAME route code (``project_answer``, ``run_answer``...),
which reads the request only through ``Call`` and returns an ``Answer``; each layer then
puts the ``Answer`` on the wire its own way (a Quart ``Response``, or ASGI messages).

This module owns the shared pieces of that: reading headers, query arguments and a JSON
body from a ``Call``; the caller (``authenticate_call``: Bearer header, three-way answer,
cached per call); JSON answers and the contract's error body (``error_answer`` for an
``AppError``, ``unexpected_answer`` for anything else, both logging their 5xx through the
one rate-limited logger). Nothing here imports Quart.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from server.api.validation import parse_json, validate_body
from server.errors import AppError, TooLarge, Unauthorized, UnsupportedMediaType
from server.observability.logging import RateLimitedLogger

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping

    from server.auth.principal import Principal
    from server.services import Services

log = logging.getLogger("stretto.http")
# One line per distinct failure per minute: an outage fails every request the same way.
failures = RateLimitedLogger(log, interval_s=60.0)

JSON_TYPE = "application/json; charset=utf-8"


class Call:
    """A request as the shared route code sees it: the ASGI ``scope`` (both layers have
    it), the process's ``Services``, and a way to read the body (``body``: an async
    iterator of chunks, read at most once). Header and argument lookups return the first
    value, as werkzeug's ``get`` does."""

    __slots__ = ("_args", "body", "principal", "scope", "services")

    def __init__(
        self,
        scope: Mapping[str, Any],
        services: Services,
        body: Callable[[], AsyncIterator[bytes]] | None = None,
    ) -> None:
        self.scope = scope
        self.services = services
        self.body = body
        self.principal: Principal | None = None
        self._args: dict[str, str] | None = None

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (lower-case bytes), or None."""
        for key, value in self.scope["headers"]:
            if key == name:
                return str(value.decode("latin-1"))
        return None

    def arg(self, name: str) -> str | None:
        """The first value of query argument ``name`` (UTF-8, bad bytes replaced)."""
        args = self._args
        if args is None:
            args = {}
            query = self.scope.get("query_string", b"").decode("latin-1")
            for key, value in parse_qsl(
                query, keep_blank_values=True, encoding="utf-8", errors="replace"
            ):
                args.setdefault(key, value)
            self._args = args
        return args.get(name)

    def has_arg(self, name: str) -> bool:
        self.arg(name)
        assert self._args is not None
        return name in self._args


@dataclass(slots=True)
class Answer:
    """A response before it is put on the wire: ``body`` bytes, or ``stream`` (an SSE
    body, which owns its resources: it must be iterated or closed). ``connection``: the
    stream's socket fast path (``server.api.sse_socket.SocketWriter``), when it has one."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str | None = None
    stream: AsyncGenerator[bytes, None] | None = None
    connection: Any = None


def json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def json_answer(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status, dict(headers or {}), json_bytes(body), JSON_TYPE)


def error_answer(error: AppError, method: str, path: str) -> Answer:
    """The contract's error body for ``error``; a 5xx is logged (rate-limited)."""
    if error.status >= 500:
        failures.warning(
            "answering %d %s: %s",
            error.status,
            error.code,
            error,
            extra={"method": method, "path": path},
        )
    return json_answer(error.body(), error.status, error.headers())


def unexpected_answer(error: BaseException, method: str, path: str) -> Answer:
    """500 ``internal_error`` for an exception that is not an ``AppError``; logged with
    its traceback (rate-limited), never put in the body."""
    failures.error("unhandled error in %s %s", method, path, exc_info=error)
    body = {"error": {"code": "internal_error", "message": "Internal server error.", "details": {}}}
    return json_answer(body, 500)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header; ``None`` when absent."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


async def authenticate_call(call: Call) -> Principal:
    """The authenticated caller (cached on ``call``); raises ``Unauthorized``."""
    if call.principal is not None:
        return call.principal
    from server.auth.principal import authenticate

    token = bearer_token(call.header(b"authorization"))
    if token is None:
        raise Unauthorized("Authentication required.")
    svc = call.services
    call.principal = await authenticate(token, svc.tokens, svc.store)
    return call.principal


def too_large(limit: int) -> TooLarge:
    return TooLarge(f"The body is larger than {limit} bytes.", {"max_bytes": limit})


def content_length(call: Call) -> int | None:
    raw = call.header(b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


async def read_call_body(call: Call, limit: int) -> bytes:
    """The raw body, refusing it with 413 as soon as it passes ``limit`` bytes."""
    length = content_length(call)
    if length is not None and length > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    if call.body is not None:
        async for chunk in call.body():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
    return b"".join(chunks)


def mimetype(content_type: str | None) -> str:
    """``type/subtype`` of a Content-Type header, lower-cased (werkzeug's ``mimetype``)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


async def read_call_json(call: Call, schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON object body validated strictly against ``schema`` (unknown fields rejected)."""
    if mimetype(call.header(b"content-type")) != "application/json":
        raise UnsupportedMediaType("The request body must be application/json.")
    raw = await read_call_body(call, call.services.settings.max_body_bytes)
    return validate_body(parse_json(raw), schema)
