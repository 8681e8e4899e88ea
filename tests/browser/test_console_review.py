"""The console's review, undo and file-version screens in headless Chromium, against a real
``stretto serve`` on both databases.

A run started with "Review changes before applying" waits ``awaiting_review`` and shows
each change with its diff (the right lines added and removed); Apply chosen applies only
the ticked paths; Discard ends the run and leaves the rest of the files as they were; Undo
reverts what the run applied. A second review run is discarded whole (nothing changes). A
third meets a file changed by hand: Apply all is refused (409) and the conflict shows what
changed; "Apply the other 2" applies the rest, and its Undo, after a file it wrote was
changed by hand, is refused with what changed. In the file viewer, Versions lists the kept
versions and Restore writes one back. Every outcome is judged by the files' contents read
through the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from tests.browser.console_page import (
    RUN_BADGE,
    click,
    color_scheme,
    create_project_in_console,
    n,
    page_errors,
    put_file,
    register_in_console,
    run_plan,
    serve,
    shown,
    text,
    wait_js,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.browser.conftest import LaunchBrowser
    from tests.browser.harness import Browser
    from tests.fixtures.postgres import BackendConfig
    from tests.ops.process import ServerProcess

A1 = "alpha\nbeta\ngamma\n"
A2 = "alpha\nBETA\ngamma\n"
PLAN = {
    "steps": [
        {"id": "a", "tool": "vfs.write", "args": {"path": "a.txt", "content": A2}},
        {"id": "b", "tool": "vfs.write", "args": {"path": "b.txt", "content": "two\n"}},
        {"id": "c", "tool": "vfs.write", "args": {"path": "c.txt", "content": "new\n"}},
    ]
}
FILES = ("a.txt", "b.txt", "c.txt")


async def contents(
    server: ServerProcess, headers: dict[str, str], pid: str, *paths: str
) -> dict[str, str | None]:
    """Each path's text through the API, or None when it does not exist."""
    out: dict[str, str | None] = {}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for path in paths:
            response = await client.get(f"/api/projects/{pid}/files/{path}", headers=headers)
            assert response.status_code in (200, 404), response.text
            out[path] = response.text if response.status_code == 200 else None
    return out


async def diff_lines(browser: Browser, path: str, kind: str) -> list[str]:
    """The text of the ``add`` or ``del`` rows of ``path``'s diff in the review."""
    lines = await browser.js(
        "return [...document.querySelectorAll(arguments[0])].map((e) => e.lastChild.textContent)",
        f'#changes .change[data-path="{path}"] .dl.{kind} .tx',
    )
    assert isinstance(lines, list)
    return [str(line) for line in lines]


