"""fly.toml: parsed with tomllib and checked against the server's own settings."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from server.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]

# main.py's hard-exit watchdog fires at grace + HTTP drain + 10 s; the platform's SIGKILL
# must come later than that, or it cuts a clean shutdown short.
HARD_EXIT_MARGIN_S = 10


@pytest.fixture(scope="module")
def fly() -> dict[str, Any]:
    with (ROOT / "fly.toml").open("rb") as f:
        return tomllib.load(f)


def test_service_listens_where_the_server_does(fly: dict[str, Any]) -> None:
    service = fly["http_service"]
    settings = load_settings(environ=fly["env"])
    assert service["internal_port"] == settings.port == 8080
    assert settings.host == "0.0.0.0"  # Fly's proxy reaches the machine from outside
    assert service["force_https"] is True
    # HTTP/1.1 to the backend: SSE streams keep the direct-write fast path (README).
    assert service["http_options"]["h2_backend"] is False


def test_env_holds_only_known_settings_and_no_secrets(fly: dict[str, Any]) -> None:
    settings = load_settings(environ=fly["env"])
    for name in fly["env"]:
        assert name.startswith("STRETTO_"), name
        assert hasattr(settings, name.removeprefix("STRETTO_").lower()), name
    assert settings.jwt_secret is None
    assert settings.gemini_api_key is None
    assert settings.database_url is None


def test_readiness_check(fly: dict[str, Any]) -> None:
    (check,) = fly["http_service"]["checks"]
    assert check["path"] == "/api/ready"
    assert check["method"] == "GET"


def test_concurrency_counts_connections_sized_for_sse(fly: dict[str, Any]) -> None:
    limits = fly["http_service"]["concurrency"]
    assert limits["type"] == "connections"
    assert 1000 <= limits["soft_limit"] < limits["hard_limit"]


def test_kill_timeout_outlasts_the_graceful_shutdown(fly: dict[str, Any]) -> None:
    from server.runtime.http_server import HTTP_DRAIN_S  # the whole app: imported only here

    assert fly["kill_signal"] == "SIGTERM"
    grace = load_settings(environ=fly["env"]).shutdown_grace_s
    assert grace >= Settings().shutdown_grace_s
    kill_timeout = fly["kill_timeout"]
    assert isinstance(kill_timeout, int)
    assert kill_timeout > grace + HTTP_DRAIN_S + HARD_EXIT_MARGIN_S
    assert kill_timeout <= 300  # Fly's maximum


def test_sqlite_data_lives_on_the_volume(fly: dict[str, Any]) -> None:
    (mount,) = fly["mounts"]
    assert mount["destination"] == load_settings(environ=fly["env"]).data_dir.as_posix()
    assert fly["build"]["dockerfile"] == "build/Containerfile"
    assert (ROOT / fly["build"]["dockerfile"]).is_file()


def test_heartbeat_is_below_the_proxy_idle_timeout(fly: dict[str, Any]) -> None:
    assert load_settings(environ=fly["env"]).sse_heartbeat_s < 60


def test_fly_scrapes_the_metrics_endpoint(fly: dict[str, Any]) -> None:
    assert fly["metrics"] == {"port": fly["http_service"]["internal_port"], "path": "/metrics"}
