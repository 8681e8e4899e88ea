"""The caller (``Principal``) and ``authenticate``: verify a bearer token, load the user.

Local mode: the user must exist (a deleted user's tokens stop working). External mode:
tokens come from another auth service, and the user id IS the exact value of the token's
subject claim (``TokenService.subject``: ``sub`` by default, ``userId`` for many legacy
servers; case-sensitive on both databases); a user unknown to stretto is created on first
sight. One deployment trusts one auth service (one key set, one pinned issuer unless the
issuer check is off). Identity never depends on an email: the ``email`` claim is used
when it is a plausible address nobody holds, else a placeholder that only this exact
``(iss, subject)`` can produce (``<subject>@external`` for a plain lower-case subject, else
``<slug>+<sha256(iss, subject)>@external``), so ``VICTIM-88`` cannot take ``victim-88``'s.
Claimed emails never fall in ``@external`` (it has no dot: not a plausible address).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server.auth.emails import is_valid_email, normalize_email
from server.errors import EmailTaken, Unauthorized

if TYPE_CHECKING:
    from server.auth.tokens import TokenService
    from server.store.models import User
    from server.store.protocol import Store

MAX_NAME_CHARS = 200
_PLAIN_SUB = re.compile(r"[a-z0-9._|-]{1,64}")
_SLUG_UNSAFE = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: str
    email: str | None
    name: str | None
    session_id: str | None = None  # the refresh-token family (``sid``), when stretto minted it


async def authenticate(token: str, tokens: TokenService, store: Store) -> Principal:
    """The principal a bearer token stands for. Raises ``Unauthorized``."""
    claims = await tokens.verify(token)
    user_id = tokens.subject(claims)
    user = await store.get_user(user_id)
    if user is None:
        if not tokens.external:
            raise Unauthorized()
        user = await _create_external_user(user_id, claims, store)
    sid = claims.get("sid") if tokens.can_issue else None
    session_id = sid if isinstance(sid, str) and 0 < len(sid) <= 255 else None
    return Principal(user_id=user.id, email=user.email, name=user.name, session_id=session_id)


def placeholder_emails(issuer: str, sub: str) -> list[str]:
    """Placeholder addresses for ``sub``, in order of preference; the last one is derived
    from the exact ``(issuer, sub)`` and no other subject yields it. Pure."""
    digest = hashlib.sha256(f"{issuer}\x00{sub}".encode("utf-8", "surrogatepass")).hexdigest()
    slug = _SLUG_UNSAFE.sub("-", sub.lower())[:40].strip("-") or "user"
    hashed = f"{slug}+{digest[:32]}@external"
    if _PLAIN_SUB.fullmatch(sub):  # no "+": never equal to a hashed form
        return [f"{sub}@external", hashed]
    return [hashed]


async def _create_external_user(user_id: str, claims: dict[str, Any], store: Store) -> User:
    issuer = claims.get("iss")
    fallbacks = placeholder_emails(issuer if isinstance(issuer, str) else "", user_id)
    raw_email = claims.get("email")
    email = normalize_email(raw_email) if isinstance(raw_email, str) else ""
    candidates = [email, *fallbacks] if is_valid_email(email) else fallbacks
    raw_name = claims.get("name")
    name = raw_name.strip()[:MAX_NAME_CHARS] or None if isinstance(raw_name, str) else None
    for candidate in candidates:
        try:
            return await store.ensure_user(user_id, candidate, name)
        except EmailTaken:
            continue  # held by a local account or (legacy data) another subject
    raise Unauthorized()
