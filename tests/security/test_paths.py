"""Issue 12 item 9: path rules, through raw sockets (clients normalise targets), on both
databases.

Refused with 400 ``invalid_path``: C1 controls (U+0085), bidirectional controls (U+202E,
isolates), whitespace-only paths and segments, %-encodings that are not UTF-8 (which used
to become U+FFFD, so ``%ff%fe`` and ``%fe%ff`` named one file), and non-NFC paths (refused,
not normalised: a file has exactly one name).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.fixtures.server import create_project, register_user
from tests.security.content_raw import error_code, raw_request

if TYPE_CHECKING:
    import httpx

    from tests.fixtures.server import RunningServer

REFUSED = {
    "c1-nel": "a%C2%85b.txt",
    "c1-csi": "%C2%9B.txt",
    "rtl-override": "invoice%E2%80%AEtxt.exe",
    "rtl-isolate": "a%E2%81%A7b.txt",
    "lrm-mark": "a%E2%80%8Eb.txt",
    "line-separator": "a%E2%80%A8b.txt",
    "whitespace-only": "%20",
    "whitespace-only-nbsp": "%C2%A0%20",
    "whitespace-segment": "src/%20%20/a.txt",
    "invalid-utf8-a": "%ff%fe.txt",
    "invalid-utf8-b": "%fe%ff.txt",
    "overlong-utf8": "%c0%af.txt",
    "encoded-surrogate": "%ed%a0%80.txt",
    "nul": "a%00.txt",
    "nfd": "cafe%CC%81.txt",
}


@pytest.fixture
async def project(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    user = await register_user(client)
    return await create_project(client, user), user.headers


@pytest.mark.parametrize("encoded", list(REFUSED.values()), ids=list(REFUSED))
async def test_refused_paths_on_every_file_route(
    server: RunningServer, project: tuple[str, dict[str, str]], encoded: str
) -> None:
    project_id, headers = project
    target = f"/api/projects/{project_id}/files/{encoded}"
    for method in ("PUT", "GET", "DELETE"):
        status, _, body = await raw_request(server.url, method, target, headers=headers, body=b"x")
        assert status == 400, (method, body)
        assert error_code(body) == "invalid_path"
    status, _, body = await raw_request(
        server.url,
        "GET",
        f"/api/projects/{project_id}/files?prefix={encoded}",
        headers=headers,
    )
    assert status == 400
    assert error_code(body) in ("invalid_path", "validation_failed")


async def test_refused_paths_in_move_bodies_and_plans(
    server: RunningServer, client: httpx.AsyncClient, project: tuple[str, dict[str, str]]
) -> None:
    project_id, headers = project
    put = await client.put(f"/api/projects/{project_id}/files/a.txt", content=b"x", headers=headers)
    assert put.status_code == 201
    for bad in ("b\u0085.txt", "b\u202e.txt", " ", "x/ /y", "cafe\u0301.txt"):
        moved = await client.patch(
            f"/api/projects/{project_id}/files/a.txt", json={"path": bad}, headers=headers
        )
        assert moved.status_code == 400, bad
        assert moved.json()["error"]["code"] == "invalid_path"
    listing = await client.get(f"/api/projects/{project_id}/files", headers=headers)
    assert [f["path"] for f in listing.json()["items"]] == ["a.txt"]


async def test_nfc_and_other_unicode_paths_are_accepted(
    server: RunningServer, client: httpx.AsyncClient, project: tuple[str, dict[str, str]]
) -> None:
    project_id, headers = project
    for encoded, decoded in (
        ("caf%C3%A9.txt", "caf\u00e9.txt"),
        ("%E6%97%A5%E6%9C%AC/%F0%9F%98%80.md", "\u65e5\u672c/\U0001f600.md"),
        ("a%20b/c%20.txt", "a b/c .txt"),
    ):
        target = f"/api/projects/{project_id}/files/{encoded}"
        status, _, body = await raw_request(server.url, "PUT", target, headers=headers, body=b"x")
        assert status == 201, body
        assert json.loads(body)["path"] == decoded
        status, _, body = await raw_request(server.url, "GET", target, headers=headers)
        assert (status, body) == (200, b"x")
    listing = await client.get(f"/api/projects/{project_id}/files", headers=headers)
    assert sorted(f["path"] for f in listing.json()["items"]) == sorted(
        ["caf\u00e9.txt", "\u65e5\u672c/\U0001f600.md", "a b/c .txt"]
    )
