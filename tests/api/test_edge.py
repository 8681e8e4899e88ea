"""The hot routes below Quart (server.api.edge) answer exactly as the Quart routes do.

Every case is sent twice to one app built on the running server's services: once through
the edge router, once straight to the Quart app behind it; status, headers (but the date)
and body must match, and the edge must not have called Quart for it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from server.api.cors import CorsPolicy
from server.api.edge import HANDLERS, EdgeRouter, edge_router
from server.app import create_app
from tests.fixtures.postgres import BackendConfig
from tests.fixtures.server import create_project, register_user

if TYPE_CHECKING:
    from pathlib import Path

    from tests.fixtures.server import AuthedUser, RunningServer

ORIGIN = "https://app.example"
VOLATILE = {"date", "server"}


class Counting:
    """Quart's ASGI app, counting the requests that reach it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.inner(scope, receive, send)


class Pair:
    def __init__(self, server: RunningServer) -> None:
        app = create_app(server.services)
        assert isinstance(app.asgi_app, EdgeRouter)
        self.quart = Counting(app.asgi_app.inner)
        policy = CorsPolicy(frozenset({ORIGIN}))
        self.edge = edge_router(app, self.quart, server.services, policy)
        # Quart's CORS hook is installed only when the settings name origins: add it here.
        from server.api.cors import install_cors

        app.asgi_app = self.edge  # type: ignore[method-assign]
        install_cors(app, policy)

    async def both(
        self, method: str, url: str, **kwargs: Any
    ) -> tuple[httpx.Response, httpx.Response, int]:
        """(through the edge, straight to Quart, Quart calls made by the edge request)."""
        headers = {"X-Request-ID": "same-id", "Origin": ORIGIN, **kwargs.pop("headers", {})}
        results = []
        calls = 0
        for app in (self.edge, self.quart):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                before = self.quart.calls
                results.append(await client.request(method, url, headers=headers, **kwargs))
                if app is self.edge:
                    calls = self.quart.calls - before
        return results[0], results[1], calls


def comparable(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in VOLATILE}
    return response.status_code, headers, response.content


