"""TokenService: issuing, verifying and every forged-token case, with real keys."""

from __future__ import annotations

import os
import stat
import time
from typing import TYPE_CHECKING, Any

import jwt
import pytest

from server.auth.secrets import SECRET_FILE_NAME
from server.auth.tickets import TicketService
from server.auth.tokens import TokenService
from server.config import Settings, SettingsError
from server.errors import Unauthorized
from tests.auth import keys

if TYPE_CHECKING:
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric import ec, rsa

SECRET = "s" * 40


def hs_service(**overrides: Any) -> TokenService:
    values: dict[str, Any] = {
        "algorithm": "HS256",
        "issuer": "stretto",
        "audience": "stretto",
        "hs_secret": SECRET.encode(),
    }
    values.update(overrides)
    return TokenService(**values)


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return keys.rsa_key()


@pytest.fixture(scope="module")
def ec_private() -> ec.EllipticCurvePrivateKey:
    return keys.ec_key()


def rs_service(tmp_path: Path, key: rsa.RSAPrivateKey) -> TokenService:
    settings = Settings(
        data_dir=tmp_path,
        jwt_algorithm="RS256",
        jwt_public_key_file=keys.write_pem(tmp_path / "pub.pem", key),
    )
    return TokenService.from_settings(settings)


# -- HS256 --------------------------------------------------------------------------------


def test_hs256_round_trip_has_every_claim() -> None:
    tokens = hs_service()
    token, expires_in = tokens.issue_access("user-1")
    claims = tokens.verify_access(token)
    assert expires_in == 900
    assert claims["sub"] == "user-1"
    assert {"sub", "iat", "exp", "jti", "iss", "aud"} <= claims.keys()
    assert claims["exp"] - claims["iat"] == 900
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert tokens.verify_access(tokens.issue_access("user-1")[0])["jti"] != claims["jti"]


def test_alg_none_is_refused() -> None:
    tokens = hs_service()
    with pytest.raises(Unauthorized):
        tokens.verify_access(keys.unsigned_token(keys.claims("user-1")))


def test_wrong_secret_is_refused() -> None:
    forged = keys.mint(b"x" * 40, "HS256", sub="user-1")
    with pytest.raises(Unauthorized):
        hs_service().verify_access(forged)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"aud": "other-service"}, id="wrong-aud"),
        pytest.param({"iss": "someone-else"}, id="wrong-iss"),
        pytest.param({"aud": None}, id="no-aud"),
        pytest.param({"iss": None}, id="no-iss"),
        pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
        pytest.param({"exp": None}, id="no-exp"),
        pytest.param({"iat": None}, id="no-iat"),
        pytest.param({"sub": None}, id="no-sub"),
        pytest.param({"sub": ""}, id="empty-sub"),
        pytest.param({"sub": 42}, id="int-sub"),
        pytest.param({"aud": "stretto-sse"}, id="ticket-aud"),
    ],
)
def test_bad_claims_are_refused(overrides: dict[str, Any]) -> None:
    token = keys.mint(SECRET.encode(), "HS256", **overrides)
    with pytest.raises(Unauthorized):
        hs_service().verify_access(token)


def test_correctly_signed_token_with_same_claims_is_accepted() -> None:
    """The control for the cases above: only the named change makes them fail."""
    token = keys.mint(SECRET.encode(), "HS256", sub="user-1")
    assert hs_service().verify_access(token)["sub"] == "user-1"


def test_expired_issued_token_is_refused() -> None:
    past = hs_service(clock=lambda: time.time() - 3600)
    token, _ = past.issue_access("user-1")
    with pytest.raises(Unauthorized):
        hs_service().verify_access(token)


def test_tampered_payload_is_refused() -> None:
    tokens = hs_service()
    token, _ = tokens.issue_access("user-1")
    with pytest.raises(Unauthorized):
        tokens.verify_access(keys.tamper(token, sub="user-2"))


def test_garbage_is_refused() -> None:
    for garbage in ("", "abc", "a.b.c", "a.b", "..."):
        with pytest.raises(Unauthorized):
            hs_service().verify_access(garbage)


