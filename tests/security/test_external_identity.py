"""Issue 12 item 10: external identities key on the exact ``sub``, never on an email.

``sub`` values differing only in case are different users, whatever order they arrive in,
and a subject whose placeholder email is already held (legacy data, a claimed address)
still gets in. Through a real socket, on both databases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.auth import keys
from tests.fixtures.postgres import open_migrated_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.fixtures.postgres import BackendConfig
    from tests.fixtures.server import RunningServer, StartServer


@pytest.fixture
async def external(
    start_server: StartServer, tmp_path: Path
) -> AsyncIterator[tuple[RunningServer, httpx.AsyncClient, Any]]:
    private = keys.rsa_key()
    pem = keys.write_pem(tmp_path / "auth-service.pem", private)
    server = await start_server(jwt_algorithm="RS256", jwt_public_key_file=pem)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield server, client, private


async def _me(client: httpx.AsyncClient, private: Any, **claims: Any) -> dict[str, Any]:
    token = keys.mint(private, "RS256", **claims)
    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    user: dict[str, Any] = response.json()["user"]
    return user


async def _projects(client: httpx.AsyncClient, private: Any, sub: str) -> list[str]:
    token = keys.mint(private, "RS256", sub=sub)
    response = await client.get("/api/projects", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return [p["name"] for p in response.json()["items"]]


@pytest.mark.parametrize("first", ["VICTIM-88", "victim-88"])
async def test_subjects_differing_in_case_are_different_users(
    external: tuple[RunningServer, httpx.AsyncClient, Any], first: str
) -> None:
    _, client, private = external
    second = "victim-88" if first == "VICTIM-88" else "VICTIM-88"
    one = await _me(client, private, sub=first)
    token = keys.mint(private, "RS256", sub=first)
    created = await client.post(
        "/api/projects", json={"name": f"of {first}"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert created.status_code == 201
    two = await _me(client, private, sub=second)
    assert (one["id"], two["id"]) == (first, second)
    assert one["email"] != two["email"]
    assert await _projects(client, private, first) == [f"of {first}"]
    assert await _projects(client, private, second) == []
    # Both keep working.
    assert (await _me(client, private, sub=first))["id"] == first
    assert (await _me(client, private, sub=second))["id"] == second


async def test_a_claimed_or_held_email_never_locks_a_subject_out(
    external: tuple[RunningServer, httpx.AsyncClient, Any],
) -> None:
    _, client, private = external
    # Another subject claims the address the next one will present: the next one still
    # gets in (as its own user, with a placeholder).
    taker = await _me(client, private, sub="taker", email="shared@example.com")
    assert taker["email"] == "shared@example.com"
    late = await _me(client, private, sub="late", email="shared@example.com")
    assert late["id"] == "late"
    assert late["email"] != "shared@example.com"
    # A claimed email cannot be a placeholder: "@external" is not a plausible address.
    squatter = await _me(client, private, sub="squatter", email="svc-9@external")
    assert squatter["email"] != "svc-9@external"
    svc = await _me(client, private, sub="svc-9")
    assert (svc["id"], svc["email"]) == ("svc-9", "svc-9@external")


async def test_legacy_placeholder_held_by_another_case_variant(
    backend: BackendConfig, start_server: StartServer, tmp_path: Path
) -> None:
    # Data written before this fix: "LEGACY-1" holds "legacy-1@external".
    async with open_migrated_store(backend) as store:
        await store.ensure_user("LEGACY-1", "legacy-1@external", None)
    private = keys.rsa_key()
    pem = keys.write_pem(tmp_path / "auth-service.pem", private)
    server = await start_server(jwt_algorithm="RS256", jwt_public_key_file=pem)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user = await _me(client, private, sub="legacy-1")
        assert user["id"] == "legacy-1"
        assert user["email"].endswith("@external")
        assert user["email"] != "legacy-1@external"
        legacy = await _me(client, private, sub="LEGACY-1")
        assert (legacy["id"], legacy["email"]) == ("LEGACY-1", "legacy-1@external")
