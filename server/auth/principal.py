"""The caller (``Principal``) and ``authenticate``: verify a bearer token, load the user.

In HS256 mode the user must exist (a deleted user's tokens stop working). In RS256/ES256
mode tokens come from an external auth service: a user unknown to stretto is created on
first sight from the token's ``sub`` (email from the ``email`` claim when it is a plausible
address, else ``<sub>@external``; name from ``name``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server.auth.emails import is_valid_email, normalize_email
from server.errors import EmailTaken, Unauthorized

if TYPE_CHECKING:
    from server.auth.tokens import TokenService
    from server.store.models import User
    from server.store.protocol import Store

MAX_NAME_CHARS = 200


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: str
    email: str | None
    name: str | None
    session_id: str | None = None  # the refresh-token family (``sid``), when stretto minted it


async def authenticate(token: str, tokens: TokenService, store: Store) -> Principal:
    """The principal a bearer token stands for. Raises ``Unauthorized``."""
    claims = tokens.verify_access(token)
    user_id: str = claims["sub"]
    user = await store.get_user(user_id)
    if user is None:
        if tokens.can_issue:
            raise Unauthorized()
        user = await _create_external_user(user_id, claims, store)
    sid = claims.get("sid") if tokens.can_issue else None
    session_id = sid if isinstance(sid, str) and 0 < len(sid) <= 255 else None
    return Principal(user_id=user.id, email=user.email, name=user.name, session_id=session_id)


async def _create_external_user(user_id: str, claims: dict[str, Any], store: Store) -> User:
    fallback = f"{user_id.lower()}@external"
    raw_email = claims.get("email")
    email = normalize_email(raw_email) if isinstance(raw_email, str) else ""
    if not is_valid_email(email):
        email = fallback
    raw_name = claims.get("name")
    name = raw_name.strip()[:MAX_NAME_CHARS] or None if isinstance(raw_name, str) else None
    try:
        return await store.ensure_user(user_id, email, name)
    except EmailTaken:
        if email == fallback:
            raise Unauthorized() from None
        # The address belongs to a local account: keep them apart.
        return await store.ensure_user(user_id, fallback, name)
