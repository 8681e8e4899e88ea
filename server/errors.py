"""The one exception tree of stretto.

Everything a user can cause is an ``AppError``; the api layer turns it into the
contract's error body (``{"error": {"code", "message", "details"}}``) in one place.
Driver errors are re-raised as one of these with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_ERROR_TEXT_BYTES = 2048
"""Longest error message kept (UTF-8 bytes): messages that echo user values stay small."""


def bounded_text(text: str, max_bytes: int = MAX_ERROR_TEXT_BYTES) -> str:
    """``text`` unchanged when it fits ``max_bytes`` UTF-8 bytes, else its start and a marker
    naming the original size. Step errors, run errors and error bodies go through this so a
    message echoing a substituted 5 MB value stays a few KB."""
    if len(text) * 4 <= max_bytes:  # fast path: fits whatever the characters
        return text
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return text
    marker = f"... [truncated, {len(raw)} bytes]"
    head = raw[: max(0, max_bytes - len(marker))].decode("utf-8", "ignore")
    return head + marker


def _bounded_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        key: bounded_text(value) if isinstance(value, str) else value
        for key, value in (details or {}).items()
    }


class AppError(Exception):
    """Base of every error that maps to an HTTP status and a contract error code."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Internal server error."

    def __init__(self, message: str | None = None, details: Mapping[str, Any] | None = None):
        self.message = bounded_text(message or self.default_message)
        self.details: dict[str, Any] = _bounded_details(details)
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(AppError):
    status = 400
    code = "bad_request"
    default_message = "The request is not valid."


class InvalidJSON(BadRequest):
    code = "invalid_json"
    default_message = "The request body is not valid JSON."


class ValidationFailed(BadRequest):
    code = "validation_failed"
    default_message = "The request body failed validation."


class InvalidPath(BadRequest):
    code = "invalid_path"
    default_message = "The file path is not valid."


class InvalidPlan(BadRequest):
    code = "invalid_plan"
    default_message = "The plan is not valid."


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"
    default_message = "Missing, expired or invalid credentials."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="stretto"'}


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    default_message = "Email or password is incorrect."


class NotFound(AppError):
    status = 404
    code = "not_found"
    default_message = "Not found."


class Conflict(AppError):
    status = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."


class EmailTaken(Conflict):
    code = "email_taken"
    default_message = "An account with this email already exists."


class RunFinished(Conflict):
    code = "run_finished"
    default_message = "The run has already finished."


class RunStatusChanged(Conflict):
    """A conditional run transition found the run in another status (another request or
    instance moved it first)."""

    code = "conflict"
    default_message = "The run's status changed."


class VersionMismatch(AppError):
    status = 412
    code = "version_mismatch"
    default_message = "The resource changed: its version does not match."


class TooLarge(AppError):
    status = 413
    code = "too_large"
    default_message = "The request or resource is too large."


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"
    default_message = "The request body must be application/json."


class ModelRequired(AppError):
    """The request needs a language model: the offline provider cannot do it exactly."""

    status = 422
    code = "model_required"
    default_message = (
        "This request needs a language model: the offline provider does only what it can do "
        "exactly. Configure Gemini with STRETTO_GEMINI_API_KEY (or --gemini-api-key)."
    )


class RateLimited(AppError):
    status = 429
    code = "rate_limited"
    default_message = "Too many requests; try again later."

    def __init__(
        self,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        retry_after: float = 1.0,
    ):
        super().__init__(message, details)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after + 0.4999)))}


class NotReady(AppError):
    status = 503
    code = "not_ready"
    default_message = "The server is not ready."

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class ShuttingDown(AppError):
    status = 503
    code = "shutting_down"
    default_message = "The server is shutting down."

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class StoreUnavailable(NotReady):
    """The database cannot answer now (down, restarting, too slow): retry later.

    The argument is the cause (``str(error)``), for the logs and the CLI's start-up refusal;
    clients get only ``default_message`` and ``details``: a database address or a driver's
    words are not theirs to see. ``retryable`` tells background services that a later
    attempt may succeed.
    """

    default_message = "The database is unavailable."
    retryable: ClassVar[bool] = True

    def __init__(self, cause: str | None = None, details: Mapping[str, Any] | None = None):
        super().__init__(None, details)
        self.cause = cause or self.default_message

    def __str__(self) -> str:
        return self.cause


class StoreCorrupt(StoreUnavailable):
    """The database file is damaged (SQLite ``SQLITE_CORRUPT``/``SQLITE_NOTADB``)."""

    default_message = "The database is damaged."
    retryable = False


class StoreFailure(AppError):
    """The database rejected a statement (a bug, not an outage): 500, not retried."""

    default_message = "The database rejected the operation."


class SchemaTooNew(StoreUnavailable):
    """The database was migrated by a newer stretto: this binary refuses to use it."""

    default_message = "The database schema is newer than this version of stretto."
    retryable = False


class ToolError(Exception):
    """A failed tool or model call, in the terms the executor acts on (not an ``AppError``:
    it ends a step, not a request). ``code`` is snake_case, e.g. ``model_rate_limited``.

    ``retryable`` marks a transient failure (429, 503, timeouts) the executor retries with
    backoff; ``retry_after`` (seconds) is a lower bound on the next delay (a ``Retry-After``);
    ``status`` is the remote HTTP status, when there was one.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        message = bounded_text(message)  # errors echo user values: keep them small
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, retryable={self.retryable})"

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


ModelError = ToolError
"""What a model provider raises: the same class as ``ToolError`` (an AI tool lets it pass
unchanged), named for the call site."""
