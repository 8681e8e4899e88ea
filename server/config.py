"""Settings: read once from flags and ``STRETTO_*`` environment variables, validated, frozen.

Every field carries its help text, its environment variable and its parser in the field
metadata, so ``stretto serve --help`` and the README's table come from one place.
Precedence: command-line flag > environment variable > default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.timeutil import DAYS, HOURS, MINUTES, SECONDS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

KIB = 1024
MIB = 1024 * KIB


class SettingsError(ValueError):
    """An invalid setting; the CLI prints it on one line and exits 2."""


def _setting(default: Any, help: str, *, env: str | None = None, secret: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "env": env, "secret": secret})


@dataclass(frozen=True, slots=True)
class Settings:
    # -- server ----------------------------------------------------------------------------
    host: str = _setting("127.0.0.1", "Address to listen on.")
    port: int = _setting(8080, "TCP port to listen on (0 picks a free one).")
    data_dir: Path = _setting(
        Path("stretto-data"), "Directory for the SQLite database and the generated JWT secret."
    )
    database_url: str | None = _setting(
        None,
        "postgresql://... selects PostgreSQL; unset uses SQLite in the data directory.",
        env="DATABASE_URL",
        secret=True,
    )
    db_pool_size: int = _setting(10, "PostgreSQL pool size (connections per process).")
    backlog: int = _setting(4096, "Listen backlog (SSE-heavy loads open many connections at once).")
    max_body_bytes: int = _setting(1 * MIB, "Largest JSON request body, in bytes (larger: 413).")
    keep_alive_s: float = _setting(
        75 * SECONDS, "Seconds an idle keep-alive connection stays open after each response."
    )
    body_read_timeout_s: float = _setting(
        15 * SECONDS, "Seconds a request body may go without sending a byte before it is dropped."
    )
    max_inflight_body_bytes: int = _setting(
        128 * MIB,
        "Request body bytes all connections may hold at once (declared or received); "
        "past it: 503 with Retry-After.",
    )
    shutdown_grace_s: float = _setting(
        10 * SECONDS, "On SIGTERM: seconds running runs get to finish before they are cancelled."
    )
    log_level: str = _setting("info", "Log level: debug, info, warning, error.")
    log_format: str = _setting("json", "Log format: json (one object per line) or text.")
    instance_id: str | None = _setting(
        None, "Name of this instance (leases, logs); default: hostname-pid."
    )
    # -- auth ------------------------------------------------------------------------------
    jwt_secret: str | None = _setting(
        None,
        "HS256 secret (32+ bytes). Unset with HS256: generated once into the data directory.",
        secret=True,
    )
    jwt_algorithm: str = _setting(
        "HS256", "Access-token algorithm: HS256, RS256 or ES256 (pinned; never taken from tokens)."
    )
    jwt_public_key_file: Path | None = _setting(
        None, "PEM public key verifying RS256/ES256 tokens minted by an external auth service."
    )
    jwt_jwks_file: Path | None = _setting(
        None, "JWKS file verifying RS256/ES256 tokens minted by an external auth service."
    )
    jwt_issuer: str = _setting("stretto", "Expected and issued `iss` claim.")
    jwt_audience: str = _setting("stretto", "Expected and issued `aud` claim.")
    access_token_ttl_s: int = _setting(int(15 * MINUTES), "Access-token lifetime in seconds.")
    refresh_token_ttl_s: int = _setting(int(30 * DAYS), "Refresh-token lifetime in seconds.")
    argon2_time_cost: int = _setting(3, "argon2id passes per password hash.")
    argon2_memory_kib: int = _setting(64 * 1024, "argon2id memory per password hash, in KiB.")
    login_max_failures: int = _setting(5, "Failed logins per email and client address before 429.")
    login_window_s: float = _setting(
        5 * MINUTES, "Window of the failed-login rate limit, in seconds."
    )
    # -- files -----------------------------------------------------------------------------
    max_file_bytes: int = _setting(
        5 * MIB, "Largest file in a project's virtual file system, in bytes."
    )
    max_files_per_project: int = _setting(10_000, "Most files one project may hold.")
    max_project_bytes: int = _setting(200 * MIB, "Most bytes one project's files may total.")
    # -- server-sent events ----------------------------------------------------------------
    sse_heartbeat_s: float = _setting(
        15 * SECONDS, "Idle SSE streams get a `: ping` comment this often."
    )
    sse_max_lifetime_s: float = _setting(
        1 * HOURS,
        "An SSE stream is closed after this long (jittered +-10%); the client reconnects.",
    )
    sse_buffer: int = _setting(
        256, "Events queued per SSE subscriber before it is disconnected as too slow."
    )
    sse_ticket_ttl_s: int = _setting(
        int(5 * MINUTES), "Lifetime of an SSE stream ticket, in seconds."
    )
    sse_direct_writes: bool = _setting(
        True,
        "HTTP/1.1 streams: write frames to the socket from the publisher (no task switch per "
        "frame); 0 sends every frame through Quart and hypercorn.",
    )
    event_retention_count: int = _setting(10_000, "Events kept per project for replay (newest).")
    event_retention_s: float = _setting(
        7 * DAYS, "Events older than this may be trimmed (beyond the count kept)."
    )
    # -- workflow --------------------------------------------------------------------------
    max_plan_steps: int = _setting(100, "Most steps in one plan.")
    run_concurrency: int = _setting(16, "Steps of one run executing at once.")
    global_concurrency: int = _setting(
        256, "Steps executing at once across all runs of this process."
    )
    step_output_max_bytes: int = _setting(
        64 * KIB, "Step outputs larger than this are stored truncated, with a marker."
    )
    run_lease_s: float = _setting(
        30 * SECONDS,
        "Lease a process holds on a running run; expired leases are resumed elsewhere.",
    )
    # -- AI --------------------------------------------------------------------------------
    gemini_api_key: str | None = _setting(
        None, "Google Gemini API key; unset uses the offline provider.", secret=True
    )
    gemini_model: str = _setting("gemini-2.5-flash", "Gemini model name.")
    gemini_base_url: str | None = _setting(
        None, "Override the Gemini API endpoint (tests, proxies)."
    )
    ai_timeout_s: float = _setting(60 * SECONDS, "Upper bound on one model call, in seconds.")
    ai_concurrency: int = _setting(16, "Model calls in flight at once across the process.")
    ai_max_prompt_chars: int = _setting(20_000, "Longest prompt accepted, in characters.")
    ai_max_context_bytes: int = _setting(
        256 * KIB, "Most file bytes loaded as model context per call."
    )
    offline_latency_ms: float = _setting(
        0.0, "Simulated latency of each offline model call (benchmarks)."
    )

    # -- derived ---------------------------------------------------------------------------
    @property
    def uses_postgres(self) -> bool:
        return self.database_url is not None

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "stretto.sqlite3"

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict, secrets replaced: safe to log."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value is not None:
                value = "***"
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def env_name(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("env") or f"STRETTO_{f.name.upper()}")


def _field_type(f: dataclasses.Field[Any]) -> str:
    return str(f.type).replace(" ", "")


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _parse_value(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = _field_type(f)
    optional = kind.endswith("|None")
    base = kind.removesuffix("|None")
    if optional and raw == "":
        return None
    parsers: dict[str, Callable[[str], Any]] = {
        "int": int,
        "float": float,
        "str": str,
        "Path": Path,
        "bool": _parse_bool,
    }
    try:
        return parsers[base](raw)
    except (KeyError, ValueError):
        raise SettingsError(f"{f.name}: expected {base}, got {raw!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per setting, with its help and environment variable."""
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        shown = "unset" if default is None else default
        parser.add_argument(
            flag,
            dest=f.name,
            default=None,
            metavar=_field_type(f).removesuffix("|None").upper(),
            help=f"{f.metadata['help']} [env {env_name(f)}; default {shown}]".replace("%", "%%"),
        )


