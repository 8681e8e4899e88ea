"""CORS for ``/api/``: the rules as pure functions over header lists, and one ASGI wrapper.

The rules (``CorsPolicy``) know nothing of Quart: any layer that produces responses (the
ASGI wrapper below, the ``/api/health`` fast path, a future server below Quart) calls
``policy.response_headers(origin)`` and ``policy.preflight(...)``.

- An allowed origin (exact match, ``STRETTO_CORS_ORIGINS``) gets on every response,
  errors and SSE streams included: ``Access-Control-Allow-Origin: <origin>``,
  ``Vary: Origin`` and ``Access-Control-Expose-Headers``.
- A preflight (``OPTIONS`` + ``Origin`` + ``Access-Control-Request-Method``) on an
  ``/api/`` path is answered here, never by the framework (whose automatic ``OPTIONS``
  answer is HTML): ``204`` with the allowed methods and headers and a max age for an
  allowed origin, a bare ``204`` (no CORS headers: the browser blocks) for any other.
- Any other origin gets no CORS headers. No credentials mode: auth is a Bearer header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quart import request

from server.observability.http import request_id_from

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from quart import Quart, Response

    ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
    Headers = list[tuple[bytes, bytes]]

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = (
    "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, Last-Event-ID, "
    "X-Request-ID"
)
EXPOSE_HEADERS = "ETag, Location, Retry-After, X-Request-Id"
MAX_AGE_S = 600  # Chromium caps preflight caching at 7200 s
API_PREFIX = "/api/"
# Paths answered below Quart (server.app.health_fast_path): their headers are added here.
BELOW_QUART = frozenset({"/api/health"})

_ORIGIN = b"origin"
_REQUEST_METHOD = b"access-control-request-method"
_REQUEST_ID = b"x-request-id"
_VARY = b"vary"


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """The allowed origins and the headers they get. Empty ``origins``: CORS is off."""

    origins: frozenset[str]

    @property
    def enabled(self) -> bool:
        return bool(self.origins)

    def allows(self, origin: str | None) -> bool:
        return origin is not None and origin in self.origins

    def response_headers(self, origin: str | None) -> Headers:
        """Headers to add to any response to a request from ``origin``."""
        if not self.allows(origin):
            return []
        assert origin is not None
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
        ]

    def preflight_headers(self, origin: str | None) -> Headers:
        """The headers of the 204 answering a preflight from ``origin``."""
        if not self.allows(origin):
            return [(b"vary", b"Origin")]
        return [
            *self.response_headers(origin),
            (b"vary", b"Origin"),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
            (b"access-control-max-age", str(MAX_AGE_S).encode()),
        ]


def is_preflight(method: str, path: str, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """An ``OPTIONS`` on an ``/api/`` path carrying ``Origin`` and a requested method."""
    if method != "OPTIONS" or not (path.startswith(API_PREFIX) or path == API_PREFIX[:-1]):
        return False
    names = {name for name, _ in headers}
    return _ORIGIN in names and _REQUEST_METHOD in names


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def with_vary_origin(headers: Headers) -> Headers:
    """``headers`` with ``Origin`` added to ``Vary`` (merged into an existing one)."""
    out: Headers = []
    merged = False
    for key, value in headers:
        if key.lower() == _VARY and not merged:
            if b"origin" not in value.lower() and value.strip() != b"*":
                value = value + b", Origin"
            merged = True
        out.append((key, value))
    if not merged:
        out.append((b"vary", b"Origin"))
    return out


def cors_middleware(inner: ASGIApp, policy: CorsPolicy) -> ASGIApp:
    """``inner`` with preflights answered, and CORS headers added to the responses that
    are produced below Quart (``BELOW_QUART`` paths, e.g. the ``/api/health`` fast path).

    Quart's own responses get theirs from ``install_cors``'s ``after_request`` hook instead:
    wrapping ``send`` for them would hide hypercorn's ``send`` from the SSE direct-write
    path (``server.events.direct``). Returns ``inner`` itself when CORS is off.
    """
    if not policy.enabled:
        return inner

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        headers = scope["headers"]
        origin = header(headers, _ORIGIN)
        if is_preflight(scope["method"], scope["path"], headers):
            request_id = request_id_from(header(headers, _REQUEST_ID)).encode("latin-1")
            response_headers = [
                *policy.preflight_headers(origin),
                (b"content-length", b"0"),
                (b"x-request-id", request_id),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": response_headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if scope["path"] not in BELOW_QUART:
            await inner(scope, receive, send)
            return
        extra = policy.response_headers(origin)

        async def send_with_cors(message: Any) -> None:
            if message["type"] == "http.response.start":
                given = list(message.get("headers", ()))
                present = {name.lower() for name, _ in given}  # Quart's hook may have run
                merged = with_vary_origin([*given, *(h for h in extra if h[0] not in present)])
                message = {**message, "headers": merged}
            await send(message)

        await inner(scope, receive, send_with_cors)

    return asgi_app


def install_cors(app: Quart, policy: CorsPolicy) -> None:
    """CORS on ``app``: call once, after every other wrapper of ``app.asgi_app``."""
    if not policy.enabled:
        return

    async def add_headers(response: Response) -> Response:
        for key, value in policy.response_headers(request.headers.get("Origin")):
            response.headers[key.decode("latin-1")] = value.decode("latin-1")
        response.vary.add("Origin")
        return response

    app.after_request(add_headers)
    app.asgi_app = cors_middleware(app.asgi_app, policy)  # type: ignore[method-assign,assignment]
