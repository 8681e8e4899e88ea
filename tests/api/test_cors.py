"""CORS over real sockets: preflights, headers on every response to an allowed origin
(errors, the health fast path, SSE streams, the client script), nothing for other origins,
and nothing at all when no origin is configured. The pure rules are tested at the bottom."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from server.api.cors import (
    ALLOW_HEADERS,
    EXPOSE_HEADERS,
    CorsPolicy,
    is_preflight,
    with_vary_origin,
)
from server.config import SettingsError, load_settings
from tests.events.sse_client import open_stream, read_head
from tests.fixtures.server import create_project, register_user

if TYPE_CHECKING:
    from tests.fixtures.server import RunningServer, StartServer

APP = "http://app.example.test:3000"
OTHER = "http://evil.example.test"
NEEDED_HEADERS = (
    "authorization",
    "content-type",
    "if-match",
    "if-none-match",
    "idempotency-key",
    "last-event-id",
)
EXPOSED = ("etag", "location", "retry-after", "x-request-id")


def assert_cors(response: httpx.Response, origin: str = APP) -> None:
    assert response.headers.get("access-control-allow-origin") == origin, response.headers
    assert "origin" in response.headers.get("vary", "").lower()
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert set(EXPOSED) <= exposed


def assert_no_cors(response: httpx.Response) -> None:
    assert not [k for k in response.headers if k.lower().startswith("access-control-")]


@pytest.fixture
async def cors_server(start_server: StartServer) -> RunningServer:
    return await start_server(cors_origins=f"{APP}, http://second.example.test")


async def test_preflight_from_an_allowed_origin(cors_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=cors_server.url) as client:
        for path, method in (
            ("/api/auth/register", "POST"),
            ("/api/projects/x/files/a/b.txt", "PUT"),
            ("/api/sse/projects/x", "GET"),
            ("/api/no-such-route", "DELETE"),
        ):
            response = await client.options(
                path,
                headers={
                    "Origin": APP,
                    "Access-Control-Request-Method": method,
                    "Access-Control-Request-Headers": "authorization,content-type,if-match",
                },
            )
            assert response.status_code == 204, (path, response.text)
            assert response.content == b""
            assert "html" not in response.headers.get("content-type", "")
            assert_cors(response)
            assert method in response.headers["access-control-allow-methods"]
            allowed = {
                h.strip().lower()
                for h in response.headers["access-control-allow-headers"].split(",")
            }
            assert set(NEEDED_HEADERS) <= allowed
            assert int(response.headers["access-control-max-age"]) > 0
            assert response.headers["x-request-id"]


async def test_preflight_from_another_origin_gets_no_cors_and_no_html(
    cors_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=cors_server.url) as client:
        response = await client.options(
            "/api/auth/register",
            headers={"Origin": OTHER, "Access-Control-Request-Method": "POST"},
        )
    assert response.status_code == 204
    assert "html" not in response.headers.get("content-type", "")
    assert_no_cors(response)


async def test_every_response_to_an_allowed_origin_carries_cors(
    cors_server: RunningServer,
) -> None:
    headers = {"Origin": APP}
    async with httpx.AsyncClient(base_url=cors_server.url, headers=headers) as client:
        user = await register_user(client)
        pid = await create_project(client, user)
        ok = await client.get("/api/projects", headers=user.headers)
        assert ok.status_code == 200
        assert_cors(ok)
        put = await client.put(
            f"/api/projects/{pid}/files/a.txt", content=b"x", headers=user.headers
        )
        assert put.status_code == 201
        assert_cors(put)
        errors = {
            401: await client.get("/api/projects"),
            404: await client.get("/api/projects/nope", headers=user.headers),
            405: await client.delete("/api/health"),
        }
        for status, response in errors.items():
            assert response.status_code == status, response.text
            assert_cors(response)
        health = await client.get("/api/health")  # answered below Quart
        assert health.status_code == 200
        assert_cors(health)
        script = await client.get("/client/stretto.js")
        assert script.status_code == 200
        assert_cors(script)
        async with open_stream(client, pid, headers={**user.headers, **headers}) as stream:
            assert stream.status == 200
            assert stream.headers.get("access-control-allow-origin") == APP
            assert "origin" in stream.headers.get("vary", "").lower()
        second = await client.get("/api/health", headers={"Origin": "http://second.example.test"})
        assert second.headers["access-control-allow-origin"] == "http://second.example.test"
    # A 413 is answered before the body is read, and the connection is then closed: a raw
    # socket (an HTTP client would report the refused upload as a broken write).
    url = httpx.URL(cors_server.url)
    raw = await trio.open_tcp_stream(url.host, url.port or 80)
    async with raw:
        declared = cors_server.settings.max_body_bytes + 10
        await raw.send_all(
            f"POST /api/projects HTTP/1.1\r\nHost: {url.host}\r\nOrigin: {APP}\r\n"
            f"Authorization: Bearer {user.access_token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n{{".encode()
        )
        status, head, _ = await read_head(raw)
    assert status == 413
    assert head.get("access-control-allow-origin") == APP
    assert "origin" in head.get("vary", "").lower()


async def test_rate_limited_answer_carries_cors(start_server: StartServer) -> None:
    server = await start_server(cors_origins=APP, login_max_failures=1)
    async with httpx.AsyncClient(base_url=server.url, headers={"Origin": APP}) as client:
        body = {"email": "nobody@example.com", "password": "wrong password"}
        assert (await client.post("/api/auth/login", json=body)).status_code == 401
        limited = await client.post("/api/auth/login", json=body)
    assert limited.status_code == 429
    assert_cors(limited)
    assert "retry-after" in limited.headers


async def test_other_origins_get_no_cors_headers(cors_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=cors_server.url, headers={"Origin": OTHER}) as client:
        for response in (
            await client.get("/api/health"),
            await client.get("/api/projects"),
            await client.get("/client/stretto.js"),
        ):
            assert_no_cors(response)


async def test_no_cors_without_configured_origins(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers={"Origin": APP}) as client:
        assert_no_cors(await client.get("/api/health"))
        assert_no_cors(await client.get("/api/projects"))


# -- the pure rules ---------------------------------------------------------------------


def test_policy_rules() -> None:
    policy = CorsPolicy(frozenset({APP}))
    assert policy.enabled
    assert not CorsPolicy(frozenset()).enabled
    assert policy.response_headers(OTHER) == []
    assert policy.response_headers(None) == []
    assert policy.response_headers(APP.upper()) == []  # exact match only
    assert dict(policy.response_headers(APP))[b"access-control-allow-origin"] == APP.encode()
    assert dict(policy.preflight_headers(OTHER)) == {b"vary": b"Origin"}
    preflight = dict(policy.preflight_headers(APP))
    assert preflight[b"access-control-allow-headers"] == ALLOW_HEADERS.encode()
    assert preflight[b"access-control-expose-headers"] == EXPOSE_HEADERS.encode()


def test_preflight_detection() -> None:
    both = [(b"origin", APP.encode()), (b"access-control-request-method", b"POST")]
    assert is_preflight("OPTIONS", "/api/projects", both)
    assert not is_preflight("OPTIONS", "/metrics", both)
    assert not is_preflight("GET", "/api/projects", both)
    assert not is_preflight("OPTIONS", "/api/projects", both[:1])


def test_vary_is_merged() -> None:
    assert with_vary_origin([]) == [(b"vary", b"Origin")]
    assert with_vary_origin([(b"Vary", b"Accept")]) == [(b"Vary", b"Accept, Origin")]
    assert with_vary_origin([(b"vary", b"origin")]) == [(b"vary", b"origin")]


@pytest.mark.parametrize(
    "value",
    ["app.example.com", "https://app.example.com/", "https://app.example.com/path", "*", "ftp://x"],
)
def test_setting_rejects_what_is_not_an_origin(value: str) -> None:
    with pytest.raises(SettingsError, match="cors_origins"):
        load_settings({}, {"STRETTO_CORS_ORIGINS": value})


def test_setting_parses_a_list() -> None:
    settings = load_settings({}, {"STRETTO_CORS_ORIGINS": f" {APP} ,http://[::1]:8080,"})
    assert settings.cors_origin_set == frozenset({APP, "http://[::1]:8080"})
