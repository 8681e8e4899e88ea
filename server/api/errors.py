"""The one place where errors become responses.

Every status >= 400 leaves the server as ``{"error": {"code", "message", "details"}}``:
``AppError`` subclasses, framework errors (404, 405, 413 from werkzeug/quart), and
unexpected exceptions (500, logged with the request id, never a stack trace in the body).
Every 5xx is logged, one line per distinct failure per minute.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from quart import request
from werkzeug.exceptions import HTTPException

from server.api.deps import json_response
from server.errors import AppError
from server.observability.logging import RateLimitedLogger

if TYPE_CHECKING:
    from quart import Response
    from quart_trio import QuartTrio

log = logging.getLogger("stretto.http")
# One line per distinct failure per minute: an outage fails every request the same way.
failures = RateLimitedLogger(log, interval_s=60.0)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def app_error_response(error: AppError) -> Response:
    return json_response(error.body(), error.status, error.headers())


def install_error_handling(app: QuartTrio) -> None:
    @app.errorhandler(AppError)
    async def handle_app_error(error: AppError) -> Response:
        if error.status >= 500:
            failures.warning(
                "answering %d %s: %s",
                error.status,
                error.code,
                error,
                extra={"method": request.method, "path": request.path},
            )
        return app_error_response(error)

    @app.errorhandler(HTTPException)
    async def handle_http_exception(error: HTTPException) -> Response:
        status = error.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        message = error.description or error.name
        if status == 404:
            message = "No route matches this URL."
        elif status == 413:
            message = "The request body is too large."
        response = json_response(
            {"error": {"code": code, "message": message, "details": {}}}, status
        )
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    async def handle_unexpected(error: Exception) -> Response:
        failures.error(
            "unhandled error in %s %s",
            request.method,
            request.path,
            exc_info=error,
        )
        body = {
            "error": {"code": "internal_error", "message": "Internal server error.", "details": {}}
        }
        return json_response(body, 500)
