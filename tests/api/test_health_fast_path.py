"""GET /api/health is answered below Quart (server.app.health_fast_path): same contract."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server import __version__
from tests.api.test_metrics import samples, value

if TYPE_CHECKING:
    import httpx


async def test_fast_health_keeps_the_contract_and_is_counted(client: httpx.AsyncClient) -> None:
    before = value(
        samples((await client.get("/metrics")).text),
        "stretto_http_requests_total",
        method="GET",
        route="/api/health",
        status="200",
    )
    for _ in range(3):
        response = await client.get("/api/health", headers={"X-Request-ID": "probe-1"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert response.headers["x-request-id"] == "probe-1"
        assert response.content == f'{{"status":"ok","version":"{__version__}"}}'.encode()
    assigned = await client.get("/api/health")
    assert len(assigned.headers["x-request-id"]) == 36  # a fresh UUIDv7
    after = value(
        samples((await client.get("/metrics")).text),
        "stretto_http_requests_total",
        method="GET",
        route="/api/health",
        status="200",
    )
    assert after - before == 4


async def test_other_methods_still_go_through_the_routes(client: httpx.AsyncClient) -> None:
    head = await client.head("/api/health")
    assert head.status_code == 200
    assert head.headers["x-request-id"]
    post = await client.post("/api/health")
    assert post.status_code == 405
    assert post.json()["error"]["code"] == "method_not_allowed"
    assert (await client.get("/api/health/")).status_code == 200  # strict_slashes off: Quart
