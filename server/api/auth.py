"""Auth routes: register, login, refresh (rotation with reuse detection), logout, me.

- ``POST /api/auth/register`` -> 201 ``{"user", "access_token", "refresh_token",
  "token_type": "Bearer", "expires_in"}``; 409 ``email_taken``.
- ``POST /api/auth/login`` -> 200, same shape; 401 ``invalid_credentials`` with one message
  whether or not the email exists (an unknown email still spends one argon2 verify);
  429 ``rate_limited`` with ``Retry-After`` past the limits of
  ``server.auth.ratelimit.LoginGuard`` (per email and client address, per address; an
  email under attack is slowed, not locked) or when the password-hashing queue is full.
  Registration is limited per client address too.
- ``POST /api/auth/refresh`` -> 200, a new pair in the same family; the presented token is
  used up. Presenting a used token again revokes the whole family: 401.
- ``POST /api/auth/logout`` (Bearer) -> 204, revokes the family of the given refresh token.
- ``GET /api/auth/me`` (Bearer) -> 200 ``{"user"}``.

External mode (``jwt_algorithm`` RS256/ES256): access tokens are minted by another
service, so register, login and refresh answer 404 ``not_found`` "Authentication is
handled by the external auth service"; logout and me keep working with those tokens.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, Response, request

from server.api.deps import json_response, read_json, require_user, services
from server.api.validation import object_schema
from server.auth.emails import MAX_EMAIL_CHARS, is_valid_email, normalize_email
from server.errors import InvalidCredentials, NotFound, Unauthorized, ValidationFailed
from server.store.models import RefreshOutcome
from server.timeutil import new_id, rfc3339, utc_now

log = logging.getLogger("stretto.auth")

if TYPE_CHECKING:
    from server.services import Services
    from server.store.models import User

blueprint = Blueprint("auth", __name__)

EXTERNAL_AUTH_MESSAGE = "Authentication is handled by the external auth service"
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
MAX_NAME_CHARS = 200
MAX_REFRESH_TOKEN_CHARS = 512
_PASSWORD_PROBLEM = f"must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long"

_EMAIL = {"type": "string", "maxLength": MAX_EMAIL_CHARS + 64}  # before trimming
_REFRESH = object_schema(
    {"refresh_token": {"type": "string", "minLength": 1, "maxLength": MAX_REFRESH_TOKEN_CHARS}},
    ("refresh_token",),
)
REGISTER_SCHEMA = object_schema(
    {
        "email": _EMAIL,
        "password": {"type": "string"},  # length checked in code: messages must not echo it
        "name": {"type": ["string", "null"], "maxLength": MAX_NAME_CHARS},
    },
    ("email", "password"),
)
LOGIN_SCHEMA = object_schema(
    {"email": _EMAIL, "password": {"type": "string"}},
    ("email", "password"),
)
REFRESH_SCHEMA = _REFRESH
LOGOUT_SCHEMA = _REFRESH


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "created_at": rfc3339(user.created_at),
    }


def client_address() -> str:
    """The caller's address: the peer, or X-Forwarded-For behind a trusted proxy."""
    return services().login_limiter.client(
        request.remote_addr, request.headers.get("X-Forwarded-For")
    )


def _issuing_services() -> Services:
    """Services, or 404 when tokens are minted by the external auth service."""
    svc = services()
    if not svc.tokens.can_issue:
        raise NotFound(EXTERNAL_AUTH_MESSAGE)
    return svc


async def _session(svc: Services, user: User, family_id: str | None = None) -> dict[str, Any]:
    """A new access token and a new refresh token (a new family unless one is given)."""
    refresh_token, token_id = svc.tokens.new_refresh_token()
    expires_at = utc_now() + timedelta(seconds=svc.tokens.refresh_ttl_s)
    family_id = family_id or new_id()
    await svc.store.create_refresh_token(token_id, user.id, family_id, expires_at)
    access_token, expires_in = svc.tokens.issue_access(user.id, family_id)
    return {
        "user": user_json(user),
        "access_token": access_token,
        "refresh_token": refresh_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
    }


@blueprint.post("/api/auth/register")
async def register() -> Response:
    svc = _issuing_services()
    body = await read_json(REGISTER_SCHEMA)
    email = normalize_email(body["email"])
    if not is_valid_email(email):
        raise ValidationFailed(details={"email": "must be an email address"})
    password: str = body["password"]
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ValidationFailed(details={"password": _PASSWORD_PROBLEM})
    raw_name = body.get("name")
    name = (raw_name.strip() or None) if isinstance(raw_name, str) else None
    svc.login_limiter.register_attempt(client_address())  # RateLimited -> 429
    password_hash = await svc.passwords.hash(password)
    user = await svc.store.create_user(email, password_hash, name)  # EmailTaken -> 409
    log.info("user registered", extra={"user_id": user.id})
    return json_response(await _session(svc, user), 201)


@blueprint.post("/api/auth/login")
async def login() -> Response:
    svc = _issuing_services()
    body = await read_json(LOGIN_SCHEMA)
    email = normalize_email(body["email"])
    password: str = body["password"]
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValidationFailed(details={"password": _PASSWORD_PROBLEM})
    address = client_address()
    delay = svc.login_limiter.begin_login(email, address)  # RateLimited -> 429
    if delay > 0:  # an email under attack is slowed, never locked
        await trio.sleep(delay)
    user = await svc.store.get_user_by_email(email) if is_valid_email(email) else None
    if user is None or user.password_hash is None:
        await svc.passwords.verify_dummy(password)
        ok = False
    else:
        ok = await svc.passwords.verify(user.password_hash, password)
    if user is None or not ok:
        raise InvalidCredentials()
    svc.login_limiter.succeeded(email, address)
    return json_response(await _session(svc, user))


@blueprint.post("/api/auth/refresh")
async def refresh() -> Response:
    svc = _issuing_services()
    body = await read_json(REFRESH_SCHEMA)
    token_id = svc.tokens.refresh_token_id(body["refresh_token"])
    use = await svc.store.use_refresh_token(token_id, utc_now())
    if use.outcome is RefreshOutcome.REUSED:
        log.info("refresh token reused: session revoked", extra={"user_id": use.user_id})
        raise Unauthorized("This refresh token was already used; the session is revoked.")
    if use.outcome is not RefreshOutcome.OK or use.user_id is None or use.family_id is None:
        raise Unauthorized("The refresh token is invalid or expired.")
    user = await svc.store.get_user(use.user_id)
    if user is None:
        raise Unauthorized("The refresh token is invalid or expired.")
    return json_response(await _session(svc, user, use.family_id))


@blueprint.post("/api/auth/logout")
async def logout() -> Response:
    principal = await require_user()
    body = await read_json(LOGOUT_SCHEMA)
    svc = services()
    token_id = svc.tokens.refresh_token_id(body["refresh_token"])
    await svc.store.revoke_refresh_token_family_of(token_id, principal.user_id)
    return Response("", status=204)


@blueprint.get("/api/auth/me")
async def me() -> Response:
    principal = await require_user()
    user = await services().store.get_user(principal.user_id)
    if user is None:
        raise Unauthorized()
    return json_response({"user": user_json(user)})
