"""Log lines to stdout: one JSON object per line (journald and Fly.io friendly) or plain text.

Owns the root logger's output. Every line carries the request id of the request being
served (a context variable set per request) and any ``extra={...}`` fields. Secrets never
leave the process: access and refresh tokens, SSE tickets, ``Authorization`` headers,
passwords, API keys and database passwords are redacted from the message, the extra
fields and tracebacks, whoever logged them (our code, hypercorn, a library).

``RateLimitedLogger`` keeps repeated identical failures (a database outage seen by every
request and background loop) to one line per interval.

SIGHUP: logs go to stdout, which systemd (journald) or Fly.io's runner owns and rotates;
there is no log file to reopen, so SIGHUP needs no log handling (the server only logs it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
from collections import OrderedDict
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from server.config import Settings

REDACTED = "[REDACTED]"

SENSITIVE_KEYS = frozenset(
    {
        "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
        "x-goog-api-key", "access_token", "refresh_token", "token", "ticket", "password",
        "new_password", "secret", "jwt_secret", "api_key", "gemini_api_key", "client_secret",
    }
)  # fmt: skip
"""Field names (case-insensitive; ``-`` and ``_`` alike) whose values are never logged."""

_KEY_NAMES = r"access_token|refresh_token|ticket|token|password|api_key|key|secret|jwt_secret"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer xxx / Basic xxx (header dumps, curl lines)
    (re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+(?:\s+[^\s\"',}]+)?"),
     r"\1" + REDACTED),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    # "access_token": "..." in JSON bodies
    (re.compile(rf"(?i)([\"'](?:{_KEY_NAMES})[\"']\s*:\s*[\"'])[^\"']*"), r"\1" + REDACTED),
    # ?ticket=... &access_token=... and key=value pairs in text
    (re.compile(rf"(?i)(\b(?:{_KEY_NAMES})=)[^&\s\"',;#]+"), r"\1" + REDACTED),
    # any JWT (header.payload.signature, base64url with an {"alg" header)
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # Google API keys
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), REDACTED),
    # postgresql://user:password@host
    (re.compile(r"(?i)(\bpostgres(?:ql)?://[^:/@\s]+:)[^@\s]+@"), r"\1" + REDACTED + "@"),
)  # fmt: skip

_request_id: ContextVar[str | None] = ContextVar("stretto_request_id", default=None)

# LogRecord attributes that are not `extra=` fields.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName",
}  # fmt: skip
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}  # fmt: skip


# -- request ids --------------------------------------------------------------------------
def current_request_id() -> str | None:
    """The id of the request the current task serves, if any."""
    return _request_id.get()


@contextlib.contextmanager
def request_id_bound(request_id: str | None) -> Iterator[None]:
    """Lines logged inside this block (same task, or tasks it starts) carry ``request_id``."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def bind_request_id(request_id: str | None) -> None:
    """Set the request id for the rest of the current context (a request's task)."""
    _request_id.set(request_id)


# -- redaction ----------------------------------------------------------------------------
def redact_text(text: str) -> str:
    """``text`` with tokens, tickets, authorization values, passwords and keys replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _is_sensitive(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in _SENSITIVE_NORMALIZED


_SENSITIVE_NORMALIZED = frozenset(k.replace("-", "_") for k in SENSITIVE_KEYS)


def redact(value: Any) -> Any:
    """A JSON-friendly copy of ``value`` with sensitive keys' values and secrets in text hidden."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): REDACTED if _is_sensitive(k) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        if isinstance(value, tuple) and len(value) == 2 and _is_sensitive(value[0]):
            return [value[0], REDACTED]  # a (header, value) pair
        return [redact(v) for v in value]
    return redact_text(str(value))


# -- formatting ---------------------------------------------------------------------------
def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: REDACTED if _is_sensitive(key) else redact(value)
        for key, value in vars(record).items()
        if key not in _RECORD_FIELDS and not key.startswith("_")
    }


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_info:
        return redact_text(formatter.formatException(record.exc_info))
    if record.stack_info:
        return redact_text(formatter.formatStack(record.stack_info))
    return None


