"""Where errors become Quart responses (the bodies come from ``server.api.exchange``).

Every status >= 400 leaves the server as ``{"error": {"code", "message", "details"}}``:
``AppError`` subclasses, framework errors (404, 405, 413 from werkzeug/quart), and
unexpected exceptions (500, logged with the request id, never a stack trace in the body).
Every 5xx is logged, one line per distinct failure per minute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import request
from werkzeug.exceptions import HTTPException

from server.api.deps import json_response, to_response
from server.api.exchange import error_answer, unexpected_answer
from server.errors import AppError

if TYPE_CHECKING:
    from quart import Response
    from quart_trio import QuartTrio

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


def install_error_handling(app: QuartTrio) -> None:
    @app.errorhandler(AppError)
    async def handle_app_error(error: AppError) -> Response:
        return to_response(error_answer(error, request.method, request.path))

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
        return to_response(unexpected_answer(error, request.method, request.path))
