"""Issue 12 item 8: login limits that an attacker cannot turn against a victim.

Through a real socket: the client address comes from ``X-Forwarded-For`` only when the peer
is a trusted proxy; failures are limited per (email, address) and per address across
emails; an email under a distributed attack is slowed, never locked; the password-hashing
queue is bounded (429 at once when full, never a long wait or a 5xx); registration is
rate limited per address.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from server.auth.ratelimit import client_address, parse_networks
from tests.fixtures.server import register_user
from tests.security.content_raw import error_code, raw_request

if TYPE_CHECKING:
    from tests.fixtures.server import RunningServer, StartServer

# Limits live in process memory, not in the database: one backend suffices.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

PASSWORD = "correct horse battery"
JSON = {"Content-Type": "application/json"}


async def login(
    server: RunningServer, email: str, password: str, forwarded_for: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = dict(JSON)
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    body = json.dumps({"email": email, "password": password}).encode()
    return await raw_request(server.url, "POST", "/api/auth/login", headers=headers, body=body)


async def make_user(server: RunningServer, email: str) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        await register_user(client, email, PASSWORD)


@sqlite_only
async def test_behind_a_trusted_proxy_an_attacker_locks_out_only_itself(
    start_server: StartServer,
) -> None:
    server = await start_server(login_max_failures=2, trusted_proxies="127.0.0.1")
    await make_user(server, "victim@example.com")
    for _ in range(2):
        status, _, _ = await login(server, "victim@example.com", "wrong-guess", "203.0.113.5")
        assert status == 401
    status, headers, body = await login(server, "victim@example.com", PASSWORD, "203.0.113.5")
    assert status == 429
    assert error_code(body) == "rate_limited"
    assert int(headers["retry-after"]) >= 1
    # The victim, behind the same proxy but from its own address, still logs in.
    status, _, _ = await login(server, "victim@example.com", PASSWORD, "198.51.100.7")
    assert status == 200
    # A client-supplied hop before the proxy's own entry is not believed blindly: the
    # nearest untrusted hop is the client.
    status, _, _ = await login(server, "victim@example.com", PASSWORD, "198.51.100.7, 203.0.113.5")
    assert status == 429


@sqlite_only
async def test_without_trusted_proxies_forwarded_for_is_ignored(
    start_server: StartServer,
) -> None:
    server = await start_server(login_max_failures=2)
    await make_user(server, "spoof@example.com")
    for index in range(2):
        status, _, _ = await login(server, "spoof@example.com", "wrong-guess", f"10.9.0.{index}")
        assert status == 401
    # Inventing a new X-Forwarded-For does not reset the limit.
    status, _, _ = await login(server, "spoof@example.com", "wrong-guess", "10.9.0.99")
    assert status == 429


@sqlite_only
async def test_password_spraying_is_limited_per_address(start_server: StartServer) -> None:
    server = await start_server(login_max_failures_per_address=3, trusted_proxies="127.0.0.1")
    await make_user(server, "sprayed@example.com")
    for index in range(3):
        status, _, _ = await login(server, f"user{index}@example.com", "Winter2026!", "192.0.2.1")
        assert status == 401
    status, _, body = await login(server, "sprayed@example.com", PASSWORD, "192.0.2.1")
    assert status == 429
    assert error_code(body) == "rate_limited"
    status, _, _ = await login(server, "sprayed@example.com", PASSWORD, "192.0.2.2")
    assert status == 200


@sqlite_only
async def test_an_email_under_distributed_attack_is_slowed_not_locked(
    start_server: StartServer,
) -> None:
    server = await start_server(
        login_max_failures=2,
        login_email_slow_after=3,
        login_max_delay_s=0.2,
        trusted_proxies="127.0.0.1",
    )
    await make_user(server, "target@example.com")
    statuses = []
    for index in range(12):  # each from another address: no per-source lock applies
        status, _, _ = await login(server, "target@example.com", "guess", f"198.18.0.{index}")
        statuses.append(status)
    assert statuses == [401] * 12  # slowed, answered, never 429 for the account
    status, _, _ = await login(server, "target@example.com", PASSWORD, "198.18.1.1")
    assert status == 200


@sqlite_only
async def test_a_full_hashing_queue_answers_429_at_once(start_server: StartServer) -> None:
    server = await start_server(
        password_hash_queue=1,
        argon2_time_cost=2,
        argon2_memory_kib=32 * 1024,
        login_max_failures_per_address=10_000,
        trusted_proxies="127.0.0.1",
    )
    results: list[tuple[int, dict[str, str], bytes]] = []

    async def one(index: int) -> None:
        results.append(
            await login(server, f"flood{index}@example.com", "x" * 12, f"10.1.{index}.1")
        )

    async with trio.open_nursery() as nursery:
        for index in range(24):
            nursery.start_soon(one, index)
    statuses = sorted(status for status, _, _ in results)
    assert len(statuses) == 24
    assert set(statuses) == {401, 429}, statuses
    for status, headers, body in results:
        if status == 429:
            assert error_code(body) == "rate_limited"
            assert headers["retry-after"] == "1"
    # After the flood, a legitimate login goes through.
    await make_user(server, "after@example.com")
    status, _, _ = await login(server, "after@example.com", PASSWORD, "10.2.0.1")
    assert status == 200


@sqlite_only
async def test_registration_is_rate_limited_per_address(start_server: StartServer) -> None:
    server = await start_server(register_max_per_address=2, trusted_proxies="127.0.0.1")

    async def register(email: str, address: str) -> tuple[int, dict[str, str], bytes]:
        body: dict[str, Any] = {"email": email, "password": PASSWORD}
        return await raw_request(
            server.url,
            "POST",
            "/api/auth/register",
            headers={**JSON, "X-Forwarded-For": address},
            body=json.dumps(body).encode(),
        )

    assert (await register("r1@example.com", "192.0.2.10"))[0] == 201
    assert (await register("r2@example.com", "192.0.2.10"))[0] == 201
    status, headers, body = await register("r3@example.com", "192.0.2.10")
    assert status == 429
    assert error_code(body) == "rate_limited"
    assert int(headers["retry-after"]) >= 1
    assert (await register("r4@example.com", "192.0.2.11"))[0] == 201


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # untrusted peer: header ignored
        ("10.0.0.2", None, "10.0.0.2"),  # trusted peer, no header: the peer
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # nearest untrusted hop
        ("10.0.0.2", "198.51.100.1, 10.0.0.7", "198.51.100.1"),  # proxies chained
        ("10.0.0.2", "10.0.0.8, 10.0.0.7", "10.0.0.8"),  # all trusted: the farthest
        ("::1", "2001:db8::5", "2001:db8::5"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    trusted = parse_networks("10.0.0.0/8, ::1")
    assert client_address(peer, forwarded, trusted) == expected
