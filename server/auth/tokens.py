"""Access tokens, refresh tokens and SSE stream tickets.

``TokenService`` owns the keys and the rules. Two modes (``auth_mode``):
- local: stretto registers users and mints HS256 access tokens with claims
  ``sub, iat, exp, jti, iss, aud``, signed with a 32+ byte secret (configured, or
  generated into the data directory). A token's user must exist.
- external: another auth service mints the tokens and stretto only *verifies* them:
  HS256 with the service's shared secret (a legacy Fastify server), or RS256/ES256 with a
  PEM public key, a JWKS file or a JWKS URL (``server.auth.jwks.RemoteKeySet``; the key is
  chosen by the token's ``kid``). The user is named by ``subject_claim`` (``sub``,
  ``userId``, ...). ``iss``/``aud`` are checked unless configured empty. ``can_issue`` is
  False: stretto mints no access or refresh tokens.
The algorithm is pinned by configuration and never taken from a token.

- Refresh tokens are opaque random strings; only their SHA-256 (the token id) is stored.
  Rotation and reuse detection live in the store (``use_refresh_token``).
- SSE tickets are short HS256 JWTs for one project with their own audience
  (``stretto-sse``), signed with a key derived (HMAC, own label) from the local secret,
  in every mode (external RS256/ES256: ``STRETTO_JWT_SECRET`` or the generated one, so
  multi-instance deployments must set it; external HS256: the shared secret). A ticket is
  never an access token and an access token is never a ticket.

Every verification failure raises ``Unauthorized``; the reason is not told to the client.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

import jwt
import trio
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from server.auth.jwks import JWKSError, PublicKey, RemoteKeySet, check_key, parse_jwks, select_key
from server.auth.secrets import MIN_SECRET_BYTES, load_or_create_secret
from server.config import Settings, SettingsError
from server.errors import Unauthorized
from server.timeutil import new_id

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

TICKET_AUDIENCE = "stretto-sse"
DEFAULT_TICKET_ISSUER = "stretto"
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
MAX_SUBJECT_CHARS = 255
DEFAULT_LEEWAY_S = 10.0


class TokenService:
    """Issues and verifies access tokens and SSE tickets; makes refresh tokens.

    Construct with ``from_settings``. ``verify`` and ``verify_access``
    raise ``Unauthorized``; ``issue_access`` raises ``RuntimeError`` when ``can_issue`` is
    False (the routes answer 404 before getting there). With a JWKS URL, ``run`` is the
    background service keeping its keys fresh (a no-op otherwise).
    """

    def __init__(
        self,
        *,
        algorithm: str,
        issuer: str,
        audience: str,
        hs_secret: bytes | None = None,
        public_keys: Mapping[str | None, PublicKey] | None = None,
        remote_keys: RemoteKeySet | None = None,
        external: bool | None = None,
        subject_claim: str = "sub",
        access_ttl_s: int = 900,
        refresh_ttl_s: int = 30 * 86400,
        leeway_s: float = DEFAULT_LEEWAY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        external = algorithm != "HS256" if external is None else external
        if algorithm == "HS256":
            if hs_secret is None or len(hs_secret) < MIN_SECRET_BYTES:
                raise SettingsError(f"HS256 needs a secret of at least {MIN_SECRET_BYTES} bytes")
        elif algorithm in ASYMMETRIC_ALGORITHMS:
            if not external:
                raise SettingsError(f"{algorithm}: stretto only verifies it (external mode)")
            if not public_keys and remote_keys is None:
                raise SettingsError(f"{algorithm} needs at least one public key or a JWKS URL")
        else:
            raise SettingsError(f"unsupported JWT algorithm {algorithm!r}")
        if not external and (not issuer or not audience or subject_claim != "sub"):
            raise SettingsError("local mode issues `iss`, `aud` and `sub`: they must be set")
        self.algorithm = algorithm
        self.external = external
        self.issuer = issuer
        self.audience = audience
        self.subject_claim = subject_claim
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.can_issue = not external
        self.remote_keys = remote_keys
        self._hs_secret = hs_secret
        self._public_keys = dict(public_keys or {})
        self._leeway = leeway_s
        self._clock = clock
        required = ["exp", "iat", subject_claim]
        required += ["iss"] if issuer else []
        required += ["aud"] if audience else []
        self._required = required

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenService:
        """Keys from settings; reads key files and may create ``data_dir/jwt-secret``.

        Raises ``SettingsError`` on an unusable key, JWKS or secret.
        """
        configured = settings.jwt_secret.encode() if settings.jwt_secret else None
        if configured is not None and len(configured) < MIN_SECRET_BYTES:
            raise SettingsError(f"jwt_secret: must be at least {MIN_SECRET_BYTES} bytes")
        external = settings.external_auth
        algorithm = settings.jwt_algorithm
        if external and algorithm == "HS256" and configured is None:
            raise SettingsError("external HS256: set jwt_secret to the auth service's secret")
        secret = configured or load_or_create_secret(settings.data_dir)
        public_keys: dict[str | None, PublicKey] | None = None
        remote: RemoteKeySet | None = None
        if algorithm in ASYMMETRIC_ALGORITHMS:
            if settings.jwt_public_key_file is not None:
                public_keys = {None: load_public_key_file(settings.jwt_public_key_file, algorithm)}
            elif settings.jwt_jwks_file is not None:
                public_keys = load_jwks_file(settings.jwt_jwks_file, algorithm)
            elif settings.jwt_jwks_url is not None:
                remote = RemoteKeySet(
                    settings.jwt_jwks_url,
                    algorithm,
                    ttl_s=settings.jwt_jwks_ttl_s,
                    min_refresh_s=settings.jwt_jwks_min_refresh_s,
                    timeout_s=settings.jwt_jwks_timeout_s,
                )
            else:
                raise SettingsError(
                    f"{algorithm}: set jwt_public_key_file, jwt_jwks_file or jwt_jwks_url"
                )
        return cls(
            algorithm=algorithm,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            hs_secret=secret if algorithm == "HS256" else None,
            public_keys=public_keys,
            remote_keys=remote,
            external=external,
            subject_claim=settings.jwt_subject_claim,
            access_ttl_s=settings.access_token_ttl_s,
            refresh_ttl_s=settings.refresh_token_ttl_s,
            leeway_s=settings.jwt_leeway_s,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The JWKS URL refresher when there is one (until cancelled); else returns at once."""
        if self.remote_keys is None:
            task_status.started()
            return
        await self.remote_keys.run(task_status=task_status)

    # -- access tokens ----------------------------------------------------------------
    def issue_access(self, user_id: str, session_id: str | None = None) -> tuple[str, int]:
        """(token, expires_in seconds). Only in local mode. ``session_id`` (the refresh-token
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

    async def verify(self, token: str) -> dict[str, Any]:
        """``verify_access``, except that a ``kid`` unknown to the JWKS URL's key set may wait
        (briefly, bounded) for one refresh. Raises ``Unauthorized``."""
        if self.remote_keys is None:
            return self.verify_access(token)
        key = await self.remote_keys.key_for(_unverified_kid(token))
        return self._decode(token, key)

    def verify_access(self, token: str) -> dict[str, Any]:
        """The verified claims (the subject checked). Never waits: with a JWKS URL only the
        keys already fetched count. Raises ``Unauthorized`` for anything but a valid token."""
        if self.algorithm == "HS256":
            assert self._hs_secret is not None
            return self._decode(token, self._hs_secret)
        kid = _unverified_kid(token)
        keys = self._public_keys
        key = self.remote_keys.lookup(kid) if self.remote_keys else select_key(keys, kid)
        if key is None:
            raise Unauthorized()
        return self._decode(token, key)

    def subject(self, claims: Mapping[str, Any]) -> str:
        """The user id a verified token names: its ``subject_claim`` (an integer claim as
        its decimal text). Raises ``Unauthorized`` when missing, empty or too long."""
        return _check_subject(claims, self.subject_claim)

    def _decode(self, token: str, key: bytes | PublicKey) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self.audience or None,
                issuer=self.issuer or None,
                leeway=self._leeway,
                options={
                    "require": self._required,
                    "verify_aud": bool(self.audience),
                    "strict_aud": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized() from exc
        _check_subject(claims, self.subject_claim)
        return claims

    # -- refresh tokens ---------------------------------------------------------------
    def new_refresh_token(self) -> tuple[str, str]:
        """(opaque token handed to the client, token id = its SHA-256 hex, stored)."""
        token = secrets.token_urlsafe(32)
        return token, self.refresh_token_id(token)

    def refresh_token_id(self, token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _unverified_kid(token: str) -> object:
    try:
        return jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise Unauthorized() from exc


def _check_subject(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_SUBJECT_CHARS:
        raise Unauthorized()
    return value


def load_public_key_file(path: Path, algorithm: str) -> PublicKey:
    """A PEM public key for ``algorithm``. Raises ``SettingsError``."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{path}: not a readable PEM public key: {exc}") from exc
    try:
        return check_key(key, algorithm, str(path))
    except JWKSError as exc:
        raise SettingsError(str(exc)) from exc


def load_jwks_file(path: Path, algorithm: str) -> dict[str | None, PublicKey]:
    """Signing keys of a JWKS file usable with ``algorithm``, by ``kid`` (see
    ``server.auth.jwks.parse_jwks``). Raises ``SettingsError`` when none is usable."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{path}: not a readable JWKS file: {exc}") from exc
    try:
        return parse_jwks(document, algorithm, str(path))
    except JWKSError as exc:
        raise SettingsError(str(exc)) from exc
