"""The quart-trio application: blueprints, error handling, request metrics.

``create_app`` only assembles; it starts nothing. ``server.runtime`` owns the services and
serves the app with hypercorn.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from quart_trio import QuartTrio
from werkzeug.routing import PathConverter

from server import __version__
from server.api import (
    auth,
    changes,
    client,
    console,
    files,
    health,
    openapi,
    projects,
    sse,
    transfer,
    workflow,
)
from server.api.cors import CorsPolicy, install_cors
from server.api.deps import check_request_target
from server.api.errors import install_error_handling
from server.observability.http import (
    REQUEST_ID_HEADER,
    install_request_observability,
    request_id_from,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from server.observability.metrics import Metrics
    from server.services import Services

    ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

# Body size is enforced per route by ``server.api.deps.read_body``; this is the backstop
# for anything else (the largest legitimate body, plus room for framing).
_BODY_BACKSTOP_MARGIN = 64 * 1024


class VfsPathConverter(PathConverter):
    """Everything after ``files/``, leading slash included, so that a bad path reaches the
    path rules (400 ``invalid_path``) instead of falling through to a 404."""

    regex = ".+?"
    part_isolating = False


def create_app(services: Services) -> QuartTrio:
    app = QuartTrio("stretto")
    settings = services.settings
    app.config.update(
        MAX_CONTENT_LENGTH=max(settings.max_body_bytes, settings.max_file_bytes)
        + _BODY_BACKSTOP_MARGIN,
        JSON_SORT_KEYS=False,
        PROVIDE_AUTOMATIC_OPTIONS=True,
    )
    app.url_map.converters["vfspath"] = VfsPathConverter
    app.url_map.merge_slashes = False  # "a//b" is an invalid path, not a redirect
    app.url_map.strict_slashes = False
    app.extensions["stretto"] = services
    install_request_observability(app, services.metrics)
    install_error_handling(app)
    app.before_request(check_request_target)  # bad %-encoding or NUL: 400 before routes run
    modules = (
        health,
        auth,
        projects,
        files,
        transfer,
        workflow,
        changes,
        sse,
        client,
        openapi,
        console,
    )
    for module in modules:
        app.register_blueprint(module.blueprint)
    fast = health_fast_path(app.asgi_app, services.metrics)
    app.asgi_app = fast  # type: ignore[method-assign,assignment]
    install_cors(app, CorsPolicy(settings.cors_origin_set))  # last: it wraps the fast path
    return app


HEALTH_PATH = "/api/health"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")


def health_fast_path(inner: ASGIApp, metrics: Metrics) -> ASGIApp:
    """``GET /api/health`` answered at the ASGI layer, skipping Quart's request machinery
    (about a quarter of a request's CPU here); the same body, ``X-Request-ID`` and request
    metrics as the Quart route (``server.api.health``), which still serves other methods."""
    body = json.dumps(
        {"status": "ok", "version": __version__}, separators=(",", ":"), ensure_ascii=False
    ).encode()
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != HEALTH_PATH or scope["method"] != "GET":
            await inner(scope, receive, send)
            return
        started = time.perf_counter()
        given = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID_KEY:
                given = value.decode("latin-1")
                break
        request_id = request_id_from(given).encode("latin-1")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*headers, (b"x-request-id", request_id)],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
        metrics.observe_request("GET", HEALTH_PATH, 200, time.perf_counter() - started)

    return asgi_app
