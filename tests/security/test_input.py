"""Issue 12 item 5: bad strings get 400, never 500 or 503, on both databases.

Deep JSON nesting -> 400 ``invalid_json`` (also on the unauthenticated login); a lone
surrogate or a NUL in any string -> 400 ``validation_failed``; a NUL or invalid UTF-8 in
the %-decoded path -> 400 ``invalid_path``, in the query -> 400 ``validation_failed``.
Bodies and targets go out byte for byte on raw sockets.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.fixtures.server import create_project, register_user
from tests.security.content_raw import error_code, raw_request

if TYPE_CHECKING:
    import httpx

    from tests.fixtures.server import AuthedUser, RunningServer

JSON = {"Content-Type": "application/json"}


def _nested(depth: int) -> bytes:
    return b'{"email":' + b"[" * depth + b"]" * depth + b',"password":"x"}'


@pytest.mark.parametrize("depth", [100, 2_500, 100_000])
async def test_deep_nesting_is_invalid_json_on_unauthenticated_login(
    server: RunningServer, depth: int
) -> None:
    status, _, body = await raw_request(
        server.url, "POST", "/api/auth/login", headers=JSON, body=_nested(depth)
    )
    assert status == 400
    assert error_code(body) == "invalid_json"


async def test_modest_nesting_still_validates_normally(server: RunningServer) -> None:
    status, _, body = await raw_request(
        server.url, "POST", "/api/auth/login", headers=JSON, body=_nested(10)
    )
    assert status == 400
    assert error_code(body) == "validation_failed"


async def _authed(client: httpx.AsyncClient) -> tuple[AuthedUser, str, dict[str, str]]:
    user = await register_user(client)
    project_id = await create_project(client, user)
    return user, project_id, {**JSON, **user.headers}


@pytest.mark.parametrize(
    "escaped",
    [b"\\ud800", b"a\\udfffb", b"\\u0000", b"ab\\u0000"],
    ids=["lone-high", "lone-low", "nul", "nul-inside"],
)
async def test_bad_strings_in_bodies_are_validation_failed(
    server: RunningServer, client: httpx.AsyncClient, escaped: bytes
) -> None:
    _, project_id, headers = await _authed(client)
    cases = [
        ("POST", "/api/auth/register", b'{"email":"' + escaped + b'@x.io","password":"p4ssw0rd!"}'),
        ("POST", "/api/auth/login", b'{"email":"a@x.io","password":"' + escaped + b'"}'),
        ("POST", "/api/projects", b'{"name":"' + escaped + b'"}'),
        ("PATCH", f"/api/projects/{project_id}", b'{"description":"' + escaped + b'"}'),
        ("POST", "/api/projects", b'{"name":"n","' + escaped + b'":1}'),
        (
            "POST",
            "/api/workflow/runs",
            b'{"project_id":"'
            + project_id.encode()
            + b'","plan":{"steps":[{"id":"w","tool":"vfs.write","args":{"path":"a.txt",'
            b'"content":"' + escaped + b'"}}]}}',
        ),
    ]
    for method, target, body in cases:
        status, _, answer = await raw_request(
            server.url, method, target, headers=headers, body=body
        )
        assert status == 400, (target, answer)
        assert error_code(answer) == "validation_failed", (target, answer)
    listing = await client.get("/api/projects", headers=headers)
    assert [p["name"] for p in listing.json()["items"]] == ["demo"]


async def test_nul_and_bad_utf8_in_the_target_are_400(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    _, project_id, headers = await _authed(client)
    cases = [
        ("GET", f"/api/projects/{project_id}%00", "invalid_path"),
        ("GET", "/api/projects/%00", "invalid_path"),
        ("GET", "/api/workflow/runs/x%00y", "invalid_path"),
        ("GET", f"/api/projects/{project_id}/files/a%00b.txt", "invalid_path"),
        ("GET", f"/api/projects/{project_id}/files/%ff%fe.txt", "invalid_path"),
        ("GET", f"/api/workflow/runs?project_id={project_id}&status=%00", "validation_failed"),
        ("GET", f"/api/workflow/runs?project_id={project_id}%00", "validation_failed"),
        ("GET", f"/api/projects/{project_id}/files?prefix=%ff", "validation_failed"),
        ("GET", "/api/projects?cursor=%c0%80", "validation_failed"),
    ]
    for method, target, code in cases:
        status, _, body = await raw_request(server.url, method, target, headers=headers)
        assert status == 400, (target, body)
        assert error_code(body) == code, (target, body)


async def test_valid_unicode_still_works(client: httpx.AsyncClient) -> None:
    user, _, _ = await _authed(client)
    response = await client.post(
        "/api/projects",
        content=json.dumps({"name": "caf\u00e9 \U0001f600"}).encode(),
        headers={**JSON, **user.headers},
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "caf\u00e9 \U0001f600"
