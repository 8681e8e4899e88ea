"""Health, readiness, request ids, and the error body for framework-level errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from server import __version__
from tests.fixtures.server import register_user

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.fixtures.server import RunningServer, StartServer


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return dict(body["error"])


async def test_health_answers_with_version(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}


async def test_ready_reports_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok"}


async def test_ready_turns_503_when_draining(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    server.services.lifecycle.draining = True
    try:
        assert_error(await client.get("/api/ready"), 503, "not_ready")
    finally:
        server.services.lifecycle.draining = False


async def test_request_id_is_echoed_or_assigned(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/api/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assigned = await client.get("/api/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert assigned.headers["x-request-id"] not in ("", "bad id\twith spaces")
    missing = await client.get("/api/nope")
    assert missing.headers["x-request-id"]


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/does-not-exist"), 404, "not_found")


async def test_wrong_method_is_a_json_405(client: httpx.AsyncClient) -> None:
    assert_error(await client.delete("/api/health"), 405, "method_not_allowed")


async def test_malformed_json_is_invalid_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/register",
        content=b'{"email": "a@b.c", ',
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 400, "invalid_json")


async def test_non_json_body_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/register", content=b"email=a", headers={"Content-Type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")


async def test_unknown_and_wrong_typed_fields_are_named(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    response = await client.post(
        "/api/projects", json={"name": 42, "colour": "red"}, headers=user.headers
    )
    error = assert_error(response, 400, "validation_failed")
    assert error["details"] == {"name": "must be of type string", "colour": "unknown field"}


async def test_oversized_json_body_is_413(start_server: StartServer) -> None:
    small = await start_server(max_body_bytes=1024)
    async with httpx.AsyncClient(base_url=small.url) as http:
        user = await register_user(http)
        big = {"name": "x" * 100, "description": "y" * 4000}
        response = await http.post("/api/projects", json=big, headers=user.headers)
        assert_error(response, 413, "too_large")

        async def chunked_body() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
            for _ in range(10):
                yield b" " * 512

        response = await http.post(
            "/api/projects",
            content=chunked_body(),
            headers={**user.headers, "Content-Type": "application/json"},
        )
        assert_error(response, 413, "too_large")
