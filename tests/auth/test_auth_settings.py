"""Auth settings: the mode, the key sources each mode allows, optional iss/aud checks and the
subject claim. Pure: settings are built from an environment mapping."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from server.auth.tokens import TokenService
from server.config import SettingsError, load_settings
from tests.auth import keys

if TYPE_CHECKING:
    from pathlib import Path

SECRET = "a-shared-secret-of-at-least-32-bytes"


def settings(tmp_path: Path, **env: str) -> TokenService:
    environ = {"STRETTO_DATA_DIR": str(tmp_path)}
    environ.update({f"STRETTO_{name.upper()}": value for name, value in env.items()})
    return TokenService.from_settings(load_settings(environ=environ))


def test_auto_keeps_todays_behaviour(tmp_path: Path) -> None:
    local = settings(tmp_path)
    assert (local.external, local.can_issue) == (False, True)
    pem = keys.write_pem(tmp_path / "k.pem", keys.rsa_key())
    external = settings(tmp_path, jwt_algorithm="RS256", jwt_public_key_file=str(pem))
    assert (external.external, external.can_issue) == (True, False)


def test_external_hs256_uses_the_shared_secret_and_mints_nothing(tmp_path: Path) -> None:
    tokens = settings(tmp_path, auth_mode="external", jwt_secret=SECRET, jwt_subject_claim="id")
    assert (tokens.external, tokens.can_issue, tokens.subject_claim) == (True, False, "id")
    assert not (tmp_path / "jwt-secret").exists()  # never a generated secret
    with pytest.raises(RuntimeError):
        tokens.issue_access("u")


def test_empty_issuer_and_audience_are_not_checked(tmp_path: Path) -> None:
    tokens = settings(
        tmp_path, auth_mode="external", jwt_secret=SECRET, jwt_issuer="", jwt_audience=""
    )
    token = keys.mint(SECRET.encode(), "HS256", sub="s-1", iss=None, aud=None)
    assert tokens.subject(tokens.verify_access(token)) == "s-1"
    token = keys.mint(SECRET.encode(), "HS256", sub="s-1", iss="any", aud="thing")
    assert tokens.subject(tokens.verify_access(token)) == "s-1"


def test_an_integer_subject_is_its_decimal_text(tmp_path: Path) -> None:
    tokens = settings(tmp_path, auth_mode="external", jwt_secret=SECRET, jwt_subject_claim="uid")
    token = keys.mint(SECRET.encode(), "HS256", sub=None, uid=1234567890123)
    assert tokens.subject(tokens.verify_access(token)) == "1234567890123"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"auth_mode": "remote"}, "auth_mode"),
        ({"auth_mode": "local", "jwt_algorithm": "RS256"}, "HS256 tokens only"),
        ({"auth_mode": "local", "jwt_jwks_url": "https://a.example/jwks"}, "only with"),
        ({"jwt_issuer": ""}, "must not be empty in local mode"),
        ({"jwt_audience": ""}, "must not be empty in local mode"),
        ({"jwt_subject_claim": "userId"}, "only with auth_mode external"),
        ({"auth_mode": "external"}, "set jwt_secret"),
        ({"auth_mode": "external", "jwt_secret": "short"}, "at least 32 bytes"),
        (
            {"auth_mode": "external", "jwt_secret": SECRET, "jwt_jwks_url": "https://a/j"},
            "RS256/ES256 only",
        ),
        (
            {"jwt_algorithm": "ES256", "jwt_jwks_url": "ftp://a.example/jwks"},
            "http:// or https://",
        ),
        ({"jwt_algorithm": "ES256"}, "set exactly one of"),
        (
            {"auth_mode": "external", "jwt_secret": SECRET, "jwt_subject_claim": "exp"},
            "cannot name a user",
        ),
        (
            {"auth_mode": "external", "jwt_secret": SECRET, "jwt_subject_claim": ""},
            "cannot name a user",
        ),
        ({"jwt_jwks_timeout_s": "0"}, "must be positive"),
        ({"jwt_jwks_min_refresh_s": "0"}, "must be positive"),
    ],
)
def test_bad_auth_settings_are_refused(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings(tmp_path, **env)


def test_two_key_sources_are_refused(tmp_path: Path) -> None:
    pem = keys.write_pem(tmp_path / "k.pem", keys.rsa_key())
    with pytest.raises(SettingsError, match="exactly one of"):
        settings(
            tmp_path,
            jwt_algorithm="RS256",
            jwt_public_key_file=str(pem),
            jwt_jwks_url="https://auth.example/.well-known/jwks.json",
        )
