"""The auth routes through the real server (hypercorn on loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
import trio

from tests.auth import keys
from tests.fixtures.server import TEST_JWT_SECRET, register_user

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.fixtures.server import RunningServer, StartServer

PASSWORD = "correct horse battery"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    return error


def assert_session(body: dict[str, Any], email: str) -> None:
    assert set(body) == {"user", "access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert set(body["user"]) == {"id", "email", "name", "created_at"}
    assert body["user"]["email"] == email
    assert RFC3339.match(body["user"]["created_at"])


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})


# -- register -----------------------------------------------------------------------------


async def test_register_returns_a_working_session(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/register",
        json={"email": "  Ada@Example.COM ", "password": PASSWORD, "name": " Ada "},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert_session(body, "ada@example.com")
    assert body["user"]["name"] == "Ada"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == body["user"]["id"]
    assert {"sub", "iat", "exp", "jti", "iss", "aud"} <= claims.keys()
    mine = await me(client, body["access_token"])
    assert mine.status_code == 200
    assert mine.json() == {"user": body["user"]}


async def test_register_twice_is_email_taken(client: httpx.AsyncClient) -> None:
    await register_user(client, "bob@example.com")
    response = await client.post(
        "/api/auth/register", json={"email": " BOB@example.com", "password": PASSWORD}
    )
    assert response.status_code == 409
    assert error_of(response)["code"] == "email_taken"


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({"email": "a@b.io", "password": PASSWORD, "admin": True}, "admin", "unknown field"),
        ({"email": "a@b.io", "password": 12345678}, "password", "must be of type string"),
        ({"email": ["a@b.io"], "password": PASSWORD}, "email", "must be of type string"),
        ({"email": "a@b.io", "password": PASSWORD, "name": 7}, "name", "must be of type"),
        ({"password": PASSWORD}, "email", "required"),
        ({"email": "a@b.io"}, "password", "required"),
        ({"email": "a@b.io", "password": "short"}, "password", "8 to 1024 characters"),
        ({"email": "a@b.io", "password": "x" * 1025}, "password", "8 to 1024 characters"),
        ({"email": "a@b.io", "password": PASSWORD, "name": "n" * 201}, "name", ""),
        ({"email": "not-an-email", "password": PASSWORD}, "email", "email address"),
        ({"email": "a b@c.io", "password": PASSWORD}, "email", "email address"),
    ],
)
async def test_register_rejects_bad_input(
    client: httpx.AsyncClient, body: dict[str, Any], field: str, problem: str
) -> None:
    response = await client.post("/api/auth/register", json=body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert problem in error["details"][field]
    password = body.get("password")
    if isinstance(password, str):
        assert password not in response.text  # never echoed back


async def test_register_accepts_password_bounds(client: httpx.AsyncClient) -> None:
    for email, password in (("min@b.io", "x" * 8), ("max@b.io", "y" * 1024)):
        response = await client.post(
            "/api/auth/register", json={"email": email, "password": password, "name": None}
        )
        assert response.status_code == 201, response.text
        assert response.json()["user"]["name"] is None


@pytest.mark.parametrize("path", ["/api/auth/register", "/api/auth/login", "/api/auth/refresh"])
async def test_malformed_json_and_wrong_media_type(client: httpx.AsyncClient, path: str) -> None:
    json_headers = {"Content-Type": "application/json"}
    response = await client.post(path, content=b'{"email": ', headers=json_headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"
    response = await client.post(path, content=b"[1, 2]", headers=json_headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == "validation_failed"
    response = await client.post(path, content=b"email=a", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


# -- login ----------------------------------------------------------------------------------


async def test_login(client: httpx.AsyncClient) -> None:
    user = await register_user(client, "carol@example.com", PASSWORD)
    response = await client.post(
        "/api/auth/login", json={"email": " Carol@Example.com", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_session(body, "carol@example.com")
    assert body["user"]["id"] == user.user_id
    assert body["refresh_token"] != user.refresh_token
    assert (await me(client, body["access_token"])).status_code == 200


async def test_login_failures_look_the_same(client: httpx.AsyncClient) -> None:
    await register_user(client, "dave@example.com", PASSWORD)
    wrong_password = await client.post(
        "/api/auth/login", json={"email": "dave@example.com", "password": "nope-nope"}
    )
    unknown_email = await client.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": "nope-nope"}
    )
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert error_of(wrong_password) == error_of(unknown_email)
    assert error_of(wrong_password)["code"] == "invalid_credentials"


async def test_login_rejects_bad_input(client: httpx.AsyncClient) -> None:
    for body in (
        {"email": "a@b.io", "password": PASSWORD, "remember": True},
        {"email": "a@b.io", "password": None},
        {"email": "a@b.io"},
    ):
        response = await client.post("/api/auth/login", json=body)
        assert response.status_code == 400, body
        assert error_of(response)["code"] == "validation_failed"


async def test_failed_logins_are_rate_limited(start_server: StartServer) -> None:
    server = await start_server(login_max_failures=2, login_window_s=600)
    async with httpx.AsyncClient(base_url=server.url) as client:
        await register_user(client, "eve@example.com", PASSWORD)
        for _ in range(2):
            response = await client.post(
                "/api/auth/login", json={"email": "eve@example.com", "password": "wrong-guess"}
            )
            assert response.status_code == 401
        # The limit holds even for the right password, until the window has passed.
        response = await client.post(
            "/api/auth/login", json={"email": "eve@example.com", "password": PASSWORD}
        )
        assert response.status_code == 429
        assert error_of(response)["code"] == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 600
        # Another email from the same client is not limited.
        response = await client.post(
            "/api/auth/login", json={"email": "frank@example.com", "password": "wrong-guess"}
        )
        assert response.status_code == 401


async def test_concurrent_guesses_share_the_limit(start_server: StartServer) -> None:
    server = await start_server(login_max_failures=2, login_window_s=600)
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=server.url) as client:
        await register_user(client, "ken@example.com", PASSWORD)

        async def guess(i: int) -> None:
            body = {"email": "ken@example.com", "password": f"wrong-guess-{i}"}
            statuses.append((await client.post("/api/auth/login", json=body)).status_code)

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(guess, i)
    assert sorted(statuses) == [401, 401] + [429] * 6


async def test_successful_login_resets_the_failure_count(start_server: StartServer) -> None:
    server = await start_server(login_max_failures=2, login_window_s=600)
    async with httpx.AsyncClient(base_url=server.url) as client:
        await register_user(client, "gil@example.com", PASSWORD)
        login = {"email": "gil@example.com", "password": PASSWORD}
        bad = {"email": "gil@example.com", "password": "wrong-guess"}
        assert (await client.post("/api/auth/login", json=bad)).status_code == 401
        assert (await client.post("/api/auth/login", json=login)).status_code == 200
        assert (await client.post("/api/auth/login", json=bad)).status_code == 401
        assert (await client.post("/api/auth/login", json=login)).status_code == 200


# -- refresh and logout ---------------------------------------------------------------------


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates(client: httpx.AsyncClient) -> None:
    user = await register_user(client, "hal@example.com")
    first = await refresh(client, user.refresh_token)
    assert first.status_code == 200, first.text
    body = first.json()
    assert_session(body, "hal@example.com")
    assert body["refresh_token"] != user.refresh_token
    assert (await me(client, body["access_token"])).status_code == 200
    second = await refresh(client, body["refresh_token"])
    assert second.status_code == 200
    assert second.json()["refresh_token"] not in (user.refresh_token, body["refresh_token"])


async def test_reused_refresh_token_revokes_the_family(client: httpx.AsyncClient) -> None:
    user = await register_user(client, "ivy@example.com")
    rotated = (await refresh(client, user.refresh_token)).json()["refresh_token"]
    # The first token is presented again (stolen copy): 401, and the family is revoked.
    reused = await refresh(client, user.refresh_token)
    assert reused.status_code == 401
    assert error_of(reused)["code"] == "unauthorized"
    legit = await refresh(client, rotated)
    assert legit.status_code == 401
    # Another session (other family) of the same user is untouched.
    login = await client.post(
        "/api/auth/login", json={"email": "ivy@example.com", "password": "correct horse battery"}
    )
    assert (await refresh(client, login.json()["refresh_token"])).status_code == 200


async def test_unknown_refresh_token_is_unauthorized(client: httpx.AsyncClient) -> None:
    response = await refresh(client, "not-a-refresh-token")
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    response = await client.post("/api/auth/refresh", json={"refresh_token": 5})
    assert response.status_code == 400
    assert error_of(response)["details"] == {"refresh_token": "must be of type string"}


async def test_logout_revokes_the_family(client: httpx.AsyncClient) -> None:
    user = await register_user(client, "jan@example.com")
    rotated = (await refresh(client, user.refresh_token)).json()
    headers = {"Authorization": f"Bearer {rotated['access_token']}"}
    response = await client.post(
        "/api/auth/logout", json={"refresh_token": rotated["refresh_token"]}, headers=headers
    )
    assert response.status_code == 204
    assert response.content == b""
    assert (await refresh(client, rotated["refresh_token"])).status_code == 401


async def test_logout_needs_the_owner(client: httpx.AsyncClient) -> None:
    owner = await register_user(client, "kim@example.com")
    other = await register_user(client, "lee@example.com")
    no_auth = await client.post("/api/auth/logout", json={"refresh_token": owner.refresh_token})
    assert no_auth.status_code == 401
    # Another user cannot revoke kim's session.
    response = await client.post(
        "/api/auth/logout", json={"refresh_token": owner.refresh_token}, headers=other.headers
    )
    assert response.status_code == 204
    assert (await refresh(client, owner.refresh_token)).status_code == 200


# -- bearer tokens ------------------------------------------------------------------------


async def test_me_requires_a_valid_token(client: httpx.AsyncClient) -> None:
    user = await register_user(client, "max@example.com")
    response = await client.get("/api/auth/me")
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    secret = TEST_JWT_SECRET.encode()
    now = int(time.time())
    forged = {
        "alg none": keys.unsigned_token(keys.claims(user.user_id)),
        "wrong secret": keys.mint(b"w" * 40, "HS256", sub=user.user_id),
        "wrong aud": keys.mint(secret, "HS256", sub=user.user_id, aud="billing"),
        "wrong iss": keys.mint(secret, "HS256", sub=user.user_id, iss="evil"),
        "expired": keys.mint(secret, "HS256", sub=user.user_id, iat=now - 7200, exp=now - 3600),
        "tampered": keys.tamper(user.access_token, exp=now + 10**6),
        "unknown user": keys.mint(secret, "HS256", sub="no-such-user"),
        "garbage": "abc.def.ghi",
    }
    for case, token in forged.items():
        response = await me(client, token)
        assert response.status_code == 401, case
        assert error_of(response)["code"] == "unauthorized", case
    # The control: a token minted the same way, correctly, is accepted.
    assert (await me(client, keys.mint(secret, "HS256", sub=user.user_id))).status_code == 200
    response = await client.get("/api/auth/me", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401


# -- external tokens (RS256 / ES256) --------------------------------------------------------


@pytest.fixture
async def external(
    start_server: StartServer, tmp_path: Path
) -> AsyncIterator[tuple[RunningServer, httpx.AsyncClient, Any]]:
    private = keys.rsa_key()
    pem = keys.write_pem(tmp_path / "auth-service.pem", private)
    server = await start_server(jwt_algorithm="RS256", jwt_public_key_file=pem)
    async with httpx.AsyncClient(base_url=server.url) as client:
        yield server, client, private


async def test_external_tokens_create_the_user_on_first_sight(
    external: tuple[RunningServer, httpx.AsyncClient, Any],
) -> None:
    _, client, private = external
    token = keys.mint(private, "RS256", sub="auth0|abc123", email="Zoe@Example.com", name="Zoe")
    headers = {"Authorization": f"Bearer {token}"}
    response = await client.get("/api/auth/me", headers=headers)
    assert response.status_code == 200, response.text
    user = response.json()["user"]
    assert (user["id"], user["email"], user["name"]) == ("auth0|abc123", "zoe@example.com", "Zoe")
    project = await client.post("/api/projects", json={"name": "ext"}, headers=headers)
    assert project.status_code == 201, project.text
    listed = await client.get("/api/projects", headers=headers)
    assert [p["id"] for p in listed.json()["items"]] == [project.json()["id"]]
    # Seen again: the same user, not a new one.
    again = keys.mint(private, "RS256", sub="auth0|abc123", email="zoe@example.com")
    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {again}"})
    assert response.json()["user"] == user
    # No email claim: a placeholder address.
    bare = keys.mint(private, "RS256", sub="svc-7")
    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {bare}"})
    assert response.json()["user"]["email"] == "svc-7@external"


async def test_external_mode_refuses_forged_tokens(
    external: tuple[RunningServer, httpx.AsyncClient, Any],
) -> None:
    _, client, private = external
    pem = keys.public_pem(private)
    forged = {
        "hs256 with the public key": keys.hs256_by_hand(keys.claims("x"), pem),
        "hs256 with the local secret": keys.mint(TEST_JWT_SECRET.encode(), "HS256", sub="x"),
        "alg none": keys.unsigned_token(keys.claims("x")),
        "other key": keys.mint(keys.rsa_key(), "RS256", sub="x"),
        "wrong aud": keys.mint(private, "RS256", sub="x", aud="other"),
        "expired": keys.mint(private, "RS256", sub="x", exp=int(time.time()) - 3600),
        "tampered": keys.tamper(keys.mint(private, "RS256", sub="x"), sub="y"),
    }
    for case, token in forged.items():
        response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, case
        assert error_of(response)["code"] == "unauthorized", case


async def test_external_mode_has_no_local_login(
    external: tuple[RunningServer, httpx.AsyncClient, Any],
) -> None:
    _, client, _ = external
    for path, body in (
        ("/api/auth/register", {"email": "a@b.io", "password": PASSWORD}),
        ("/api/auth/login", {"email": "a@b.io", "password": PASSWORD}),
        ("/api/auth/refresh", {"refresh_token": "whatever"}),
    ):
        response = await client.post(path, json=body)
        assert response.status_code == 404, path
        error = error_of(response)
        assert error["code"] == "not_found"
        assert "external auth service" in error["message"]


async def test_external_jwks_with_kid(start_server: StartServer, tmp_path: Path) -> None:
    current, previous = keys.ec_key(), keys.ec_key()
    jwks = keys.write_jwks(
        tmp_path / "jwks.json",
        [keys.public_jwk(current, "2026-02"), keys.public_jwk(previous, "2026-01")],
    )
    server = await start_server(jwt_algorithm="ES256", jwt_jwks_file=jwks)
    async with httpx.AsyncClient(base_url=server.url) as client:
        for kid, key in (("2026-02", current), ("2026-01", previous)):
            token = keys.mint(key, "ES256", kid=kid, sub=f"user-{kid}")
            response = await client.get(
                "/api/auth/me", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200, response.text
        wrong_kid = keys.mint(previous, "ES256", kid="2026-02", sub="user-x")
        response = await client.get(
            "/api/auth/me", headers={"Authorization": f"Bearer {wrong_kid}"}
        )
        assert response.status_code == 401
