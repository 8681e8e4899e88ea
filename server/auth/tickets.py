"""SSE stream tickets bound to the user's session (refresh-token family).

A browser ``EventSource`` cannot send headers and reconnects on its own with the URL it
was given, so its ``?ticket=`` must keep working for every automatic reconnect (lifetime
closes, restarts, network blips, another instance) for as long as the session lasts, and
stop working when the session ends. The mechanism:

- A ticket is an HS256 JWT (audience ``stretto-sse``, a key derived from the local secret
  with its own label: never an access token, and no access token is a ticket) with claims
  ``sub`` (user), ``pid`` (the one project it streams), ``sid`` (the refresh-token family
  of the access token that asked for it), ``jti``, ``iat``, ``use_by`` (iat + ttl: first
  use) and ``exp`` (iat + max age, the cap, default 24 h).
- ``verify`` checks signature, audience, issuer, project and cap, then asks the store
  whether the family is still live (not revoked by logout or reuse, not expired): one
  indexed query per stream open. The route then checks that the project still exists and
  is the user's (deleted project: 404).
- First use: after ``use_by`` a ticket is accepted only as a reconnect: this process has
  seen it before, or the request carries ``Last-Event-ID`` (an EventSource reconnect
  after a restart or on another instance sends it). This bounds never-used tickets; the
  session binding is what ends used ones.

Tokens without a family (minted by an external auth service) give tickets without
``sid``: those live until the cap. Every failure raises ``Unauthorized`` (the stream
answers 401 and the EventSource closes: the client must get a new ticket).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any

import jwt

from server.auth.secrets import MIN_SECRET_BYTES, load_or_create_secret
from server.config import SettingsError
from server.errors import Unauthorized
from server.timeutil import new_id, utc_now

if TYPE_CHECKING:
    from collections.abc import Callable

    from server.config import Settings
    from server.store.protocol import Store

TICKET_AUDIENCE = "stretto-sse"
_KEY_LABEL = b"stretto-sse-ticket-v2"
_LEEWAY_S = 10.0  # on the cap: clocks of instances differ a little
FIRST_USE_LEEWAY_S = 5.0  # a page load between minting and the first open
MAX_SEEN = 100_000  # tickets remembered as used by this process (oldest forgotten first)


class TicketService:
    """Issues stream tickets and verifies them against the store.

    ``issue`` is pure; ``verify`` does one store read (the family) and raises
    ``Unauthorized``. Holds a bounded in-memory record of tickets it has accepted.
    """

    def __init__(
        self,
        *,
        secret: bytes,
        issuer: str,
        ttl_s: int = 300,
        max_age_s: int = 86_400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise SettingsError(f"the ticket secret must be at least {MIN_SECRET_BYTES} bytes")
        self.issuer = issuer
        self.ttl_s = ttl_s
        self.max_age_s = max(max_age_s, ttl_s)
        self._key = hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()
        self._clock = clock
        self._seen: dict[str, float] = {}  # jti -> exp

    @classmethod
    def from_settings(cls, settings: Settings) -> TicketService:
        """The configured ``jwt_secret``, else the one generated in the data directory."""
        configured = settings.jwt_secret.encode() if settings.jwt_secret else None
        secret = configured or load_or_create_secret(settings.data_dir)
        return cls(
            secret=secret,
            issuer=settings.jwt_issuer or "stretto",  # empty: not checked on access tokens
            ttl_s=settings.sse_ticket_ttl_s,
            max_age_s=settings.sse_ticket_max_age_s,
        )

    def issue(self, user_id: str, project_id: str, session_id: str | None) -> tuple[str, int]:
        """(ticket, expires_in): ``expires_in`` is the first-use window in seconds."""
        now = int(self._clock())
        claims: dict[str, Any] = {
            "sub": user_id,
            "pid": project_id,
            "jti": new_id(),
            "iat": now,
            "use_by": now + self.ttl_s,
            "exp": now + self.max_age_s,
            "iss": self.issuer,
            "aud": TICKET_AUDIENCE,
        }
        if session_id is not None:
            claims["sid"] = session_id
        return jwt.encode(claims, self._key, algorithm="HS256"), self.ttl_s

    async def verify(
        self, ticket: str, project_id: str, store: Store, *, reconnect: bool = False
    ) -> str:
        """The user id of a live ticket for ``project_id``. ``reconnect``: the request
        carries ``Last-Event-ID``. Raises ``Unauthorized``."""
        claims = self._decode(ticket)
        if claims.get("pid") != project_id:
            raise Unauthorized()
        user_id = claims["sub"]
        jti = claims["jti"]
        now = self._clock()
        first_use_over = now > claims["use_by"] + FIRST_USE_LEEWAY_S
        if first_use_over and not reconnect and jti not in self._seen:
            raise Unauthorized()
        session_id = claims.get("sid")
        if session_id is not None and not await store.refresh_family_active(
            session_id, user_id, utc_now()
        ):
            raise Unauthorized()
        self._remember(jti, float(claims["exp"]), now)
        return str(user_id)

    def _decode(self, ticket: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                ticket,
                self._key,
                algorithms=["HS256"],
                audience=TICKET_AUDIENCE,
                issuer=self.issuer,
                # Times are checked below, against this service's clock.
                options={
                    "require": ["exp", "iat", "sub", "pid", "jti", "aud", "iss"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized() from exc
        exp = claims.get("exp")
        ok = (
            isinstance(exp, int)
            and self._clock() <= exp + _LEEWAY_S
            and _short_str(claims.get("sub"))
            and _short_str(claims.get("jti"))
            and isinstance(claims.get("use_by"), int)
            and (claims.get("sid") is None or _short_str(claims.get("sid")))
        )
        if not ok:
            raise Unauthorized()
        return claims

    def _remember(self, jti: str, exp: float, now: float) -> None:
        if jti in self._seen:
            return
        if len(self._seen) >= MAX_SEEN:
            for old in [k for k, e in self._seen.items() if e < now] or list(self._seen)[:1000]:
                del self._seen[old]
        self._seen[jti] = exp


def _short_str(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 255
