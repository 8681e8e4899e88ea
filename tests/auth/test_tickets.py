"""SSE tickets bound to the session: the rules with a controlled clock, then over HTTP on
both databases (rotation keeps a ticket alive; logout, reuse detection and project deletion
end it; a stream request during shutdown gets 200 with ``retry:``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from server.auth.tickets import TicketService
from server.auth.tokens import TokenService
from server.errors import Unauthorized
from server.events.sse import SSEDecoder
from tests.events.sse_client import open_stream
from tests.fixtures.server import TEST_JWT_SECRET, create_project, register_user

if TYPE_CHECKING:
    from datetime import datetime

    import httpx

    from server.store.protocol import Store
    from tests.fixtures.server import AuthedUser, RunningServer

SECRET = TEST_JWT_SECRET.encode()


class Families:
    """The one store method tickets use, over a set of live families (a fake, not a mock)."""

    def __init__(self, *live: str) -> None:
        self.live = set(live)

    async def refresh_family_active(self, family_id: str, user_id: str, now: datetime) -> bool:
        return family_id in self.live


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def service(clock: Clock, **kw: int) -> TicketService:
    return TicketService(secret=SECRET, issuer="stretto", clock=clock, **kw)


def as_store(families: Families) -> Store:
    return families  # type: ignore[return-value]


async def test_a_used_ticket_lives_with_its_session_up_to_the_cap() -> None:
    clock = Clock()
    tickets = service(clock, ttl_s=60, max_age_s=3600)
    families = Families("fam")
    ticket, expires_in = tickets.issue("u1", "p1", "fam")
    assert expires_in == 60
    assert await tickets.verify(ticket, "p1", as_store(families)) == "u1"
    clock.now += 1800  # long past the first-use window: a reconnect of a used ticket
    assert await tickets.verify(ticket, "p1", as_store(families)) == "u1"
    with pytest.raises(Unauthorized):
        await tickets.verify(ticket, "p2", as_store(families))  # one project only
    families.live.clear()  # logout
    with pytest.raises(Unauthorized):
        await tickets.verify(ticket, "p1", as_store(families))
    families.live.add("fam")
    clock.now += 1800 + 11  # past the cap (and the leeway)
    with pytest.raises(Unauthorized):
        await tickets.verify(ticket, "p1", as_store(families))


async def test_an_unused_ticket_expires_after_its_ttl_unless_it_is_a_reconnect() -> None:
    clock = Clock()
    tickets = service(clock, ttl_s=60, max_age_s=3600)
    families = Families("fam")
    ticket, _ = tickets.issue("u1", "p1", "fam")
    clock.now += 60 + 11
    with pytest.raises(Unauthorized):
        await tickets.verify(ticket, "p1", as_store(families))
    # An EventSource reconnect (another instance, after a restart) carries Last-Event-ID.
    assert await tickets.verify(ticket, "p1", as_store(families), reconnect=True) == "u1"
    assert await tickets.verify(ticket, "p1", as_store(families)) == "u1"  # now seen here


async def test_foreign_and_forged_tickets_are_refused() -> None:
    clock = Clock()
    tickets = service(clock)
    families = Families("fam")
    other = TicketService(secret=b"another-secret-that-is-long-enough!!", issuer="stretto")
    for bad in ("", "garbage", other.issue("u1", "p1", "fam")[0]):
        with pytest.raises(Unauthorized):
            await tickets.verify(bad, "p1", as_store(families))
    # Without a family (external auth tokens) a ticket lives until the cap.
    ticket, _ = tickets.issue("u1", "p1", None)
    assert await tickets.verify(ticket, "p1", as_store(Families())) == "u1"


# -- over HTTP, on both databases ------------------------------------------------------------


async def mint(client: httpx.AsyncClient, user: AuthedUser, pid: str) -> str:
    response = await client.post("/api/sse/tickets", json={"project_id": pid}, headers=user.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["ticket"])


async def stream_status(client: httpx.AsyncClient, pid: str, ticket: str) -> int:
    async with open_stream(client, pid, params={"ticket": ticket}) as stream:
        return stream.status


async def test_ticket_follows_the_session(server: RunningServer, client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    pid = await create_project(client, user)
    ticket = await mint(client, user, pid)
    assert await stream_status(client, pid, ticket) == 200

    refreshed = await client.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert refreshed.status_code == 200
    assert await stream_status(client, pid, ticket) == 200  # rotation keeps the session

    new_refresh = refreshed.json()["refresh_token"]
    logout = await client.post(
        "/api/auth/logout", json={"refresh_token": new_refresh}, headers=user.headers
    )
    assert logout.status_code == 204
    dead = await client.get(f"/api/sse/projects/{pid}", params={"ticket": ticket})
    assert dead.status_code == 401
    assert dead.json()["error"]["code"] == "unauthorized"


async def test_reused_refresh_token_kills_the_tickets(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    pid = await create_project(client, user)
    ticket = await mint(client, user, pid)
    body = {"refresh_token": user.refresh_token}
    assert (await client.post("/api/auth/refresh", json=body)).status_code == 200
    assert (await client.post("/api/auth/refresh", json=body)).status_code == 401  # reuse
    response = await client.get(f"/api/sse/projects/{pid}", params={"ticket": ticket})
    assert response.status_code == 401


async def test_deleted_project_ends_its_ticket(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    pid = await create_project(client, user)
    ticket = await mint(client, user, pid)
    deleted = await client.delete(f"/api/projects/{pid}", headers=user.headers)
    assert deleted.status_code == 204
    response = await client.get(f"/api/sse/projects/{pid}", params={"ticket": ticket})
    assert response.status_code == 404


async def test_stream_request_during_shutdown_gets_200_and_retry(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    user = await register_user(client)
    pid = await create_project(client, user)
    ticket = await mint(client, user, pid)
    server.services.lifecycle.draining = True
    try:
        response = await client.get(f"/api/sse/projects/{pid}", params={"ticket": ticket})
        ready = await client.get("/api/ready")
    finally:
        server.services.lifecycle.draining = False
    assert ready.status_code == 503
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    decoder = SSEDecoder()
    assert decoder.feed(response.content) == []  # no events, the stream just ends
    assert response.content.startswith(b"retry: ")


def test_access_tokens_carry_their_session() -> None:
    tokens = TokenService(
        algorithm="HS256",
        issuer="stretto",
        audience="stretto",
        hs_secret=SECRET,
    )
    with_session, _ = tokens.issue_access("u1", "family-1")
    assert tokens.verify_access(with_session)["sid"] == "family-1"
    without, _ = tokens.issue_access("u1")
    assert "sid" not in tokens.verify_access(without)