def test_rs256_token_is_refused_in_hs256_mode(rsa_private: rsa.RSAPrivateKey) -> None:
    token = keys.mint(rsa_private, "RS256", sub="user-1")
    with pytest.raises(Unauthorized):
        hs_service().verify_access(token)


def test_short_secret_is_refused() -> None:
    with pytest.raises(SettingsError):
        hs_service(hs_secret=b"short")


# -- RS256 / ES256 (external tokens) ------------------------------------------------------


def test_rs256_pem_verifies_external_tokens(tmp_path: Path, rsa_private: rsa.RSAPrivateKey) -> None:
    tokens = rs_service(tmp_path, rsa_private)
    assert not tokens.can_issue
    token = keys.mint(rsa_private, "RS256", sub="ext-1", email="e@x.io")
    assert tokens.verify_access(token)["sub"] == "ext-1"
    with pytest.raises(RuntimeError):
        tokens.issue_access("ext-1")


def test_hs256_signed_with_the_rs_public_key_is_refused(
    tmp_path: Path, rsa_private: rsa.RSAPrivateKey
) -> None:
    """The classic algorithm-confusion attack: the public key used as an HMAC secret."""
    tokens = rs_service(tmp_path, rsa_private)
    pem = keys.public_pem(rsa_private)
    for secret in (pem, pem.strip()):
        with pytest.raises(Unauthorized):
            tokens.verify_access(keys.hs256_by_hand(keys.claims("ext-1"), secret))


def test_alg_none_is_refused_in_rs256_mode(tmp_path: Path, rsa_private: rsa.RSAPrivateKey) -> None:
    tokens = rs_service(tmp_path, rsa_private)
    with pytest.raises(Unauthorized):
        tokens.verify_access(keys.unsigned_token(keys.claims("ext-1")))


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"aud": "other"}, id="wrong-aud"),
        pytest.param({"iss": "other"}, id="wrong-iss"),
        pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
    ],
)
def test_rs256_bad_claims_are_refused(
    tmp_path: Path, rsa_private: rsa.RSAPrivateKey, overrides: dict[str, Any]
) -> None:
    tokens = rs_service(tmp_path, rsa_private)
    with pytest.raises(Unauthorized):
        tokens.verify_access(keys.mint(rsa_private, "RS256", **overrides))


def test_rs256_other_key_and_tampering_are_refused(
    tmp_path: Path, rsa_private: rsa.RSAPrivateKey
) -> None:
    tokens = rs_service(tmp_path, rsa_private)
    with pytest.raises(Unauthorized):
        tokens.verify_access(keys.mint(keys.rsa_key(), "RS256"))
    good = keys.mint(rsa_private, "RS256", sub="ext-1")
    with pytest.raises(Unauthorized):
        tokens.verify_access(keys.tamper(good, sub="admin"))


def test_rs384_is_refused_even_with_the_right_key(
    tmp_path: Path, rsa_private: rsa.RSAPrivateKey
) -> None:
    tokens = rs_service(tmp_path, rsa_private)
    with pytest.raises(Unauthorized):
        tokens.verify_access(keys.mint(rsa_private, "RS384"))


def test_es256_pem(tmp_path: Path, ec_private: ec.EllipticCurvePrivateKey) -> None:
    settings = Settings(
        data_dir=tmp_path,
        jwt_algorithm="ES256",
        jwt_public_key_file=keys.write_pem(tmp_path / "ec.pem", ec_private),
    )
    tokens = TokenService.from_settings(settings)
    assert tokens.verify_access(keys.mint(ec_private, "ES256", sub="ec-1"))["sub"] == "ec-1"
    with pytest.raises(Unauthorized):
        tokens.verify_access(keys.mint(keys.ec_key(), "ES256"))


def test_pem_of_the_wrong_type_is_a_settings_error(
    tmp_path: Path, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        jwt_algorithm="RS256",
        jwt_public_key_file=keys.write_pem(tmp_path / "ec.pem", ec_private),
    )
    with pytest.raises(SettingsError):
        TokenService.from_settings(settings)


