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

from server.config_checks import SettingsError, validate
from server.timeutil import DAYS, HOURS, MINUTES, SECONDS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

KIB = 1024
MIB = 1024 * KIB


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
    db_timeout_s: float = _setting(
        5 * SECONDS,
        "Deadline of one database call (pool acquire plus query); past it: 503 not_ready.",
    )
    backlog: int = _setting(4096, "Listen backlog (SSE-heavy loads open many connections at once).")
    max_connections: int = _setting(
        0, "Client connections open at once; past it: 503 and close. 0: open-files limit - 256."
    )
    workers: str = _setting(
        "1", "Server processes sharing the port (SO_REUSEPORT): a number, or auto (one per core)."
    )
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
    cors_origins: str = _setting(
        "",
        "Browser origins allowed to call /api/ (CORS): exact origins such as "
        "https://app.example.com, comma-separated; empty: no CORS.",
    )
    log_level: str = _setting("info", "Log level: debug, info, warning, error.")
    log_format: str = _setting("json", "Log format: json (one object per line) or text.")
    instance_id: str | None = _setting(
        None, "Name of this instance (leases, logs); default: hostname-pid."
    )
    console: bool = _setting(
        True, "Serve the built-in web console at / (0: / answers 404 like any unknown URL)."
    )
    metrics_token: str | None = _setting(
        None,
        "When set, GET /metrics needs `Authorization: Bearer <token>` (else 401); unset: open.",
        secret=True,
    )
    # -- auth ------------------------------------------------------------------------------
    auth_mode: str = _setting(
        "auto",
        "local: stretto registers users and mints HS256 tokens. external: another auth "
        "service mints them (HS256 shared secret, RS256/ES256 keys), stretto only verifies "
        "them and creates users on first sight. auto: local with HS256, else external.",
    )
    jwt_secret: str | None = _setting(
        None,
        "HS256 secret (32+ bytes). Local mode: unset, one is generated into the data "
        "directory. External HS256: the auth service's shared secret (required).",
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
    jwt_jwks_url: str | None = _setting(
        None,
        "JWKS URL (http/https) of the external auth service verifying RS256/ES256 tokens; "
        "fetched in the background, keys chosen by `kid`.",
    )
    jwt_jwks_ttl_s: float = _setting(
        5 * MINUTES, "JWKS URL: seconds between background fetches of the key set."
    )
    jwt_jwks_min_refresh_s: float = _setting(
        10 * SECONDS,
        "JWKS URL: a token with an unknown `kid` triggers at most one fetch per this many "
        "seconds; unknown kids in between get 401 at once.",
    )
    jwt_jwks_timeout_s: float = _setting(
        3 * SECONDS,
        "JWKS URL: timeout of one fetch, and the longest a request with an unknown `kid` "
        "waits for it. A failed fetch keeps the last good keys.",
    )
    jwt_issuer: str = _setting(
        "stretto", "Expected and issued `iss` claim; empty (external mode only): not checked."
    )
    jwt_audience: str = _setting(
        "stretto", "Expected and issued `aud` claim; empty (external mode only): not checked."
    )
    jwt_subject_claim: str = _setting(
        "sub",
        "External mode: the claim naming the user (`sub`, `userId`, `id`, ...; a string or "
        "an integer); an unknown user is created on first sight.",
    )
    jwt_leeway_s: float = _setting(
        10 * SECONDS, "Clock skew tolerated on token `exp`/`iat`/`nbf` checks, in seconds."
    )
    access_token_ttl_s: int = _setting(int(15 * MINUTES), "Access-token lifetime in seconds.")
    refresh_token_ttl_s: int = _setting(int(30 * DAYS), "Refresh-token lifetime in seconds.")
    argon2_time_cost: int = _setting(3, "argon2id passes per password hash.")
    argon2_memory_kib: int = _setting(64 * 1024, "argon2id memory per password hash, in KiB.")
    login_max_failures: int = _setting(5, "Failed logins per email and client address before 429.")
    login_window_s: float = _setting(
        5 * MINUTES, "Window of the failed-login rate limit, in seconds."
    )
    login_max_failures_per_address: int = _setting(
        50, "Failed logins per client address (any email) within the window before 429."
    )
    login_email_slow_after: int = _setting(
        10,
        "Failed logins per email (any address) within the window after which each attempt "
        "for it is delayed (doubling, up to login_max_delay_s): slowed, never locked.",
    )
    login_max_delay_s: float = _setting(
        10 * SECONDS, "Longest delay of a login attempt for an email under attack, in seconds."
    )
    register_max_per_address: int = _setting(
        20, "Registrations per client address within the login window before 429."
    )
    password_hash_queue: int = _setting(
        32, "Password checks waiting for a hashing thread before new ones get 429 at once."
    )
    trusted_proxies: str | None = _setting(
        None,
        "Comma-separated addresses or networks (CIDR) of reverse proxies whose "
        "X-Forwarded-For is believed for the client address; unset: the peer address.",
    )
    # -- files -----------------------------------------------------------------------------
    max_file_bytes: int = _setting(
        5 * MIB, "Largest file in a project's virtual file system, in bytes."
    )
    max_files_per_project: int = _setting(10_000, "Most files one project may hold.")
    max_project_bytes: int = _setting(200 * MIB, "Most bytes one project's files may total.")
    file_history_versions: int = _setting(
        20, "Versions of a file kept (the current one included); old ones count against the quota."
    )
    file_history_days: float = _setting(
        30.0, "File versions older than this many days are dropped (never a file's newest)."
    )
    max_import_bytes: int = _setting(
        64 * MIB, "Largest archive (tar, tar.gz or zip) accepted by a project import, in bytes."
    )
    # -- per-user limits (past them: 429 rate_limited; bytes: 413 too_large) ---------------
    max_projects_per_user: int = _setting(100, "Most projects one user may own.")
    max_bytes_per_user: int = _setting(1024 * MIB, "Most bytes one user's files may total.")
    max_runs_per_user: int = _setting(
        20, "Unfinished runs one user may have at once (all instances)."
    )
    max_streams_per_user: int = _setting(100, "SSE streams one user may hold open (per instance).")
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
        int(5 * MINUTES), "An SSE stream ticket must first be used within this many seconds."
    )
    sse_ticket_max_age_s: int = _setting(
        int(24 * HOURS),
        "Once used, an SSE ticket reopens its stream while the session is valid, up to this "
        "many seconds after it was issued.",
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
    max_template_arg_bytes: int = _setting(
        6 * MIB,
        "Most bytes the template substitutions of one step's arguments may produce together "
        "(checked before they are built; more: the step fails with `args_too_large`).",
    )
    max_fanout_items: int = _setting(
        100,
        "Most items one for_each (fan-out) step may run over; more: the step fails with "
        "`fanout_too_large`.",
    )
    run_lease_s: float = _setting(
        30 * SECONDS,
        "Lease a process holds on a running run; expired leases are resumed elsewhere.",
    )
    approval_timeout_s: float = _setting(
        24 * HOURS,
        "A run with the option approval: plan waits this long for POST .../approve; then it "
        "ends cancelled (reason approval_timeout).",
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
    ai_plan_context_bytes: int = _setting(
        32 * KIB,
        "Most file bytes the planner shows the model (files named in the prompt first, then "
        "files matching its words).",
    )
    ai_daily_token_budget: int = _setting(
        0,
        "Model tokens one user may spend per UTC day (0: no budget); past it runs and plans "
        "get 429 `rate_limited`.",
    )
    offline_latency_ms: float = _setting(
        0.0, "Simulated latency of each offline model call (benchmarks)."
    )

    # -- derived ---------------------------------------------------------------------------
    @property
    def uses_postgres(self) -> bool:
        return self.database_url is not None

    @property
    def external_auth(self) -> bool:
        """Tokens come from an external auth service (see ``auth_mode``)."""
        if self.auth_mode == "auto":
            return self.jwt_algorithm != "HS256"
        return self.auth_mode == "external"

    @property
    def worker_count(self) -> int:
        """``workers`` as a number (``auto``: the cores this process may run on)."""
        if self.workers == "auto":
            return max(1, len(os.sched_getaffinity(0)))
        return int(self.workers)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "stretto.sqlite3"

    @property
    def cors_origin_set(self) -> frozenset[str]:
        """The allowed CORS origins (``cors_origins`` split, blanks dropped)."""
        return frozenset(o.strip() for o in self.cors_origins.split(",") if o.strip())


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


__all__ = [
    "KIB",
    "MIB",
    "Settings",
    "SettingsError",
    "add_arguments",
    "env_name",
    "load_settings",
    "validate",
]
