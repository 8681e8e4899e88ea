"""Whether a set of ``Settings`` is consistent: every rule that spans fields or needs more
than a type (ports, URLs, origins, the auth modes, limits). ``load_settings`` runs it; the
test fixtures run it on settings they build directly."""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from server.timeutil import MINUTES

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from server.config import Settings

_ORIGIN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


class SettingsError(ValueError):
    """An invalid setting; the CLI prints it on one line and exits 2."""


def validate(s: Settings) -> None:
    def check(ok: bool, message: str) -> None:
        if not ok:
            raise SettingsError(message)

    check(0 <= s.port <= 65535, f"port: {s.port} is not a TCP port")
    check(
        s.database_url is None or s.database_url.startswith(("postgresql://", "postgres://")),
        "DATABASE_URL: must start with postgresql://",
    )
    _validate_auth(s, check)
    check(
        s.log_level in ("debug", "info", "warning", "error"),
        f"log_level: {s.log_level} is not a level",
    )
    check(s.log_format in ("json", "text"), f"log_format: {s.log_format} is not json or text")
    check(
        s.workers == "auto" or (s.workers.isdigit() and 1 <= int(s.workers) <= 256),
        f"workers: {s.workers!r} is not a number from 1 to 256 or auto",
    )
    positives: Sequence[str] = (
        "db_pool_size",
        "db_timeout_s",
        "backlog",
        "max_body_bytes",
        "keep_alive_s",
        "body_read_timeout_s",
        "max_inflight_body_bytes",
        "access_token_ttl_s",
        "jwt_jwks_ttl_s",
        "jwt_jwks_timeout_s",
        "jwt_jwks_min_refresh_s",
        "refresh_token_ttl_s",
        "login_max_failures",
        "login_window_s",
        "login_max_failures_per_address",
        "login_email_slow_after",
        "register_max_per_address",
        "password_hash_queue",
        "max_file_bytes",
        "max_files_per_project",
        "max_project_bytes",
        "max_import_bytes",
        "max_projects_per_user",
        "max_bytes_per_user",
        "max_runs_per_user",
        "max_streams_per_user",
        "file_history_versions",
        "file_history_days",
        "sse_heartbeat_s",
        "sse_max_lifetime_s",
        "sse_buffer",
        "sse_ticket_ttl_s",
        "sse_ticket_max_age_s",
        "event_retention_count",
        "event_retention_s",
        "max_plan_steps",
        "run_concurrency",
        "global_concurrency",
        "step_output_max_bytes",
        "max_template_arg_bytes",
        "max_fanout_items",
        "run_lease_s",
        "approval_timeout_s",
        "ai_timeout_s",
        "ai_concurrency",
        "ai_max_prompt_chars",
        "ai_max_context_bytes",
        "ai_plan_context_bytes",
    )
    for name in positives:
        check(getattr(s, name) > 0, f"{name}: must be positive")
    check(
        s.sse_ticket_max_age_s >= s.sse_ticket_ttl_s,
        "sse_ticket_max_age_s: must be at least sse_ticket_ttl_s",
    )
    for origin in s.cors_origin_set:
        check(
            _ORIGIN.fullmatch(origin) is not None,
            f"cors_origins: {origin!r} is not an origin (scheme://host[:port], no path)",
        )
    check(s.max_connections >= 0, "max_connections: must not be negative")
    check(s.offline_latency_ms >= 0, "offline_latency_ms: must not be negative")
    check(s.ai_daily_token_budget >= 0, "ai_daily_token_budget: must not be negative")
    check(s.shutdown_grace_s >= 0, "shutdown_grace_s: must not be negative")
    check(0 <= s.jwt_leeway_s <= 5 * MINUTES, "jwt_leeway_s: must be between 0 and 300")
    check(s.login_max_delay_s >= 0, "login_max_delay_s: must not be negative")
    for part in (s.trusted_proxies or "").split(","):
        try:
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)
        except ValueError as exc:
            raise SettingsError(f"trusted_proxies: {exc}") from None


RESERVED_CLAIMS = ("iss", "aud", "exp", "iat", "nbf", "jti", "kid", "email", "name")


def _validate_auth(s: Settings, check: Callable[[bool, str], None]) -> None:
    check(s.auth_mode in ("auto", "local", "external"), "auth_mode: auto, local or external")
    check(
        s.jwt_algorithm in ("HS256", "RS256", "ES256"),
        f"jwt_algorithm: {s.jwt_algorithm} is not one of HS256, RS256, ES256",
    )
    check(
        s.jwt_secret is None or len(s.jwt_secret.encode()) >= 32,
        "jwt_secret: must be at least 32 bytes",
    )
    sources = {
        "jwt_public_key_file": s.jwt_public_key_file,
        "jwt_jwks_file": s.jwt_jwks_file,
        "jwt_jwks_url": s.jwt_jwks_url,
    }
    given = [name for name, value in sources.items() if value is not None]
    if not s.external_auth:
        check(s.jwt_algorithm == "HS256", "auth_mode local: stretto mints HS256 tokens only")
        check(not given, f"{', '.join(given)}: only with auth_mode external")
        check(
            bool(s.jwt_issuer and s.jwt_audience),
            "jwt_issuer, jwt_audience: must not be empty in local mode",
        )
        check(s.jwt_subject_claim == "sub", "jwt_subject_claim: only with auth_mode external")
    elif s.jwt_algorithm == "HS256":
        check(s.jwt_secret is not None, "external HS256: set jwt_secret (the shared secret)")
        check(not given, f"{', '.join(given)}: RS256/ES256 only")
    else:
        check(
            len(given) == 1,
            f"{s.jwt_algorithm}: set exactly one of jwt_public_key_file, jwt_jwks_file, "
            "jwt_jwks_url",
        )
    for path in (s.jwt_public_key_file, s.jwt_jwks_file):
        check(path is None or path.is_file(), f"{path}: no such file")
    url = s.jwt_jwks_url
    check(
        url is None or url.startswith(("http://", "https://")),
        "jwt_jwks_url: must be an http:// or https:// URL",
    )
    claim = s.jwt_subject_claim
    check(
        0 < len(claim) <= 64 and claim not in RESERVED_CLAIMS,
        f"jwt_subject_claim: {claim!r} cannot name a user",
    )