def test_jwks_selects_the_key_by_kid(
    tmp_path: Path, rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    other = keys.rsa_key()
    jwks = keys.write_jwks(
        tmp_path / "jwks.json",
        [
            keys.public_jwk(rsa_private, "k1"),
            keys.public_jwk(other, "k2"),
            keys.public_jwk(ec_private, "ec"),  # another algorithm: skipped
        ],
    )
    settings = Settings(data_dir=tmp_path, jwt_algorithm="RS256", jwt_jwks_file=jwks)
    tokens = TokenService.from_settings(settings)
    assert tokens.verify_access(keys.mint(rsa_private, "RS256", kid="k1", sub="a"))["sub"] == "a"
    assert tokens.verify_access(keys.mint(other, "RS256", kid="k2", sub="b"))["sub"] == "b"
    for forged in (
        keys.mint(rsa_private, "RS256", kid="k2"),  # signed by k1, claims k2
        keys.mint(rsa_private, "RS256", kid="unknown"),
        keys.mint(rsa_private, "RS256"),  # no kid, two keys: ambiguous
        keys.mint(ec_private, "ES256", kid="ec"),
        keys.hs256_by_hand(keys.claims(), keys.public_pem(rsa_private), kid="k1"),
        keys.unsigned_token(keys.claims()),
    ):
        with pytest.raises(Unauthorized):
            tokens.verify_access(forged)


def test_jwks_without_usable_keys_is_a_settings_error(
    tmp_path: Path, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    jwks = keys.write_jwks(tmp_path / "jwks.json", [keys.public_jwk(ec_private, "ec")])
    settings = Settings(data_dir=tmp_path, jwt_algorithm="RS256", jwt_jwks_file=jwks)
    with pytest.raises(SettingsError):
        TokenService.from_settings(settings)
    (tmp_path / "bad.json").write_text("not json")
    bad = Settings(data_dir=tmp_path, jwt_algorithm="RS256", jwt_jwks_file=tmp_path / "bad.json")
    with pytest.raises(SettingsError):
        TokenService.from_settings(bad)


# -- generated secret ---------------------------------------------------------------------


def test_generated_secret_is_private_and_stable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    first = TokenService.from_settings(Settings(data_dir=data_dir))
    secret_file = data_dir / SECRET_FILE_NAME
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert len(secret_file.read_bytes().strip()) >= 32
    assert [p.name for p in data_dir.iterdir()] == [SECRET_FILE_NAME]  # no temp file left
    second = TokenService.from_settings(Settings(data_dir=data_dir))
    token, _ = first.issue_access("user-1")
    assert second.verify_access(token)["sub"] == "user-1"
    warnings = [r for r in caplog.records if "STRETTO_JWT_SECRET" in r.getMessage()]
    assert len(warnings) == 1
    other = TokenService.from_settings(Settings(data_dir=tmp_path / "elsewhere"))
    with pytest.raises(Unauthorized):
        other.verify_access(token)


def test_configured_secret_creates_no_file(tmp_path: Path) -> None:
    tokens = TokenService.from_settings(Settings(data_dir=tmp_path, jwt_secret=SECRET))
    assert not (tmp_path / SECRET_FILE_NAME).exists()
    assert hs_service().verify_access(tokens.issue_access("u")[0])["sub"] == "u"


def test_short_secret_file_is_a_settings_error(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE_NAME).write_text("too-short\n")
    with pytest.raises(SettingsError):
        TokenService.from_settings(Settings(data_dir=tmp_path))


# -- refresh tokens and tickets -----------------------------------------------------------


def test_refresh_tokens_are_random_and_stored_hashed() -> None:
    tokens = hs_service()
    token, token_id = tokens.new_refresh_token()
    other, other_id = tokens.new_refresh_token()
    assert token != other
    assert token_id != other_id
    assert tokens.refresh_token_id(token) == token_id
    assert len(token_id) == 64
    assert token not in token_id
    assert len(token) >= 40


def test_tickets_get_a_local_secret_in_rs256_mode(
    tmp_path: Path, rsa_private: rsa.RSAPrivateKey
) -> None:
    rs_service(tmp_path, rsa_private)
    settings = Settings(
        data_dir=tmp_path, jwt_algorithm="RS256", jwt_public_key_file=tmp_path / "pub.pem"
    )
    tickets = TicketService.from_settings(settings)
    ticket, _ = tickets.issue("ext-1", "p", None)
    assert ticket.count(".") == 2
    assert (tmp_path / SECRET_FILE_NAME).exists()  # tickets need a local secret