async def start_review_run(browser: Browser, server: ServerProcess, pid: str) -> str:
    """From the project screen: tick "Review changes", run PLAN; waits for the review."""
    await browser.open(f"{server.url}/#/p/{pid}")
    await wait_js(browser, "document.getElementById('ask-review')")
    await click(browser, "#ask-review")
    run_id = await run_plan(browser, PLAN)
    await wait_js(
        browser, f"{RUN_BADGE} === 'awaiting_review' && {shown('#review')}"
        f" && {n('#changes .change')} === 3",
    )  # fmt: skip
    return run_id


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_console_reviews_applies_discards_undoes_and_restores(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery, browsers: LaunchBrowser
) -> None:
    server = await serve(nursery, backend, tmp_path)
    try:
        browser = await browsers(f"review-{backend.name}")
        await browser.open(server.url + "/")
        headers = await register_in_console(browser, f"review-{backend.name}@example.com")
        pid = await create_project_in_console(browser, "review")
        await put_file(server, headers, pid, "a.txt", A1)
        await put_file(server, headers, pid, "b.txt", "one\n")
        before: dict[str, Any] = {"a.txt": A1, "b.txt": "one\n", "c.txt": None}

        # 1. the review shows each change with the right lines; nothing is applied yet
        await start_review_run(browser, server, pid)
        kinds = await browser.js(
            "return [...document.querySelectorAll('#changes .change')]"
            ".map((c) => c.dataset.path + ':' + c.dataset.kind)"
        )
        assert sorted(kinds) == ["a.txt:modify", "b.txt:modify", "c.txt:create"]
        assert await diff_lines(browser, "a.txt", "add") == ["BETA"]
        assert await diff_lines(browser, "a.txt", "del") == ["beta"]
        assert await diff_lines(browser, "c.txt", "add") == ["new"]
        assert await diff_lines(browser, "c.txt", "del") == []
        assert await contents(server, headers, pid, *FILES) == before
        await browser.screenshot("review-1-diff")
        await color_scheme(browser, "dark")
        await browser.screenshot("review-1-diff-dark")
        await color_scheme(browser, "light")

        # 2. apply chosen (b.txt unticked from the keyboard): only a.txt and c.txt change
        box = await browser.js(
            "return document.querySelector('#changes [data-path=\"b.txt\"] input')"
        )
        await browser.js("arguments[0].focus()", box)
        await trio.to_thread.run_sync(box.send_keys, " ")
        assert not await browser.js("return arguments[0].checked", box)
        await click(browser, "#apply-chosen")
        await wait_js(browser, f"{n('#changes .change')} === 1")
        assert await browser.js("return " + text("#review-status")) == "1 change to review"
        assert await contents(server, headers, pid, *FILES) == {
            "a.txt": A2, "b.txt": "one\n", "c.txt": "new\n",
        }  # fmt: skip
        assert await browser.js(f"return {RUN_BADGE}") == "awaiting_review"

        # 3. discard the rest: the run ends cancelled (discarded); b.txt stays as it was
        await click(browser, "#discard")
        await wait_js(browser, f"{RUN_BADGE} === 'cancelled' && !{shown('#review')}")
        await wait_js(browser, text("#run-reason") + ".includes('discarded')")
        assert (await contents(server, headers, pid, "b.txt"))["b.txt"] == "one\n"

        # 4. undo: what the run applied is reverted, the files back as before the run
        await wait_js(browser, shown("#undo"))
        assert not await browser.js(f"return {shown('#retry')}")  # nothing failed to retry
        await browser.screenshot("review-2-undo")
        await click(browser, "#undo")
        await wait_js(browser, text("#undo-result") + ".startsWith('Undone')")
        assert await browser.js("return " + text("#undo-result")) == "Undone: a.txt, c.txt"
        assert await contents(server, headers, pid, *FILES) == before
        await browser.screenshot("review-3-undone")

        # 5. a review discarded whole changes nothing, and offers no undo
        await start_review_run(browser, server, pid)
        await click(browser, "#discard")
        await wait_js(browser, f"{RUN_BADGE} === 'cancelled'")
        assert await contents(server, headers, pid, *FILES) == before
        assert not await browser.js(f"return {shown('#undo')}")

        # 6. a file changed by hand meanwhile: Apply all is refused and shows what changed
        await start_review_run(browser, server, pid)
        await put_file(server, headers, pid, "a.txt", "by hand\n")
        await click(browser, "#apply-all")
        await wait_js(browser, shown("#review-conflict"))
        conflict = str(await browser.js("return " + text("#review-conflict")))
        assert "a.txt" in conflict
        assert "by hand" in conflict  # the version written since, and the diff's new line
        added = await browser.js(
            "return [...document.querySelectorAll('#review-conflict .dl.add .tx')]"
            ".map((e) => e.lastChild.textContent)"
        )
        assert added == ["by hand"]
        assert await browser.js(
            "return document.querySelector('#changes [data-path=\"a.txt\"]')"
            ".classList.contains('conflicted')"
        )
        assert await contents(server, headers, pid, *FILES) == {**before, "a.txt": "by hand\n"}
        await browser.screenshot("review-4-conflict")
        await click(browser, "#apply-others")
        await wait_js(browser, f"{n('#changes .change')} === 1")
        assert await contents(server, headers, pid, *FILES) == {
            "a.txt": "by hand\n", "b.txt": "two\n", "c.txt": "new\n",
        }  # fmt: skip
        await click(browser, "#discard")
        await wait_js(browser, f"{RUN_BADGE} === 'cancelled' && {shown('#undo')}")
        # its undo meets b.txt changed by hand since the run wrote it: refused, shown
        await put_file(server, headers, pid, "b.txt", "hand b\n")
        await click(browser, "#undo")
        await wait_js(browser, shown("#undo-conflict"))
        assert "b.txt" in await browser.js("return " + text("#undo-conflict"))
        changed = await browser.js(
            "return [...document.querySelectorAll('#undo-conflict .dl:is(.add, .del) .tx')]"
            ".map((e) => e.lastChild.textContent)"
        )
        assert changed == ["two", "hand b"]  # removed, then added
        assert await contents(server, headers, pid, *FILES) == {
            "a.txt": "by hand\n", "b.txt": "hand b\n", "c.txt": "new\n",
        }  # fmt: skip
        await browser.screenshot("review-4-undo-conflict")

        # 7. the file viewer's versions: view one, restore it as the newest
        await browser.open(f"{server.url}/#/p/{pid}")
        await click(browser, '#file-tree button[data-path="a.txt"]')
        await wait_js(browser, text("#file-content") + " === 'by hand\\n'")
        await click(browser, "#show-versions")
        await wait_js(browser, n("#version-rows tr") + " >= 4")
        await click(browser, '#version-rows button.view-version[data-version="2"]')
        await wait_js(browser, text("#version-content") + ".includes('BETA')")
        await browser.screenshot("review-5-versions")
        await click(browser, '#version-rows button.restore[data-version="2"]')
        await wait_js(browser, text("#file-content") + ".includes('BETA')")
        assert (await contents(server, headers, pid, "a.txt"))["a.txt"] == A2
        # versions 1 (put), 2 (the run's apply), 3 (undo), 4 (by hand), 5 (the restore)
        await wait_js(
            browser, "document.querySelector('#version-rows tr')?.dataset.version === '5'"
        )
        newest = str(await browser.js("return " + text("#version-rows tr")))
        assert "current" in newest, newest
        assert "by a user" in newest, newest
        assert await browser.js(f"return {n('#version-rows button.restore')}") == 4
        assert await page_errors(browser) == []  # no uncaught error, no CSP violation
    finally:
        server.ensure_dead()
