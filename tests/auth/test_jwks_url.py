"""A JWKS URL against a running server, both databases: a stand-in auth service serves its
key set on loopback (tests/auth/jwks_server.py) and rotates, fails, hangs or goes away."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from tests.auth import keys
from tests.auth.jwks_server import JWKSServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from cryptography.hazmat.primitives.asymmetric import rsa

    from server.auth.jwks import RemoteKeySet
    from tests.fixtures.server import RunningServer, StartServer

KEY_A = keys.rsa_key()
KEY_B = keys.rsa_key()


@pytest.fixture
async def jwks(nursery: trio.Nursery) -> AsyncIterator[JWKSServer]:
    server = JWKSServer([keys.public_jwk(KEY_A, "a")])
    await nursery.start(server.serve)
    yield server
    server.stop()


async def start(start_server: StartServer, jwks: JWKSServer, **settings: Any) -> RunningServer:
    return await start_server(jwt_algorithm="RS256", jwt_jwks_url=jwks.url, **settings)


async def status_for(server: RunningServer, key: rsa.RSAPrivateKey, kid: str) -> int:
    token = keys.mint(key, "RS256", kid=kid, sub=f"user-{kid}")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    if response.status_code != 200:
        assert response.json()["error"]["code"] == "unauthorized"
    return response.status_code


def remote_keys(server: RunningServer) -> RemoteKeySet:
    remote = server.services.tokens.remote_keys
    assert remote is not None
    return remote


async def wait_failures(server: RunningServer, count: int) -> None:
    with trio.fail_after(10):
        while remote_keys(server).failures < count:  # noqa: ASYNC110 - counters, no event
            await trio.sleep(0.02)


async def test_rotation_works_without_restart_and_a_kid_flood_is_rate_limited(
    start_server: StartServer, jwks: JWKSServer
) -> None:
    server = await start(start_server, jwks, jwt_jwks_min_refresh_s=2.0)
    assert jwks.requests == 1  # fetched once before the server reported ready
    assert await status_for(server, KEY_A, "a") == 200
    assert await status_for(server, KEY_B, "b") == 401  # not published: one refresh, refused
    assert jwks.requests == 2

    # The auth service rotates: b is published. Unknown kids within the interval get 401
    # at once (no fetch); after it, the first token signed with b refreshes the set.
    jwks.keys = [keys.public_jwk(KEY_B, "b"), keys.public_jwk(KEY_A, "a")]
    assert await status_for(server, KEY_B, "b") == 401
    assert jwks.requests == 2
    await trio.sleep(2.1)  # let the rate-limit interval pass (not a timing assertion)
    assert await status_for(server, KEY_B, "b") == 200
    assert jwks.requests == 3
    assert await status_for(server, KEY_A, "a") == 200

    # A flood of random kids, concurrently, after the interval: at most one more fetch.
    await trio.sleep(2.1)
    statuses: list[int] = []

    async def random_kid() -> None:
        statuses.append(await status_for(server, KEY_B, secrets.token_hex(8)))

    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(random_kid)
    assert statuses == [401] * 40
    assert jwks.requests - 3 <= 1
    assert await status_for(server, KEY_A, "a") == 200
    assert await status_for(server, KEY_B, "b") == 200


async def test_forged_tokens_are_refused_with_a_jwks_url(
    start_server: StartServer, jwks: JWKSServer
) -> None:
    server = await start(start_server, jwks)
    pem = keys.public_pem(KEY_A)
    forged = {
        "hs256 with the public key": keys.hs256_by_hand(keys.claims("x"), pem, kid="a"),
        "alg none": keys.unsigned_token(keys.claims("x")),
        "other key, known kid": keys.mint(KEY_B, "RS256", kid="a", sub="x"),
        "wrong aud": keys.mint(KEY_A, "RS256", kid="a", sub="x", aud="other"),
        "wrong iss": keys.mint(KEY_A, "RS256", kid="a", sub="x", iss="other"),
    }
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for case, token in forged.items():
            response = await client.get(
                "/api/auth/me", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 401, case


async def test_failing_or_vanished_jwks_server_keeps_the_cached_keys(
    start_server: StartServer, jwks: JWKSServer
) -> None:
    server = await start(start_server, jwks, jwt_jwks_ttl_s=0.1, jwt_jwks_min_refresh_s=0.05)
    assert await status_for(server, KEY_A, "a") == 200
    jwks.mode = "error"
    await wait_failures(server, 1)
    assert await status_for(server, KEY_A, "a") == 200
    jwks.stop()  # connection refused from now on
    failures = remote_keys(server).failures
    await wait_failures(server, failures + 2)
    assert await status_for(server, KEY_A, "a") == 200
    assert await status_for(server, KEY_B, "b") == 401
    assert remote_keys(server).kids == ["a"]


async def test_a_hanging_jwks_server_never_blocks_known_keys(
    start_server: StartServer, jwks: JWKSServer
) -> None:
    server = await start(start_server, jwks, jwt_jwks_timeout_s=2.0)
    jwks.mode = "hang"
    unknown: list[int] = []

    async def unknown_kid() -> None:
        unknown.append(await status_for(server, KEY_B, "b"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(unknown_kid)
        await jwks.wait_requests(2)  # the refresh it asked for is hanging
        assert await status_for(server, KEY_A, "a") == 200
        assert unknown == []  # still waiting for the refresh, bounded by the timeout
    assert unknown == [401]
    assert await status_for(server, KEY_A, "a") == 200


async def test_starts_while_the_jwks_server_is_down_and_recovers(
    start_server: StartServer, jwks: JWKSServer
) -> None:
    jwks.mode = "error"
    server = await start(start_server, jwks, jwt_jwks_min_refresh_s=0.05)
    assert await status_for(server, KEY_A, "a") == 401  # no keys yet: refused, not hung
    jwks.mode = "ok"
    with trio.fail_after(10):
        while remote_keys(server).kids != ["a"]:  # noqa: ASYNC110 - counters, no event
            await trio.sleep(0.02)
    assert await status_for(server, KEY_A, "a") == 200
