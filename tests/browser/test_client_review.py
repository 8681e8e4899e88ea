"""stretto.js's review and undo methods (runChanges, applyChanges, discardChanges,
revertRun, fileVersions, readFileVersion, restoreFile), from a page on another origin in
Debian's headless Chromium, against real ``stretto serve`` processes on both databases.

The page (pages/review.html) drives one project per path through the API; the test judges
each by the files' contents afterwards, read through the API, not by the calls made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

import httpx
import pytest

from tests.browser.harness import start_stretto
from tests.ops.process import free_port

if TYPE_CHECKING:
    from pathlib import Path

    import trio

    from tests.browser.conftest import LaunchBrowser
    from tests.fixtures.postgres import BackendConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery"
HANG_GUARD_S = 90  # fails a hung test; never a timing assertion


async def contents(
    client: httpx.AsyncClient, headers: dict[str, str], pid: str, *paths: str
) -> dict[str, str | None]:
    """Each path's text, or None when it does not exist."""
    out: dict[str, str | None] = {}
    for path in paths:
        response = await client.get(f"/api/projects/{pid}/files/{path}", headers=headers)
        assert response.status_code in (200, 404), response.text
        out[path] = response.text if response.status_code == 200 else None
    return out


async def test_client_reviews_applies_discards_reverts_and_restores(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery, site: str,
    browsers: LaunchBrowser,
) -> None:  # fmt: skip
    server = await start_stretto(
        nursery, backend, tmp_path / "stretto.log", free_port(), cors_origins=site
    )
    try:
        browser = await browsers(f"client-review-{backend.name}")
        email = f"review-{backend.name}@example.com"
        query = urlencode({"api": server.url, "email": email})
        await browser.open(f"{site}/review.html?{query}")
        report = await browser.wait_for("report.done", HANG_GUARD_S)
        await browser.screenshot()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            login = await client.post(
                "/api/auth/login", json={"email": email, "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            projects = report["projects"]
            files = ("a.txt", "b.txt", "c.txt")
            chosen = await contents(client, headers, projects["chosen"], *files)
            discarded = await contents(client, headers, projects["discarded"], *files)
            reverted = await contents(client, headers, projects["reverted"], *files)
            conflict = await contents(client, headers, projects["conflict"], *files)
            notes = await contents(client, headers, projects["discarded"], "notes.txt")
            versions = await client.get(
                f"/api/projects/{projects['discarded']}/files/notes.txt?versions", headers=headers
            )
    finally:
        server.ensure_dead()

    steps = report["steps"]
    # the changeset as reviewed, with the diff's changed lines
    assert steps["status_before"] == "awaiting_review"
    assert steps["changes"] == ["a.txt:modify", "b.txt:modify", "c.txt:create"]
    assert steps["diff_a"] == ["-a1", "+a2"]
    # apply chosen: only those paths changed; the rest was left, then discarded
    assert steps["applied_chosen"] == {
        "applied": ["a.txt", "c.txt"], "remaining": 1, "status": "awaiting_review",
    }  # fmt: skip
    assert steps["left_to_review"] == ["b.txt"]
    assert steps["discarded_rest"] == "cancelled"
    assert chosen == {"a.txt": "a2\n", "b.txt": "b1\n", "c.txt": "c\n"}
    # discard: nothing of the run reached the project; a second discard is refused
    assert steps["discarded"] == "cancelled"
    assert steps["discard_again"] == {"status": 409, "code": "conflict", "paths": []}
    assert discarded == {"a.txt": "a1\n", "b.txt": "b1\n", "c.txt": None}
    # apply all, then revert: the files are back as they were before the run
    assert steps["applied_all"] == {
        "applied": ["a.txt", "b.txt", "c.txt"], "remaining": 0, "status": "succeeded",
    }  # fmt: skip
    assert steps["reverted"] == ["a.txt", "b.txt", "c.txt"]
    assert reverted == {"a.txt": "a1\n", "b.txt": "b1\n", "c.txt": None}
    # a conflict names the file changed by hand and applies nothing
    assert steps["conflict"] == {"status": 409, "code": "conflict", "paths": ["a.txt"]}
    assert conflict == {"a.txt": "by hand\n", "b.txt": "b1\n", "c.txt": None}
    # versions newest first; version 1 read back and restored as version 4
    assert steps["versions"] == [3, 2, 1]
    assert steps["version_1"] == "v1\n"
    assert steps["restored"] == {"version": 4, "etag": '"4"'}
    assert notes == {"notes.txt": "v1\n"}
    assert [v["version"] for v in versions.json()["items"]] == [4, 3, 2, 1]
