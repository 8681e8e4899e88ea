"""CORS for ``/api/``: the rules as pure functions over header lists, and one ASGI wrapper.

The rules (``CorsPolicy``) know nothing of Quart: both layers that produce responses (Quart's
hook, ``install_cors``, and the hot routes below Quart, ``server.api.edge``) call
``policy.headers_for(origin)``; preflights are answered by ``cors_middleware``.

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

from server.observability.http import request_id_of

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

    def headers_for(self, origin: str | None) -> Headers:
        """The CORS headers of any response (not a preflight) to a request from
        ``origin``, ``Vary: Origin`` included; none when CORS is off. Both HTTP layers add
        these: Quart's hook (``install_cors``) and ``server.api.edge``."""
        if not self.enabled:
            return []
        return [*self.response_headers(origin), (_VARY, b"Origin")]

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
    """``inner`` with preflights answered. Responses get their CORS headers from the layer
    that produces them (``CorsPolicy.headers_for``): Quart's through ``install_cors``'s
    ``after_request`` hook, the ones below Quart from ``server.api.edge``. Wrapping ``send``
    here instead would hide hypercorn's ``send`` from the SSE socket fast path
    (``server.api.sse_socket``). Returns ``inner`` itself when CORS is off.
    """
    if not policy.enabled:
        return inner

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and is_preflight(
            scope["method"], scope["path"], scope["headers"]
        ):
            headers = scope["headers"]
            response_headers = [
                *policy.preflight_headers(header(headers, _ORIGIN)),
                (b"content-length", b"0"),
                (b"x-request-id", request_id_of(headers).encode("latin-1")),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": response_headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await inner(scope, receive, send)

    return asgi_app


def install_cors(app: Quart, policy: CorsPolicy) -> None:
    """CORS on ``app``: call once, after every other wrapper of ``app.asgi_app``."""
    if not policy.enabled:
        return

    async def add_headers(response: Response) -> Response:
        for key, value in policy.headers_for(request.headers.get("Origin")):
            if key == _VARY:
                response.vary.add(value.decode("latin-1"))
            else:
                response.headers[key.decode("latin-1")] = value.decode("latin-1")
        return response

    app.after_request(add_headers)
    app.asgi_app = cors_middleware(app.asgi_app, policy)  # type: ignore[method-assign,assignment]
