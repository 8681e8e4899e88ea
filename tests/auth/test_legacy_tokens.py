"""Accepting a legacy auth server's HS256 tokens, against a running server, both databases.

The legacy server (Fastify's JWT plugin: HS256 by default) signs ``{"userId": 42, ...}``
with a shared secret, often without ``iss`` or ``aud``. stretto runs with
``auth_mode=external``, that secret, ``jwt_subject_claim=userId`` and the checks it
cannot make turned off (empty issuer/audience).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest

from tests.auth import keys
from tests.events.sse_client import open_stream
from tests.fixtures.server import TEST_JWT_SECRET

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.fixtures.server import RunningServer, StartServer

LEGACY_SECRET = "the-legacy-fastify-servers-shared-secret"


def legacy_token(secret: str = LEGACY_SECRET, **claims: Any) -> str:
    """A token as the legacy server mints it (``jwt.sign({userId, email})``)."""
    now = int(time.time())
    payload: dict[str, Any] = {"userId": 42, "email": "Ada@Legacy.example", "iat": now}
    payload["exp"] = now + 600
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def legacy(start_server: StartServer) -> AsyncIterator[httpx.AsyncClient]:
    server = await start_server(
        auth_mode="external",
        jwt_algorithm="HS256",
        jwt_secret=LEGACY_SECRET,
        jwt_subject_claim="userId",
        jwt_issuer="",
        jwt_audience="",
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def test_a_legacy_token_creates_the_user_runs_and_streams(
    legacy: httpx.AsyncClient,
) -> None:
    client = legacy
    headers = bearer(legacy_token())
    me = await client.get("/api/auth/me", headers=headers)
    assert me.status_code == 200, me.text
    assert me.json()["user"]["id"] == "42"
    assert me.json()["user"]["email"] == "ada@legacy.example"
    # The same legacy user again (a string id this time): the same stretto user.
    again = await client.get("/api/auth/me", headers=bearer(legacy_token(userId="42")))
    assert again.json()["user"] == me.json()["user"]

    project = await client.post("/api/projects", json={"name": "legacy"}, headers=headers)
    assert project.status_code == 201, project.text
    pid = project.json()["id"]
    async with open_stream(client, pid, headers={**headers, "Last-Event-ID": "0"}) as stream:
        write = {"path": "a.txt", "content": "x"}
        plan = {"steps": [{"id": "w", "tool": "vfs.write", "args": write}]}
        run = await client.post(
            "/api/workflow/runs", json={"project_id": pid, "plan": plan}, headers=headers
        )
        assert run.status_code == 202, run.text
        seen: list[str] = []
        while "run.succeeded" not in seen:
            message = await stream.next()
            assert json.loads(message.data)["project_id"] == pid
            seen.append(message.event)
    assert {"run.created", "step.started", "step.succeeded", "file.changed"} <= set(seen)
    # A stream ticket works too (the ticket key is derived from the shared secret).
    ticket = await client.post("/api/sse/tickets", json={"project_id": pid}, headers=headers)
    assert ticket.status_code == 201, ticket.text
    params = {"ticket": ticket.json()["ticket"], "last_event_id": "0"}
    async with open_stream(client, pid, params=params) as stream:
        assert (await stream.next()).event == "run.created"


async def test_stretto_mints_nothing_for_legacy_users(legacy: httpx.AsyncClient) -> None:
    for path, body in (
        ("/api/auth/register", {"email": "a@b.io", "password": "correct horse battery"}),
        ("/api/auth/login", {"email": "a@b.io", "password": "correct horse battery"}),
    ):
        response = await legacy.post(path, json=body)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


async def test_bad_legacy_tokens_are_unauthorized(legacy: httpx.AsyncClient) -> None:
    rsa_private = keys.rsa_key()
    now = int(time.time())
    forged = {
        "wrong secret": legacy_token(secret="another-secret-of-at-least-32-bytes!!"),
        "alg none": keys.unsigned_token({"userId": 42, "iat": now, "exp": now + 600}),
        "RS256 token (key confusion)": jwt.encode(
            {"userId": 42, "iat": now, "exp": now + 600}, rsa_private, algorithm="RS256"
        ),
        "HS256 with the public key as secret": keys.hs256_by_hand(
            {"userId": 42, "iat": now, "exp": now + 600}, keys.public_pem(rsa_private)
        ),
        "missing userId (sub only)": legacy_token(userId=None, sub="42"),
        "empty userId": legacy_token(userId=""),
        "boolean userId": legacy_token(userId=True),
        "object userId": legacy_token(userId={"id": 42}),
        "too long userId": legacy_token(userId="u" * 256),
        "expired": legacy_token(iat=now - 7200, exp=now - 3600),
        "no exp": legacy_token(exp=None),
        "tampered": keys.tamper(legacy_token(), userId=1),
        "stretto's test secret": legacy_token(secret=TEST_JWT_SECRET),
    }
    for case, token in forged.items():
        response = await legacy.get("/api/auth/me", headers=bearer(token))
        assert response.status_code == 401, case
        assert response.json()["error"]["code"] == "unauthorized", case
        runs = await legacy.get("/api/workflow/runs", headers=bearer(token))
        assert runs.status_code == 401, case


async def test_iss_and_aud_are_checked_when_configured(start_server: StartServer) -> None:
    server: RunningServer = await start_server(
        auth_mode="external",
        jwt_algorithm="HS256",
        jwt_secret=LEGACY_SECRET,
        jwt_subject_claim="userId",
        jwt_issuer="legacy-auth",
        jwt_audience="stretto-api",
    )
    good = {"iss": "legacy-auth", "aud": "stretto-api"}
    cases = {
        "right iss and aud": (legacy_token(**good), 200),
        "aud in a list": (legacy_token(iss="legacy-auth", aud=["x", "stretto-api"]), 200),
        "wrong iss": (legacy_token(iss="someone-else", aud="stretto-api"), 401),
        "wrong aud": (legacy_token(iss="legacy-auth", aud="other-api"), 401),
        "no iss": (legacy_token(aud="stretto-api"), 401),
        "no aud": (legacy_token(iss="legacy-auth"), 401),
        "neither": (legacy_token(), 401),
    }
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for case, (token, status) in cases.items():
            response = await client.get("/api/auth/me", headers=bearer(token))
            assert response.status_code == status, (case, response.text)


async def test_unchecked_iss_and_aud_accept_any(legacy: httpx.AsyncClient) -> None:
    token = legacy_token(iss="whoever", aud="anything", userId="u-7")
    response = await legacy.get("/api/auth/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == "u-7"
