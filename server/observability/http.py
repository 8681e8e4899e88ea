"""Per-request observability for the Quart app: request ids, metrics, one access-log line.

`install_request_observability(app, metrics)` registers a ``before_request`` hook (takes
the client's ``X-Request-ID`` when it is sane, else a new id, and binds it for logging) and
an ``after_request`` hook (echoes ``X-Request-ID``, records the request by route template
and status, logs ``stretto.access`` at debug level). The query string is never logged (SSE
tickets live there). Streams are measured to their response head.
"""

from __future__ import annotations

import logging
import re
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING

from quart import request

from server.observability.logging import bind_request_id, current_request_id
from server.timeutil import new_id

if TYPE_CHECKING:
    from collections.abc import Iterable

    from quart import Quart
    from quart.wrappers import Response

    from server.observability.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_started: ContextVar[float | None] = ContextVar("stretto_request_started", default=None)
_access = logging.getLogger("stretto.access")


def request_id_from(header_value: str | None) -> str:
    """The client's request id when it is short and plain, else a fresh one."""
    if header_value is not None and _SANE_ID.fullmatch(header_value):
        return header_value
    return new_id()


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The request id for a request with these ASGI ``headers``: the client's sane
    ``X-Request-ID``, else a fresh one (read from the scope: werkzeug's ``Headers.get``
    raises and catches an HTTP exception per request when the header is absent)."""
    for name, value in headers:
        if name == _REQUEST_ID_KEY:
            return request_id_from(value.decode("latin-1"))
    return request_id_from(None)


def record_request(
    metrics: Metrics, method: str, path: str, rule: str | None, status: int, seconds: float
) -> None:
    """One answered request: its metrics and its access-log line. Both HTTP layers (the
    Quart hooks below, and ``server.api.edge`` below Quart) call this, once per request."""
    metrics.observe_request(method, rule, status, seconds)
    if _access.isEnabledFor(logging.DEBUG):  # off in production: skip building the extras
        _access.debug(
            "%s %s %d",
            method,
            path,
            status,
            extra={
                "method": method,
                "route": rule,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
            },
        )


def install_request_observability(app: Quart, metrics: Metrics) -> None:
    """Register the hooks on ``app`` (call once, before serving)."""

    async def start() -> None:
        _started.set(time.perf_counter())
        bind_request_id(request_id_of(request.scope["headers"]))

    async def finish(response: Response) -> Response:
        started = _started.get()
        seconds = 0.0 if started is None else time.perf_counter() - started
        request_id = current_request_id() or request_id_from(None)
        response.headers[REQUEST_ID_HEADER] = request_id
        rule = request.url_rule.rule if request.url_rule is not None else None
        record_request(metrics, request.method, request.path, rule, response.status_code, seconds)
        return response

    app.before_request(start)
    app.after_request(finish)
