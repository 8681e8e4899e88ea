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


def _request_id_header() -> str | None:
    """The client's ``X-Request-ID`` from the ASGI scope (werkzeug's ``Headers.get`` raises
    and catches an HTTP exception per request when the header is absent: the usual case)."""
    for name, value in request.scope["headers"]:
        if name == _REQUEST_ID_KEY:
            return value.decode("latin-1")
    return None


def install_request_observability(app: Quart, metrics: Metrics) -> None:
    """Register the hooks on ``app`` (call once, before serving)."""

    async def start() -> None:
        _started.set(time.perf_counter())
        bind_request_id(request_id_from(_request_id_header()))

    async def finish(response: Response) -> Response:
        started = _started.get()
        seconds = 0.0 if started is None else time.perf_counter() - started
        request_id = current_request_id() or request_id_from(None)
        response.headers[REQUEST_ID_HEADER] = request_id
        rule = request.url_rule.rule if request.url_rule is not None else None
        metrics.observe_request(request.method, rule, response.status_code, seconds)
        if _access.isEnabledFor(logging.DEBUG):  # off in production: skip building the extras
            _access.debug(
                "%s %s %d",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "route": rule,
                    "status": response.status_code,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )
        return response

    app.before_request(start)
    app.after_request(finish)
