"""Project import and export through the real server, on both databases: a byte-for-byte
round trip, all-or-nothing refusals, limits, and other users' projects."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from typing import TYPE_CHECKING

import httpx

from tests.events.sse_client import open_stream
from tests.fixtures.server import create_project, register_user

if TYPE_CHECKING:
    from tests.fixtures.server import AuthedUser, StartServer

FILES = {
    "README.md": b"# demo\n",
    "src/app.js": b"const x = 1;\n",
    "src/\ud55c\uae00.txt": "\uc548\ub155".encode(),
    "assets/logo.bin": bytes(range(256)) * 40,
    "empty": b"",
}
GZIP = {"Content-Type": "application/gzip"}


def tar_gz(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


async def project_files(client: httpx.AsyncClient, user: AuthedUser, pid: str) -> dict[str, bytes]:
    listing = await client.get(f"/api/projects/{pid}/files", headers=user.headers)
    assert listing.status_code == 200, listing.text
    out = {}
    for item in listing.json()["items"]:
        got = await client.get(f"/api/projects/{pid}/files/{item['path']}", headers=user.headers)
        assert got.status_code == 200
        out[item["path"]] = got.content
    return out


async def test_export_then_import_round_trips_byte_for_byte(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    source = await create_project(client, user, "source project")
    for path, content in FILES.items():
        put = await client.put(f"/api/projects/{source}/files/{path}", content=content,
                               headers=user.headers)  # fmt: skip
        assert put.status_code == 201, put.text
    exported = await client.get(f"/api/projects/{source}/export", headers=user.headers)
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/gzip"
    assert exported.headers["content-disposition"] == 'attachment; filename="source-project.tar.gz"'
    target = await create_project(client, user, "copy")
    imported = await client.post(
        f"/api/projects/{target}/import", content=exported.content, headers={**user.headers, **GZIP}
    )
    assert imported.status_code == 200, imported.text
    assert imported.json() == {"imported": 5, "bytes": sum(map(len, FILES.values()))}
    assert await project_files(client, user, target) == FILES
    # One file.changed event per file, in the project's log.
    async with open_stream(client, target, {**user.headers, "Last-Event-ID": "0"}) as stream:
        events = [await stream.next() for _ in range(5)]
    assert [m.event for m in events] == ["file.changed"] * 5
    assert [int(m.id or 0) for m in events] == [1, 2, 3, 4, 5]


async def test_zip_import_and_refusals_write_nothing(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    pid = await create_project(client, user)
    evil = tar_gz({"ok.txt": b"fine", "../escape": b"x", "/etc/passwd": b"x"})
    refused = await client.post(
        f"/api/projects/{pid}/import", content=evil, headers={**user.headers, **GZIP}
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "validation_failed"
    assert set(error["details"]) == {"../escape", "/etc/passwd"}
    assert await project_files(client, user, pid) == {}
    garbage = await client.post(
        f"/api/projects/{pid}/import", content=b"not an archive", headers={**user.headers, **GZIP}
    )
    assert garbage.status_code == 400
    wrong_type = await client.post(
        f"/api/projects/{pid}/import", content=b"{}",
        headers={**user.headers, "Content-Type": "application/json"},
    )  # fmt: skip
    assert wrong_type.status_code == 415
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("a/b.txt", b"zip content")
    ok = await client.post(
        f"/api/projects/{pid}/import", content=zipped.getvalue(),
        headers={**user.headers, "Content-Type": "application/zip"},
    )  # fmt: skip
    assert ok.status_code == 200, ok.text
    assert await project_files(client, user, pid) == {"a/b.txt": b"zip content"}


async def test_limits(start_server: StartServer) -> None:
    server = await start_server(max_import_bytes=4000, max_files_per_project=3)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user = await register_user(client)
        pid = await create_project(client, user)
        big = tar_gz({"noise": hashlib.sha256(b"seed").digest() * 8 + os.urandom(8000)})
        assert len(big) > 4000
        too_big = await client.post(
            f"/api/projects/{pid}/import", content=big, headers={**user.headers, **GZIP}
        )
        assert too_big.status_code == 413
        many = tar_gz({f"f{i}": b"x" for i in range(5)})
        over_quota = await client.post(
            f"/api/projects/{pid}/import", content=many, headers={**user.headers, **GZIP}
        )
        assert over_quota.status_code == 413, over_quota.text
        assert await project_files(client, user, pid) == {}


async def test_other_users_projects_are_404(client: httpx.AsyncClient) -> None:
    owner = await register_user(client)
    other = await register_user(client)
    pid = await create_project(client, owner)
    archive = tar_gz({"a": b"1"})
    post = await client.post(
        f"/api/projects/{pid}/import", content=archive, headers={**other.headers, **GZIP}
    )
    assert post.status_code == 404
    get = await client.get(f"/api/projects/{pid}/export", headers=other.headers)
    assert get.status_code == 404
    assert await project_files(client, owner, pid) == {}
