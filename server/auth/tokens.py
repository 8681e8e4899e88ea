"""Access tokens, refresh tokens and SSE stream tickets.

``TokenService`` owns the keys and the rules:
- Access tokens are JWTs with claims ``sub, iat, exp, jti, iss, aud``. The algorithm is
  pinned by configuration and never taken from a token. HS256 (the default) signs and
  verifies with a 32+ byte secret (configured, or generated into the data directory).
  RS256/ES256 only *verify* tokens minted by an external auth service, with a PEM public
  key or a JWKS file (the key is chosen by the token's ``kid``); ``can_issue`` is then
  False and stretto mints no access or refresh tokens.
- Refresh tokens are opaque random strings; only their SHA-256 (the token id) is stored.
  Rotation and reuse detection live in the store (``use_refresh_token``).
- SSE tickets are short HS256 JWTs for one project with their own audience
  (``stretto-sse``), signed with a key derived from the local secret, even in RS256/ES256
  mode (there the secret is ``STRETTO_JWT_SECRET`` or the generated one: multi-instance
  deployments must set ``STRETTO_JWT_SECRET``). A ticket is never an access token and an
  access token is never a ticket.

Every verification failure raises ``Unauthorized``; the reason is not told to the client.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from server.auth.secrets import MIN_SECRET_BYTES, load_or_create_secret
from server.config import Settings, SettingsError
from server.errors import Unauthorized
from server.timeutil import new_id

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

TICKET_AUDIENCE = "stretto-sse"
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
MAX_SUBJECT_CHARS = 255
DEFAULT_LEEWAY_S = 10.0
_TICKET_KEY_LABEL = b"stretto-sse-ticket-v1"


PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class TokenService:
    """Issues and verifies access tokens and SSE tickets; makes refresh tokens.

    Construct with ``from_settings``. ``verify_access`` and ``verify_ticket`` raise
    ``Unauthorized``; ``issue_access`` raises ``RuntimeError`` when ``can_issue`` is False
    (the routes answer 404 before getting there).
    """

    def __init__(
        self,
        *,
        algorithm: str,
        issuer: str,
        audience: str,
        ticket_secret: bytes,
        hs_secret: bytes | None = None,
        public_keys: Mapping[str | None, PublicKey] | None = None,
        access_ttl_s: int = 900,
        refresh_ttl_s: int = 30 * 86400,
        ticket_ttl_s: int = 300,
        leeway_s: float = DEFAULT_LEEWAY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm == "HS256":
            if hs_secret is None or len(hs_secret) < MIN_SECRET_BYTES:
                raise SettingsError(f"HS256 needs a secret of at least {MIN_SECRET_BYTES} bytes")
        elif algorithm in ASYMMETRIC_ALGORITHMS:
            if not public_keys:
                raise SettingsError(f"{algorithm} needs at least one public key")
        else:
            raise SettingsError(f"unsupported JWT algorithm {algorithm!r}")
        if len(ticket_secret) < MIN_SECRET_BYTES:
            raise SettingsError(f"the ticket secret must be at least {MIN_SECRET_BYTES} bytes")
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.ticket_ttl_s = ticket_ttl_s
        self.can_issue = algorithm == "HS256"
        self._hs_secret = hs_secret
        self._public_keys = dict(public_keys or {})
        self._ticket_key = hmac.new(ticket_secret, _TICKET_KEY_LABEL, hashlib.sha256).digest()
        self._leeway = leeway_s
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenService:
        """Keys from settings; reads key files and may create ``data_dir/jwt-secret``.

        Raises ``SettingsError`` on an unusable key, JWKS or secret.
        """
        configured = settings.jwt_secret.encode() if settings.jwt_secret else None
        if configured is not None and len(configured) < MIN_SECRET_BYTES:
            raise SettingsError(f"jwt_secret: must be at least {MIN_SECRET_BYTES} bytes")
        secret = configured or load_or_create_secret(settings.data_dir)
        public_keys: dict[str | None, PublicKey] | None = None
        if settings.jwt_algorithm in ASYMMETRIC_ALGORITHMS:
            if settings.jwt_public_key_file is not None:
                key = load_public_key_file(settings.jwt_public_key_file, settings.jwt_algorithm)
                public_keys = {None: key}
            elif settings.jwt_jwks_file is not None:
                public_keys = load_jwks_file(settings.jwt_jwks_file, settings.jwt_algorithm)
            else:
                raise SettingsError(
                    f"{settings.jwt_algorithm}: set jwt_public_key_file or jwt_jwks_file"
                )
        return cls(
            algorithm=settings.jwt_algorithm,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            hs_secret=secret if settings.jwt_algorithm == "HS256" else None,
            public_keys=public_keys,
            ticket_secret=secret,
            access_ttl_s=settings.access_token_ttl_s,
            refresh_ttl_s=settings.refresh_token_ttl_s,
            ticket_ttl_s=settings.sse_ticket_ttl_s,
            leeway_s=settings.jwt_leeway_s,
        )

    # -- access tokens ----------------------------------------------------------------
    def issue_access(self, user_id: str, session_id: str | None = None) -> tuple[str, int]:
        """(token, expires_in seconds). Only in HS256 mode. ``session_id`` (the refresh-token
        family) becomes the ``sid`` claim: SSE tickets are bound to it."""
        if not self.can_issue or self._hs_secret is None:
            raise RuntimeError("access tokens are minted by the external auth service")
        now = int(self._clock())
        claims = {
            "sub": user_id,
            "iat": now,
            "exp": now + self.access_ttl_s,
            "jti": new_id(),
            "iss": self.issuer,
            "aud": self.audience,
        }
        if session_id is not None:
            claims["sid"] = session_id
        return jwt.encode(claims, self._hs_secret, algorithm="HS256"), self.access_ttl_s

    def verify_access(self, token: str) -> dict[str, Any]:
        """The verified claims. Raises ``Unauthorized`` for anything but a valid token."""
        key = self._verification_key(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"], "strict_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized() from exc
        _check_subject(claims)
        return claims

    def _verification_key(self, token: str) -> bytes | PublicKey:
        if self.algorithm == "HS256":
            assert self._hs_secret is not None
            return self._hs_secret
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized() from exc
        kid = header.get("kid")
        if isinstance(kid, str) and kid in self._public_keys:
            return self._public_keys[kid]
        if kid is None and len(self._public_keys) == 1:
            return next(iter(self._public_keys.values()))
        if None in self._public_keys and len(self._public_keys) == 1:
            return self._public_keys[None]  # a single PEM key: any kid
        raise Unauthorized()

    # -- refresh tokens ---------------------------------------------------------------
    def new_refresh_token(self) -> tuple[str, str]:
        """(opaque token handed to the client, token id = its SHA-256 hex, stored)."""
        token = secrets.token_urlsafe(32)
        return token, self.refresh_token_id(token)

    def refresh_token_id(self, token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

    # -- SSE tickets ------------------------------------------------------------------
    def issue_ticket(self, user_id: str, project_id: str) -> tuple[str, int]:
        """(ticket, expires_in seconds): streams one project, reusable until it expires."""
        now = int(self._clock())
        claims = {
            "sub": user_id,
            "pid": project_id,
            "iat": now,
            "exp": now + self.ticket_ttl_s,
            "iss": self.issuer,
            "aud": TICKET_AUDIENCE,
        }
        return jwt.encode(claims, self._ticket_key, algorithm="HS256"), self.ticket_ttl_s

    def verify_ticket(self, ticket: str, project_id: str) -> str:
        """The user id. Raises ``Unauthorized`` when bad, expired or for another project."""
        try:
            claims = jwt.decode(
                ticket,
                self._ticket_key,
                algorithms=["HS256"],
                audience=TICKET_AUDIENCE,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "pid", "aud", "iss"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized() from exc
        if claims.get("pid") != project_id:
            raise Unauthorized()
        return _check_subject(claims)


def _check_subject(claims: Mapping[str, Any]) -> str:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUBJECT_CHARS:
        raise Unauthorized()
    return sub


def _expected_key_type(algorithm: str) -> type[rsa.RSAPublicKey] | type[ec.EllipticCurvePublicKey]:
    return rsa.RSAPublicKey if algorithm == "RS256" else ec.EllipticCurvePublicKey


def _check_key(key: object, algorithm: str, where: str) -> PublicKey:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        key = key.public_key()
    if not isinstance(key, _expected_key_type(algorithm)):
        raise SettingsError(f"{where}: not a public key for {algorithm}")
    if isinstance(key, ec.EllipticCurvePublicKey) and not isinstance(key.curve, ec.SECP256R1):
        raise SettingsError(f"{where}: ES256 needs a P-256 key")
    return key


def load_public_key_file(path: Path, algorithm: str) -> PublicKey:
    """A PEM public key for ``algorithm``. Raises ``SettingsError``."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{path}: not a readable PEM public key: {exc}") from exc
    return _check_key(key, algorithm, str(path))


def load_jwks_file(path: Path, algorithm: str) -> dict[str | None, PublicKey]:
    """Signing keys of a JWKS file usable with ``algorithm``, by ``kid``.

    Keys of another type, another ``alg`` or ``use`` are skipped. Raises ``SettingsError``
    when none is left.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{path}: not a readable JWKS file: {exc}") from exc
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise SettingsError(f"{path}: a JWKS file holds {{'keys': [...]}}")
    keys: dict[str | None, PublicKey] = {}
    kty = "RSA" if algorithm == "RS256" else "EC"
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != kty:
            continue
        if entry.get("alg", algorithm) != algorithm or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        try:
            jwk = jwt.PyJWK(entry, algorithm=algorithm)
            keys[kid if isinstance(kid, str) else None] = _check_key(jwk.key, algorithm, str(path))
        except (jwt.PyJWKError, jwt.InvalidKeyError, SettingsError):
            continue
    if not keys:
        raise SettingsError(f"{path}: no {algorithm} signing key in the JWKS")
    return keys
