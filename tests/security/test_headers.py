"""Issue 12 item 11 (part): served files cannot be sniffed or rendered as active content,
and the JWT leeway is a setting. Through raw sockets, on both databases (files are stored).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.auth import keys
from tests.fixtures.server import TEST_JWT_SECRET, create_project, register_user
from tests.security.content_raw import raw_request

if TYPE_CHECKING:
    from tests.fixtures.server import RunningServer, StartServer

ACTIVE = {
    "page.html": b"<script>alert(1)</script>",
    "logo.svg": b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
    "feed.xml": b"<?xml version='1.0'?><x/>",
    "blob.bin": b"\x00\x01<html><script>alert(1)</script>",
    "doc.xhtml": b"<html xmlns='http://www.w3.org/1999/xhtml'><script>1</script></html>",
}
INERT = {"notes.txt": b"<html>not rendered</html>", "data.json": b'{"a": 1}'}


async def test_served_files_are_nosniff_and_active_types_are_attachments(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    user = await register_user(client)
    project_id = await create_project(client, user)
    for name, content in {**ACTIVE, **INERT}.items():
        put = await client.put(
            f"/api/projects/{project_id}/files/dir/{name}", content=content, headers=user.headers
        )
        assert put.status_code == 201, put.text
    for name, content in {**ACTIVE, **INERT}.items():
        status, headers, body = await raw_request(
            server.url, "GET", f"/api/projects/{project_id}/files/dir/{name}", headers=user.headers
        )
        assert (status, body) == (200, content)
        assert headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in headers["content-security-policy"]
        assert "default-src 'none'" in headers["content-security-policy"]
        if name in ACTIVE:
            assert headers["content-disposition"] == f"attachment; filename*=UTF-8''{name}", name
        else:
            assert "content-disposition" not in headers, name


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_jwt_leeway_is_a_setting(start_server: StartServer) -> None:
    # Two servers on one database: the same user, the same secret, different leeway.
    strict = await start_server(jwt_leeway_s=0.0)
    lenient = await start_server(jwt_leeway_s=60.0)
    async with httpx.AsyncClient(base_url=strict.url) as client:
        user = await register_user(client)
    expired_30s_ago = int(time.time()) - 30
    late = keys.mint(TEST_JWT_SECRET.encode(), "HS256", sub=user.user_id, exp=expired_30s_ago)
    headers = {"Authorization": f"Bearer {late}"}
    status, _, _ = await raw_request(strict.url, "GET", "/api/projects", headers=headers)
    assert status == 401
    status, _, _ = await raw_request(lenient.url, "GET", "/api/projects", headers=headers)
    assert status == 200
