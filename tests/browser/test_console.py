"""The built-in web console at ``/``, in Debian's headless Chromium, against real
``stretto serve`` processes on both databases.

The flow is a user's: register, create a project, upload a file, edit it into a conflict,
preview a prompt's plan, run a plan with simulated model latency (the DAG shows steps
running in parallel, then all succeeded), cancel a second run mid-way (its running steps
turn cancelled together), and watch a run across a server restart (the console reconnects
and ends with the state ``GET /api/workflow/runs/{id}`` reports). Plans are submitted
explicitly through the prompt box's plan editor: an offline server may refuse to plan
free-form prompts (422 ``model_required``), which the box must show as a readable error.

Screenshots of every screen land in the folder the run's summary names
(``$STRETTO_TEST_ARTIFACTS`` or /tmp/stretto-browser-shots).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from server.api.console import CONTENT_SECURITY_POLICY
from tests.browser.console_page import (
    CONNECTION,
    EXPLAIN_MODEL_REQUIRED,
    FEED_10K,
    HANG_GUARD_S,
    PASSWORD,
    RUN_STATE_CASES,
    WATCH_DAG,
    click,
    color_scheme,
    dag_states,
    fill,
    get_run,
    n,
    page_errors,
    parallel_plan,
    q,
    run_async,
    run_plan,
    serve,
    session_headers,
    text,
    wait_js,
)
from tests.fixtures.server import create_project, register_user
from tests.ops.process import free_port

if TYPE_CHECKING:
    from pathlib import Path

    from tests.browser.conftest import LaunchBrowser
    from tests.fixtures.postgres import BackendConfig
    from tests.fixtures.server import StartServer
    from tests.ops.process import ServerProcess


# -- the route: headers, cache, the switch ------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # no storage involved
async def test_console_is_served_with_csp_and_etags_and_can_be_switched_off(
    start_server: StartServer,
) -> None:
    server = await start_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        index = await client.get("/")
        assert index.status_code == 200
        assert index.headers["content-type"] == "text/html; charset=utf-8"
        assert index.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
        assert "<script>" not in index.text  # module scripts by URL only, nothing inline
        assert 'src="/console/app.js"' in index.text
        assert index.headers["cache-control"] == "no-cache"
        etag = index.headers["etag"]
        again = await client.get("/", headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        script = await client.get("/console/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert '"/client/stretto.js"' in script.text  # the console uses the public client
        assert script.headers["etag"] != etag
        style = await client.get("/console/console.css")
        assert style.headers["content-type"] == "text/css; charset=utf-8"
        for missing in ("/console/nope.js", "/console/../app.py", "/console/"):
            response = await client.get(missing)
            assert response.status_code == 404, missing
            assert response.json()["error"]["code"] == "not_found"
    off = await start_server(console=False)
    async with httpx.AsyncClient(base_url=off.url, timeout=30) as client:
        for path in ("/", "/console/app.js"):
            response = await client.get(path)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"
        assert (await client.get("/client/stretto.js")).status_code == 200


# -- the flow -------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_console_register_project_files_parallel_run_and_cancel(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery, browsers: LaunchBrowser
) -> None:
    server = await serve(nursery, backend, tmp_path, offline_latency_ms=3000)
    try:
        browser = await browsers(f"console-{backend.name}")
        await browser.open(server.url + "/")
        await wait_js(browser, "document.getElementById('auth-form')")
        await browser.screenshot("1-sign-in")
        errors = await browser.js("return document.querySelectorAll('.error:not([hidden])').length")
        assert errors == 0

        # register
        await click(browser, "#auth-toggle")
        await fill(browser, "#email", f"console-{backend.name}@example.com")
        await fill(browser, "#password", PASSWORD)
        await click(browser, "#auth-submit")
        await wait_js(browser, "document.getElementById('project-list')")
        headers = await session_headers(browser)

        # projects: create, rename and delete a scratch one, then create the real one
        await fill(browser, "#new-project", "scratch")
        await click(browser, "#create-project button[type=submit]")
        await wait_js(browser, "document.getElementById('file-tree')")
        await browser.open(server.url + "/#/projects")
        await click(browser, "#project-list li .rename")
        await fill(browser, "#project-list li input", "scratch renamed")
        await click(browser, "#project-list li button[type=submit]")
        await wait_js(browser, text("#project-list li a") + " === 'scratch renamed'")
        await browser.screenshot("2-projects")
        await click(browser, "#project-list li .delete")
        await click(browser, "#project-list li .confirm-delete")
        await wait_js(browser, "!document.querySelector('#project-list li a')")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            listed = (await client.get("/api/projects", headers=headers)).json()["items"]
        assert listed == []
        await fill(browser, "#new-project", "demo")
        await click(browser, "#create-project button[type=submit]")
        await wait_js(browser, "document.getElementById('file-tree')")
        pid = str(await browser.js("return location.hash.split('/')[2]"))

        # upload a file; it shows in the tree and the viewer
        readme = tmp_path / "README.md"
        readme.write_text("# Demo\n\nA small project for the console test.\n")
        upload = await browser.js("return document.getElementById('upload')")
        await trio.to_thread.run_sync(upload.send_keys, str(readme))
        await wait_js(browser, text("#file-content") + ".includes('A small project')")

        # edit it while someone else saves: the conflict shows both versions
        await click(browser, "#edit-file")
        await fill(browser, "#editor", "# Demo\n\nmy edit\n")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            put = await client.put(
                f"/api/projects/{pid}/files/README.md", content=b"# Demo\n\ntheir edit\n",
                headers=headers,
            )  # fmt: skip
            assert put.status_code == 200, put.text
        await click(browser, "#save-file")
        await wait_js(browser, "document.getElementById('conflict')")
        assert "my edit" in await browser.js("return " + text("#conflict .mine"))
        assert "their edit" in await browser.js("return " + text("#conflict .theirs"))
        await browser.screenshot("3-conflict")
        await click(browser, "#take-theirs")
        await wait_js(browser, text("#file-content") + ".includes('their edit')")

        # the prompt box previews a plan, or says why it cannot (model_required)
        await fill(browser, "#prompt", "write a README and a CHANGELOG")
        await click(browser, "#preview")
        await wait_js(browser, q("#plan-steps li") + " || " + q("#prompt-error:not([hidden])"))
        shown = await browser.js(
            "const e = document.getElementById('prompt-error');"
            "return e.hidden ? null : e.textContent"
        )
        if shown is not None:  # a refusal must read as a sentence, not a status dump
            assert "model_required" in shown
            assert "plan" in shown.lower()
        await browser.screenshot("4-project")

        # a bad plan is refused with the contract's error, shown in the box with its details
        await click(browser, "#write-plan")
        bad = {"steps": [{"id": "x", "tool": "no.such_tool", "args": {}, "needs": []}]}
        await fill(browser, "#plan-json", json.dumps(bad))
        await click(browser, "#run")
        await wait_js(browser, q("#prompt-error:not([hidden])"))
        refusal = await browser.js("return " + text("#prompt-error"))
        assert refusal.startswith("invalid_plan"), refusal
        assert "no.such_tool" in refusal or "x" in refusal, refusal
        assert await browser.js("return location.hash") == f"#/p/{pid}"  # nothing started
        # the offline provider's refusal to plan free-form prompts reads as advice
        advice = await run_async(browser, EXPLAIN_MODEL_REQUIRED)
        assert advice.startswith("model_required"), advice
        assert "Write the plan as JSON" in advice

        # a parallel run: the DAG shows gen0..gen3 running together, then all succeeded
        await browser.js(WATCH_DAG)
        run_id = await run_plan(browser, parallel_plan(4))
        await wait_js(browser, "window.__watch.maxRunning >= 2")
        await browser.screenshot("5-run-live")
        await wait_js(browser, "document.querySelector('#run-status [data-status=succeeded]')")
        states = await dag_states(browser)
        steps = ["read", "gen0", "gen1", "gen2", "gen3", "write"]
        assert states == dict.fromkeys(steps, "succeeded")
        assert await browser.js("return window.__watch.maxRunning") >= 2
        run = await get_run(server, headers, run_id)
        assert run["metrics"]["max_parallelism"] >= 2
        bars = await browser.js("return document.querySelectorAll('#timeline .bar').length")
        assert bars == 6
        parallelism = await browser.js(
            "return document.querySelector('[data-metric=parallelism] dd').textContent"
        )
        assert parallelism == str(run["metrics"]["max_parallelism"])
        # keyboard: a graph node takes focus and Enter opens its step
        node = await browser.js("return " + q("#dag .node[data-step=gen2]"))
        await browser.js("arguments[0].focus()", node)
        assert await browser.js("return document.activeElement === arguments[0]", node)
        await trio.to_thread.run_sync(node.send_keys, "\ue007")  # Enter
        await wait_js(browser, text("#step-output") + ".includes('Part 2')")
        rows = await browser.js("return Number(" + q("#event-list") + ".dataset.count)")
        assert rows >= 14  # created..succeeded: every retained event of the run
        await browser.screenshot("6-run-succeeded")
        await color_scheme(browser, "dark")
        await browser.screenshot("6-run-succeeded-dark")
        await color_scheme(browser, "light")

        # a second run, cancelled mid-way: its running steps turn cancelled together
        await browser.open(f"{server.url}/#/p/{pid}")
        await wait_js(browser, "document.querySelector('#run-rows [data-run]')")
        await browser.js(WATCH_DAG)
        slow_id = await run_plan(browser, parallel_plan(3))
        await wait_js(browser, n("#dag .node[data-state=running]") + " >= 2")
        running = {k for k, v in (await dag_states(browser)).items() if v == "running"}
        await click(browser, "#cancel")
        await wait_js(browser, "document.querySelector('#run-status [data-status=cancelled]')")
        await wait_js(browser, "!document.querySelector('#dag .node[data-state=running]')")
        states = await dag_states(browser)
        await browser.screenshot("7-run-cancelled")
        assert {k for k, v in states.items() if v == "cancelled"} == running
        assert states["write"] == "skipped"
        # The cancels of one commit reach the page together; when the network splits them
        # across two reads, one render may show both states, never more than one.
        assert await browser.js("return window.__watch.mixedRenders") <= 1
        run = await get_run(server, headers, slow_id)
        assert {s["id"]: s["status"] for s in run["steps"]} == states
        ends = {s["finished_at"] for s in run["steps"] if s["status"] == "cancelled"}
        assert len(ends) == 1  # one transaction cancelled them all

        # the project's run history shows both, with status and duration
        await browser.open(f"{server.url}/#/p/{pid}")
        await wait_js(browser, "document.querySelectorAll('#run-rows [data-run]').length === 2")
        statuses = await browser.js(
            "return [...document.querySelectorAll('#run-rows [data-status]')]"
            ".map((b) => b.dataset.status)"
        )
        assert sorted(statuses) == ["cancelled", "succeeded"]
        await browser.screenshot("8-project-history")
        assert await page_errors(browser) == []
    finally:
        server.ensure_dead()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_console_reconnects_across_a_restart_and_matches_the_api(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery, browsers: LaunchBrowser
) -> None:
    port = free_port()
    # Slow model calls and no grace: SIGTERM interrupts the run; the next process resumes it.
    settings = {"offline_latency_ms": 2500, "shutdown_grace_s": 0}
    first = await serve(nursery, backend, tmp_path, port, **settings)
    restarted: ServerProcess | None = None
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
            user = await register_user(client, password=PASSWORD)
            pid = await create_project(client, user)
            put = await client.put(
                f"/api/projects/{pid}/files/README.md", content=b"# Restart\n", headers=user.headers
            )  # fmt: skip
            assert put.status_code == 201
        browser = await browsers(f"console-restart-{backend.name}")
        await browser.open(first.url + "/")
        await wait_js(browser, "document.getElementById('auth-form')")
        await fill(browser, "#email", user.email)  # sign in (not register) this time
        await fill(browser, "#password", PASSWORD)
        await click(browser, "#auth-submit")
        await wait_js(browser, "document.getElementById('project-list')")
        await browser.open(f"{first.url}/#/p/{pid}")
        await wait_js(browser, "document.getElementById('file-tree')")
        await browser.js(WATCH_DAG)
        plan = parallel_plan(2)
        final = {"prompt": "wrap up"}
        plan["steps"].append(
            {"id": "final", "tool": "ai.generate", "args": final, "needs": ["write"]}
        )
        run_id = await run_plan(browser, plan)
        await wait_js(browser, "document.querySelector('#dag .node[data-state=running]')")
        await wait_js(browser, CONNECTION + " === 'live'")

        first.terminate()
        with trio.fail_after(HANG_GUARD_S):
            await first.process.wait()
        await wait_js(browser, CONNECTION + " === 'reconnecting'")
        indicator = await browser.js("return document.getElementById('connection').textContent")
        assert indicator.startswith("reconnecting after #"), indicator
        await browser.screenshot("9-reconnecting")
        restarted = await serve(nursery, backend, tmp_path, port, **settings)

        await wait_js(
            browser, q("#run-status [data-status=succeeded], #run-status [data-status=failed]")
        )
        await wait_js(browser, CONNECTION + " === 'live'")
        await browser.screenshot("10-after-restart")
        run = await get_run(restarted, user.headers, run_id)
        assert run["status"] == "succeeded", run
        shown = await browser.js("return " + q("#run-status [data-status]") + ".dataset.status")
        assert shown == run["status"]
        assert await dag_states(browser) == {s["id"]: s["status"] for s in run["steps"]}
        states = await browser.js("return window.__watch.states")
        assert any(s.startswith("reconnecting after #") for s in states), states
    finally:
        first.ensure_dead()
        if restarted is not None:
            restarted.ensure_dead()


# -- scale: 100+ steps, 10,000 events ---------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # rendering, not storage
async def test_console_renders_120_steps_and_10000_events_and_guards_replays(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery, browsers: LaunchBrowser
) -> None:
    server = await serve(nursery, backend, tmp_path, max_plan_steps=150)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            user = await register_user(client, password=PASSWORD)
            pid = await create_project(client, user)
            steps = [
                {"id": f"w{i}", "tool": "vfs.write",
                 "args": {"path": f"out/{i}.txt", "content": str(i)},
                 "needs": [f"w{i - 12}"] if i >= 12 else []}
                for i in range(120)
            ]  # fmt: skip
            body = {"project_id": pid, "plan": {"steps": steps}}
            response = await client.post("/api/workflow/runs", json=body, headers=user.headers)
            assert response.status_code == 202, response.text
            run_id = response.json()["id"]
        browser = await browsers("console-scale")
        await browser.open(server.url + "/")
        await wait_js(browser, "document.getElementById('auth-form')")
        await fill(browser, "#email", user.email)
        await fill(browser, "#password", PASSWORD)
        await click(browser, "#auth-submit")
        await wait_js(browser, "document.getElementById('project-list')")
        await browser.open(f"{server.url}/#/p/{pid}/runs/{run_id}")
        await wait_js(browser, "document.querySelector('#run-status [data-status=succeeded]')")
        await wait_js(browser, n("#dag .node[data-state=succeeded]") + " === 120")
        # the replay: started and succeeded of every step, at least
        await wait_js(browser, "Number(" + q("#event-list") + ".dataset.count) >= 240")
        rows = await browser.js("return document.querySelectorAll('#event-list .event').length")
        assert rows < 60  # virtualized: only the rows in view exist
        await browser.screenshot("11-run-120-steps")

        fed = await run_async(browser, FEED_10K)
        assert fed["count"] == 10_000
        assert fed["rows"] < 60
        assert fed["middle"] is True
        assert fed["nodes"] == 150

        assert await run_async(browser, RUN_STATE_CASES) == {
            "replayKeepsSucceeded": "succeeded",
            "retrying": "retrying",
            "afterRetry": "succeeded:2",
            "shutdown": "pending",
            "resumed": "running:2",
            "streamed": "hello",
            "cancelledStays": "cancelled",
            "runNeverBack": "succeeded",
        }
    finally:
        server.ensure_dead()