@pytest.fixture
def backend(tmp_path: Path) -> BackendConfig:
    """SQLite only: the in-process client below runs the app in the test's task, outside
    the server's trio-asyncio loop that asyncpg needs. The route code is the same on both
    backends, and every real-socket suite (tests/api, tests/events...) runs through the
    edge on both."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return BackendConfig(name="sqlite", database_url=None, data_dir=data_dir)


@pytest.fixture
async def pair(server: RunningServer) -> Pair:
    return Pair(server)


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> tuple[AuthedUser, str]:
    user = await register_user(client)
    pid = await create_project(client, user)
    response = await client.put(
        f"/api/projects/{pid}/files/src/a.txt", content=b"hello", headers=user.headers
    )
    assert response.status_code == 201
    return user, pid


CASES = [
    ("GET", "/api/health", {}, None, True),
    ("GET", "/api/projects/{pid}", {}, None, True),
    ("GET", "/api/projects/{pid}", {"Authorization": "Basic abc"}, None, True),
    ("GET", "/api/projects/{pid}", {"Authorization": "Bearer nonsense"}, None, True),
    ("GET", "/api/projects/{pid}", {"Authorization": ""}, None, True),
    ("GET", "/api/projects/nope", {}, None, True),
    ("GET", "/api/projects/{pid}/", {}, None, True),
    ("GET", "/api/projects/{pid}/files/%ff", {}, None, True),
    ("GET", "/api/workflow/runs/nope", {}, None, True),
    ("GET", "/api/projects/{pid}/files/src/a.txt", {}, None, True),
    ("GET", "/api/projects/{pid}/files/src/a.txt", {"If-None-Match": '"1"'}, None, True),
    ("GET", "/api/projects/{pid}/files/src/a.txt", {"If-None-Match": '"9", *'}, None, True),
    ("GET", "/api/projects/{pid}/files/src/a.txt", {"If-None-Match": '"2"'}, None, True),
    ("GET", "/api/projects/{pid}/files/src/missing.bin", {}, None, True),
    ("GET", "/api/projects/{pid}/files/a//b", {}, None, True),
    ("GET", "/api/projects/{pid}/files/%2Fetc/passwd", {}, None, True),
    ("GET", "/api/projects/{pid}/files/src/a.txt?versions", {}, None, False),
    ("GET", "/api/projects/{pid}/files/src/a.txt?version=1", {}, None, False),
    ("POST", "/api/sse/tickets", {}, b'{"project_id": "nope"}', True),
    ("POST", "/api/sse/tickets", {"Content-Type": "text/plain"}, b"{}", True),
    ("POST", "/api/sse/tickets", {}, b"{not json", True),
    ("POST", "/api/sse/tickets", {}, b'{"project_id": "{pid}", "x": 1}', True),
    ("POST", "/api/sse/tickets", {}, b'{"project_id": "' + b"x" * 70000 + b'"}', True),
    ("GET", "/api/sse/projects/{pid}", {"Authorization": None}, None, True),
    ("GET", "/api/sse/projects/{pid}?ticket=forged", {"Authorization": None}, None, True),
    ("GET", "/api/sse/projects/nope", {}, None, True),
    ("GET", "/api/sse/projects/{pid}?run_id=" + "r" * 200, {}, None, True),
    ("HEAD", "/api/projects/{pid}", {}, None, False),
    ("PUT", "/api/health", {}, None, False),
    ("GET", "/api/projects", {}, None, False),
]


@pytest.mark.parametrize(("method", "url", "headers", "body", "below_quart"), CASES)
async def test_edge_answers_exactly_as_quart(
    pair: Pair,
    owner: tuple[AuthedUser, str],
    method: str,
    url: str,
    headers: dict[str, str | None],
    body: bytes | None,
    below_quart: bool,
) -> None:
    user, pid = owner
    sent = {**user.headers, **headers}
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
        body = body.replace(b"{pid}", pid.encode())
    clean = {k: v for k, v in sent.items() if v is not None}
    edge, quart, calls = await pair.both(
        method, url.replace("{pid}", pid), headers=clean, content=body
    )
    assert calls == (0 if below_quart else 1)
    assert comparable(edge) == comparable(quart)
    if edge.status_code >= 400:
        assert set(edge.json()["error"]) == {"code", "message", "details"}


async def test_tickets_and_their_headers_match(pair: Pair, owner: tuple[AuthedUser, str]) -> None:
    user, pid = owner
    edge, quart, calls = await pair.both(
        "POST", "/api/sse/tickets", headers=user.headers, json={"project_id": pid}
    )
    assert calls == 0
    assert edge.status_code == quart.status_code == 201
    assert comparable(edge)[1].keys() == comparable(quart)[1].keys()
    assert json.loads(edge.content).keys() == {"ticket", "expires_in"}
    assert edge.headers["access-control-allow-origin"] == ORIGIN
    assert edge.headers["vary"] == "Origin"


async def test_every_edge_endpoint_is_a_quart_route(server: RunningServer) -> None:
    endpoints = {rule.endpoint for rule in create_app(server.services).url_map.iter_rules()}
    assert set(HANDLERS) <= endpoints


async def test_edge_requests_are_counted_by_route_template(
    client: httpx.AsyncClient, owner: tuple[AuthedUser, str]
) -> None:
    from tests.api.test_metrics import samples, value

    user, pid = owner

    async def counted(route: str, status: str) -> float:
        text = (await client.get("/metrics")).text
        return value(
            samples(text), "stretto_http_requests_total", method="GET", route=route, status=status
        )

    route = "/api/projects/<project_id>"
    before_ok, before_missing = await counted(route, "200"), await counted(route, "404")
    assert (await client.get(f"/api/projects/{pid}", headers=user.headers)).status_code == 200
    assert (await client.get("/api/projects/nope", headers=user.headers)).status_code == 404
    assert await counted(route, "200") - before_ok == 1
    assert await counted(route, "404") - before_missing == 1
