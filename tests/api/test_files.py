"""The virtual file system through a real socket, on both databases."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from tests.api.test_health_and_errors import assert_error
from tests.fixtures.server import AuthedUser, create_project, register_user

if TYPE_CHECKING:
    from tests.fixtures.server import StartServer


async def setup(client: httpx.AsyncClient) -> tuple[AuthedUser, str]:
    user = await register_user(client)
    return user, await create_project(client, user)


async def raw_put(base_url: str, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """PUT with the request target sent byte for byte, as a hostile client would.

    HTTP client libraries normalize dot segments and slashes; a raw socket does not.
    """
    url = httpx.URL(base_url)
    assert url.port is not None
    stream = await trio.open_tcp_stream(url.host, url.port)
    async with stream:
        lines = [f"PUT {target} HTTP/1.1", f"Host: {url.host}", "Content-Length: 1"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += ["Connection: close", "", "x"]
        await stream.send_all("\r\n".join(lines).encode("ascii"))
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += await stream.receive_some(65536)
    return int(head.split(b" ")[1]), body


async def test_write_read_replace_delete(client: httpx.AsyncClient) -> None:
    user, pid = await setup(client)
    url = f"/api/projects/{pid}/files/src/app.py"
    created = await client.put(url, content=b"print('hi')\n", headers=user.headers)
    assert created.status_code == 201
    meta = created.json()
    assert meta["path"] == "src/app.py"
    assert meta["size"] == 12
    assert meta["version"] == 1
    assert meta["sha256"] == hashlib.sha256(b"print('hi')\n").hexdigest()
    assert meta["content_type"].startswith("text/x-python")
    assert created.headers["etag"] == '"1"'

    read = await client.get(url, headers=user.headers)
    assert read.status_code == 200
    assert read.content == b"print('hi')\n"
    assert read.headers["etag"] == '"1"'
    assert read.headers["content-type"].startswith("text/x-python")

    replaced = await client.put(url, content=b"print('bye')\n", headers=user.headers)
    assert replaced.status_code == 200
    assert replaced.json()["version"] == 2

    deleted = await client.delete(url, headers=user.headers)
    assert deleted.status_code == 204
    assert_error(await client.get(url, headers=user.headers), 404, "not_found")
    assert_error(await client.delete(url, headers=user.headers), 404, "not_found")


async def test_conditional_requests(client: httpx.AsyncClient) -> None:
    user, pid = await setup(client)
    url = f"/api/projects/{pid}/files/notes.md"
    await client.put(url, content=b"v1", headers=user.headers)

    not_modified = await client.get(url, headers={**user.headers, "If-None-Match": '"1"'})
    assert not_modified.status_code == 304
    modified = await client.get(url, headers={**user.headers, "If-None-Match": '"7"'})
    assert modified.status_code == 200

    ok = await client.put(url, content=b"v2", headers={**user.headers, "If-Match": '"1"'})
    assert ok.status_code == 200
    stale = await client.put(url, content=b"v3", headers={**user.headers, "If-Match": '"1"'})
    assert_error(stale, 412, "version_mismatch")
    exists = await client.put(url, content=b"v3", headers={**user.headers, "If-None-Match": "*"})
    assert_error(exists, 412, "version_mismatch")
    assert (await client.get(url, headers=user.headers)).content == b"v2"

    fresh = await client.put(
        f"/api/projects/{pid}/files/new.md",
        content=b"n",
        headers={**user.headers, "If-None-Match": "*"},
    )
    assert fresh.status_code == 201
    stale_delete = await client.delete(url, headers={**user.headers, "If-Match": '"1"'})
    assert_error(stale_delete, 412, "version_mismatch")


async def test_list_with_prefix_and_cursor(client: httpx.AsyncClient) -> None:
    user, pid = await setup(client)
    for name in ("src/a.py", "src/b.py", "src/c.py", "docs/readme.md"):
        await client.put(f"/api/projects/{pid}/files/{name}", content=b"x", headers=user.headers)
    paths: list[str] = []
    cursor: str | None = None
    while True:
        params = {"prefix": "src/", "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get(f"/api/projects/{pid}/files", params=params, headers=user.headers)
        ).json()
        paths += [item["path"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paths == ["src/a.py", "src/b.py", "src/c.py"]
    item = page["items"][0]
    assert set(item) == {"path", "size", "version", "sha256", "content_type", "updated_at"}


async def test_move(client: httpx.AsyncClient) -> None:
    user, pid = await setup(client)
    base = f"/api/projects/{pid}/files"
    await client.put(f"{base}/a.txt", content=b"A", headers=user.headers)
    await client.put(f"{base}/b.txt", content=b"B", headers=user.headers)
    conflict = await client.patch(f"{base}/a.txt", json={"path": "b.txt"}, headers=user.headers)
    assert_error(conflict, 409, "conflict")
    moved = await client.patch(f"{base}/a.txt", json={"path": "dir/c.txt"}, headers=user.headers)
    assert moved.status_code == 200
    assert moved.json()["path"] == "dir/c.txt"
    assert (await client.get(f"{base}/dir/c.txt", headers=user.headers)).content == b"A"
    assert_error(await client.get(f"{base}/a.txt", headers=user.headers), 404, "not_found")
    bad = await client.patch(f"{base}/b.txt", json={"path": "../x"}, headers=user.headers)
    assert_error(bad, 400, "invalid_path")
    missing = await client.patch(f"{base}/zzz.txt", json={"path": "y"}, headers=user.headers)
    assert_error(missing, 404, "not_found")


BAD_PATHS = {
    "dot-dot": "a/../b",
    "dot": "a/./b",
    "leading-slash": "/etc/passwd",
    "empty-segment": "a//b",
    "trailing-slash": "a/",
    "backslash": "a%5Cb",
    "nul": "a%00b",
    "control": "a%01b",
    "encoded-dot-dot": "%2E%2E/secret",
    "too-long": "a" * 1025,
}


@pytest.mark.parametrize("path", BAD_PATHS.values(), ids=BAD_PATHS.keys())
async def test_every_path_rule(client: httpx.AsyncClient, path: str) -> None:
    user, pid = await setup(client)
    status, body = await raw_put(
        str(client.base_url), f"/api/projects/{pid}/files/{path}", user.headers
    )
    assert status == 400, body
    assert json.loads(body)["error"]["code"] == "invalid_path"
    listing = await client.get(f"/api/projects/{pid}/files", headers=user.headers)
    assert listing.json()["items"] == []


async def test_1024_byte_path_is_accepted(client: httpx.AsyncClient) -> None:
    user, pid = await setup(client)
    path = "d/" + "a" * 1022
    response = await client.put(
        f"/api/projects/{pid}/files/{path}", content=b"x", headers=user.headers
    )
    assert response.status_code == 201


async def test_quotas_and_atomic_failure(start_server: StartServer) -> None:
    server = await start_server(max_file_bytes=100, max_files_per_project=2, max_project_bytes=150)
    async with httpx.AsyncClient(base_url=server.url) as client:
        user, pid = await setup(client)
        base = f"/api/projects/{pid}/files"
        assert (
            await client.put(f"{base}/a", content=b"a" * 80, headers=user.headers)
        ).status_code == 201
        too_big = await client.put(f"{base}/b", content=b"b" * 101, headers=user.headers)
        assert_error(too_big, 413, "too_large")
        over_total = await client.put(f"{base}/b", content=b"b" * 80, headers=user.headers)
        assert_error(over_total, 413, "too_large")
        # A failed replace leaves the old content.
        over_replace = await client.put(f"{base}/a", content=b"z" * 101, headers=user.headers)
        assert_error(over_replace, 413, "too_large")
        assert (await client.get(f"{base}/a", headers=user.headers)).content == b"a" * 80
        assert (
            await client.put(f"{base}/b", content=b"b", headers=user.headers)
        ).status_code == 201
        third = await client.put(f"{base}/c", content=b"c", headers=user.headers)
        assert_error(third, 413, "too_large")


async def test_other_users_files_are_not_found(client: httpx.AsyncClient) -> None:
    owner, pid = await setup(client)
    intruder = await register_user(client)
    url = f"/api/projects/{pid}/files/secret.txt"
    await client.put(url, content=b"s3cret", headers=owner.headers)
    for method in ("GET", "PUT", "DELETE"):
        response = await client.request(method, url, content=b"x", headers=intruder.headers)
        assert_error(response, 404, "not_found")
    moved = await client.patch(url, json={"path": "mine.txt"}, headers=intruder.headers)
    assert_error(moved, 404, "not_found")
    listing = await client.get(f"/api/projects/{pid}/files", headers=intruder.headers)
    assert_error(listing, 404, "not_found")
    assert (await client.get(url, headers=owner.headers)).content == b"s3cret"