class JsonFormatter(logging.Formatter):
    """``{"ts","level","logger","msg","request_id"?, <extra fields>, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id is not None:
            line["request_id"] = request_id
        for key, value in _extras(record).items():
            line.setdefault(key, value)
        exc = _exception_text(self, record)
        if exc is not None:
            line["exc"] = exc
        return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> <logger>: <msg> key=value ...`` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, f"{record.name}:"]
        parts.append(redact_text(record.getMessage()))
        request_id = getattr(record, "request_id", None) or current_request_id()
        fields = _extras(record)
        if request_id is not None:
            fields["request_id"] = request_id
        parts.extend(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())
        text = " ".join(parts)
        exc = _exception_text(self, record)
        return text if exc is None else f"{text}\n{exc}"


class _StrettoHandler(logging.StreamHandler[TextIO]):
    """Marks the handler `configure_logging` installed, so a second call replaces it."""


DRIVER_LOG_INTERVAL_S = 10.0


class DriverLogFilter(logging.Filter):
    """asyncpg's own records in one line, each distinct line at most once per interval.

    During an outage asyncpg's pool logs a full traceback every time it fails to reopen a
    connection (``Failed to restore the pool connection floor``): some 30 lines a try. The
    store already logs its errors rate-limited; this keeps the driver's to one line naming
    the error (no traceback) and drops repeats within ``interval_s``.
    """

    def __init__(
        self,
        interval_s: float = DRIVER_LOG_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 256,
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._max_keys = max_keys
        self._last: OrderedDict[str, float] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("asyncpg"):
            return True
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            detail = str(error).splitlines()[0] if str(error) else ""
            record.msg = f"{record.getMessage()}: {type(error).__name__}: {detail}".rstrip(": ")
            record.args = None
            record.exc_info = None
            record.exc_text = None
        key = record.getMessage()
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self._max_keys:
            self._last.popitem(last=False)
        return True


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Send every logger's records to stdout (or ``stream``) in ``settings.log_format`` at
    ``settings.log_level``. Idempotent: replaces the handler a previous call installed and
    leaves other handlers (pytest's capture) alone. Returns the installed handler."""
    handler = _StrettoHandler(sys.stdout if stream is None else stream)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(DriverLogFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StrettoHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(settings.log_level, logging.INFO))
    # Libraries that are chatty at INFO/DEBUG about things operators do not act on.
    for name in ("hpack", "httpcore", "httpx", "asyncio", "trio_asyncio", "google_genai"):
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
    return handler


# -- rate limiting --------------------------------------------------------------------------
class RateLimitedLogger:
    """Logs repeated identical lines at most once per ``interval_s`` per distinct line.

    Identical means same level and same formatted message. The first line of a burst is
    logged at once; the repeats within ``interval_s`` are counted, and the next line logged
    for that message says how many were suppressed (``suppressed`` extra field). At most
    ``max_keys`` distinct messages are tracked (the oldest is forgotten first). Thread-safe
    enough for its use: called from the event loop and worker threads, a race costs at most
    one extra line. The clock is ``time.monotonic`` unless ``clock`` is given (tests).
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 60.0,
        *,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._clock = clock
        self._last: OrderedDict[tuple[int, str], tuple[float, int]] = OrderedDict()

    def log(self, level: int, msg: str, *args: object, **kwargs: Any) -> bool:
        """Log like ``Logger.log`` unless the same line was logged within ``interval_s``.
        Returns whether it was logged."""
        if not self.logger.isEnabledFor(level):
            return False
        key = (level, msg % args if args else msg)
        now = self._clock()
        previous = self._last.get(key)
        if previous is not None and now - previous[0] < self.interval_s:
            self._last[key] = (previous[0], previous[1] + 1)
            return False
        suppressed = previous[1] if previous is not None else 0
        self._last[key] = (now, 0)
        self._last.move_to_end(key)
        while len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        if suppressed:
            extra = dict(kwargs.pop("extra", None) or {})
            extra["suppressed"] = suppressed
            kwargs["extra"] = extra
        kwargs.setdefault("stacklevel", 2)
        self.logger.log(level, msg, *args, **kwargs)
        return True

    def warning(self, msg: str, *args: object, **kwargs: Any) -> bool:
        return self.log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: str, *args: object, **kwargs: Any) -> bool:
        return self.log(logging.ERROR, msg, *args, **kwargs)
