"""The console's human-in-the-loop controls in headless Chromium, against a real ``stretto
serve`` on both databases.

A plan run with "Ask for approval" waits ``awaiting_approval`` with its steps shown; an
edited plan the server refuses shows the ``invalid_plan`` details; the edited plan (a step
removed) is approved and runs to ``succeeded`` as edited. A second run is rejected and shows
``cancelled (rejected)``. A run that fails (``vfs.read`` of a missing file) is retried after
the file is created: the changed input of a reused step gets the 409 with its path, "Retry
anyway" opens the new run, which succeeds with its reused steps marked.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.browser.console_page import (
    DELAYED_READS_LANDED,
    RUN_BADGE,
    RUN_STATE_HITL,
    click,
    create_project_in_console,
    dag_states,
    delay_run_reads,
    file_status,
    fill,
    get_run,
    page_errors,
    put_file,
    register_in_console,
    reused_nodes,
    run_async,
    run_plan,
    serve,
    shown,
    text,
    wait_js,
)

if TYPE_CHECKING:
    from pathlib import Path

    import trio

    from tests.browser.conftest import LaunchBrowser
    from tests.fixtures.postgres import BackendConfig

TWO_WRITES = {
    "steps": [
        {"id": "keep", "tool": "vfs.write", "args": {"path": "kept.txt", "content": "kept"}},
        {"id": "drop", "tool": "vfs.write", "args": {"path": "dropped.txt", "content": "no"}},
    ]
}
EDITED = {"steps": [TWO_WRITES["steps"][0]]}
BAD_EDIT = {"steps": [{"id": "x", "tool": "no.such_tool", "args": {}}]}
FAILING = {
    "steps": [
        {"id": "src", "tool": "vfs.read", "args": {"path": "src/a.txt"}},
        {
            "id": "copy",
            "tool": "vfs.write",
            "args": {"path": "copy.txt", "content": "{{steps.src.output.content}}"},
            "needs": ["src"],
        },
        {"id": "late", "tool": "vfs.read", "args": {"path": "late.txt"}, "needs": ["copy"]},
    ]
}


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_console_approves_an_edited_plan_rejects_and_retries_a_failed_run(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery, browsers: LaunchBrowser
) -> None:
    server = await serve(nursery, backend, tmp_path)
    try:
        browser = await browsers(f"hitl-{backend.name}")
        await delay_run_reads(browser)
        await browser.open(server.url + "/")
        headers = await register_in_console(browser, f"hitl-{backend.name}@example.com")
        pid = await create_project_in_console(browser, "hitl")
        await put_file(server, headers, pid, "src/a.txt", "alpha")

        # 1. ask for approval: the run waits, its planned steps shown pending
        await click(browser, "#ask-approval")
        assert await browser.js("return document.getElementById('ask-approval').checked")
        approved_id = await run_plan(browser, TWO_WRITES)
        await wait_js(browser, f"{RUN_BADGE} === 'awaiting_approval' && {shown('#approval')}")
        assert await dag_states(browser) == {"keep": "pending", "drop": "pending"}
        waiting = await get_run(server, headers, approved_id)
        assert waiting["status"] == "awaiting_approval"
        assert waiting["approval"]["mode"] == "plan"
        await browser.screenshot("hitl-1-awaiting")

        # an edit the server refuses shows invalid_plan with its details; nothing starts
        await click(browser, "#edit-plan")
        shown_plan = json.loads(
            await browser.js("return document.getElementById('approval-plan').value")
        )
        assert [s["id"] for s in shown_plan["steps"]] == ["keep", "drop"]
        await fill(browser, "#approval-plan", json.dumps(BAD_EDIT))
        await click(browser, "#approve-edited")
        await wait_js(browser, shown("#approval-error"))
        refusal = str(await browser.js("return " + text("#approval-error")))
        assert refusal.startswith("invalid_plan"), refusal
        assert "steps.x.tool" in refusal, refusal
        await browser.screenshot("hitl-2-invalid-edit")
        assert (await get_run(server, headers, approved_id))["status"] == "awaiting_approval"

        # the edited plan (a step removed) is approved and runs as edited; the console's
        # refetch after Approve is answered late (after the run's events, with the run as
        # it was then): the graph still ends as the events left it (issue 15's race)
        await fill(browser, "#approval-plan", json.dumps(EDITED, indent=2))
        await browser.js("window.__delayRunReads = 1500")
        await click(browser, "#approve-edited")
        await wait_js(browser, f"{RUN_BADGE} === 'succeeded'")
        assert await run_async(browser, DELAYED_READS_LANDED) >= 1
        await browser.js("window.__delayRunReads = 0")
        assert await browser.js(f"return {RUN_BADGE}") == "succeeded"
        assert await dag_states(browser) == {"keep": "succeeded"}
        assert not await browser.js(f"return {shown('#approval')}")
        done = await get_run(server, headers, approved_id)
        assert done["status"] == "succeeded", done
        assert [s["id"] for s in done["plan"]["steps"]] == ["keep"]
        assert [(s["id"], s["status"]) for s in done["steps"]] == [("keep", "succeeded")]
        assert done["approval"]["approved_at"] is not None
        assert await file_status(server, headers, pid, "kept.txt") == 200
        assert await file_status(server, headers, pid, "dropped.txt") == 404
        await browser.screenshot("hitl-3-approved")

        # 2. a second run is rejected: cancelled, reason rejected, nothing written
        await browser.open(server.url + f"/#/p/{pid}")
        await wait_js(browser, "document.getElementById('ask-approval')")
        await click(browser, "#ask-approval")
        rejected_id = await run_plan(browser, TWO_WRITES)
        await wait_js(browser, shown("#reject"))
        await click(browser, "#reject")
        await wait_js(browser, f"{RUN_BADGE} === 'cancelled'")
        await wait_js(browser, text("#run-reason") + ".includes('rejected')")
        assert not await browser.js(f"return {shown('#approval')}")
        rejected = await get_run(server, headers, rejected_id)
        assert rejected["status"] == "cancelled"
        assert rejected["error"]["reason"] == "rejected"
        assert await file_status(server, headers, pid, "dropped.txt") == 404
        await browser.screenshot("hitl-4-rejected")

        # 3. a run fails on a missing file; the retry is refused while a reused step's input
        # changed (409 with the path), then forced: the new run reuses src and copy
        await browser.open(server.url + f"/#/p/{pid}")
        await wait_js(browser, "document.getElementById('ask-approval')")
        assert not await browser.js("return document.getElementById('ask-approval').checked")
        failed_id = await run_plan(browser, FAILING)
        await wait_js(browser, f"{RUN_BADGE} === 'failed' && {shown('#retry')}")
        assert await dag_states(browser) == {
            "src": "succeeded",
            "copy": "succeeded",
            "late": "failed",
        }
        await put_file(server, headers, pid, "late.txt", "here now")
        await put_file(server, headers, pid, "src/a.txt", "changed")
        await click(browser, "#retry")
        await wait_js(browser, shown("#retry-conflict"))
        assert "src/a.txt" in await browser.js("return " + text("#retry-paths"))
        assert await browser.js("return location.hash") == f"#/p/{pid}/runs/{failed_id}"
        await browser.screenshot("hitl-5-retry-conflict")
        await click(browser, "#retry-force")
        await wait_js(browser, f"!location.hash.endsWith('/{failed_id}')")
        retried_id = str(await browser.js("return location.hash")).rsplit("/", 1)[1]
        await wait_js(browser, f"{RUN_BADGE} === 'succeeded'")
        states = await dag_states(browser)
        assert states == {"src": "succeeded", "copy": "succeeded", "late": "succeeded"}
        await wait_js(
            browser, "document.querySelectorAll('#dag .node[data-reused=true]').length === 2"
        )
        assert await reused_nodes(browser) == ["copy", "src"]
        assert failed_id[-8:] in await browser.js("return " + text("#retry-of"))
        await click(browser, "#dag .node[data-step=src]")
        await wait_js(browser, text("#step-panel") + ".includes('reused')")
        await browser.screenshot("hitl-6-retried")
        retried = await get_run(server, headers, retried_id)
        assert retried["status"] == "succeeded", retried
        assert retried["retry_of"] == failed_id
        assert {s["id"]: s["reused"] for s in retried["steps"]} == {
            "src": True,
            "copy": True,
            "late": False,
        }
        late = next(s for s in retried["steps"] if s["id"] == "late")
        assert late["output"]["content"] == "here now"

        # the run model's guards for approval and retry, on the console's own module
        assert await run_async(browser, RUN_STATE_HITL) == {
            "awaiting": "awaiting_approval:a,b",
            "approved": "true:a",
            "approvedOnce": "a",
            "replay": "succeeded:a",
            "reused": "succeeded:true:null",
            "reason": "cancelled:rejected",
            "staleSnapshot": "succeeded:succeeded",
        }
        assert await page_errors(browser) == []  # no uncaught error, no CSP violation
    finally:
        server.ensure_dead()