def load_settings(
    args: argparse.Namespace | Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from flags (strings or parsed values) over the environment over defaults."""
    environ = os.environ if environ is None else environ
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        if given.get(f.name) is not None:
            raw = given[f.name]
            values[f.name] = _parse_value(f, raw) if isinstance(raw, str) else raw
        elif env_name(f) in environ:
            values[f.name] = _parse_value(f, environ[env_name(f)])
    try:
        settings = Settings(**values)
    except TypeError as exc:  # pragma: no cover - unknown keys are a programming error
        raise SettingsError(str(exc)) from None
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    def check(ok: bool, message: str) -> None:
        if not ok:
            raise SettingsError(message)

    check(0 <= s.port <= 65535, f"port: {s.port} is not a TCP port")
    check(
        s.database_url is None or s.database_url.startswith(("postgresql://", "postgres://")),
        "DATABASE_URL: must start with postgresql://",
    )
    check(
        s.jwt_algorithm in ("HS256", "RS256", "ES256"),
        f"jwt_algorithm: {s.jwt_algorithm} is not one of HS256, RS256, ES256",
    )
    if s.jwt_algorithm == "HS256":
        check(
            s.jwt_secret is None or len(s.jwt_secret.encode()) >= 32,
            "jwt_secret: must be at least 32 bytes for HS256",
        )
    else:
        check(
            (s.jwt_public_key_file is None) != (s.jwt_jwks_file is None),
            f"{s.jwt_algorithm}: set exactly one of jwt_public_key_file, jwt_jwks_file",
        )
        for path in (s.jwt_public_key_file, s.jwt_jwks_file):
            check(path is None or path.is_file(), f"{path}: no such file")
    check(
        s.log_level in ("debug", "info", "warning", "error"),
        f"log_level: {s.log_level} is not a level",
    )
    check(s.log_format in ("json", "text"), f"log_format: {s.log_format} is not json or text")
    positives: Sequence[str] = (
        "db_pool_size",
        "backlog",
        "max_body_bytes",
        "keep_alive_s",
        "body_read_timeout_s",
        "max_inflight_body_bytes",
        "access_token_ttl_s",
        "refresh_token_ttl_s",
        "login_max_failures",
        "login_window_s",
        "max_file_bytes",
        "max_files_per_project",
        "max_project_bytes",
        "sse_heartbeat_s",
        "sse_max_lifetime_s",
        "sse_buffer",
        "sse_ticket_ttl_s",
        "event_retention_count",
        "event_retention_s",
        "max_plan_steps",
        "run_concurrency",
        "global_concurrency",
        "step_output_max_bytes",
        "run_lease_s",
        "ai_timeout_s",
        "ai_concurrency",
        "ai_max_prompt_chars",
        "ai_max_context_bytes",
    )
    for name in positives:
        check(getattr(s, name) > 0, f"{name}: must be positive")
    check(s.offline_latency_ms >= 0, "offline_latency_ms: must not be negative")
    check(s.shutdown_grace_s >= 0, "shutdown_grace_s: must not be negative")
