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
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from server.api.console import CONTENT_SECURITY_POLICY
from tests.browser.harness import POLL_S, start_stretto
from tests.fixtures.server import create_project, register_user
from tests.ops.process import free_port

if TYPE_CHECKING:
    from pathlib import Path

    from tests.browser.conftest import LaunchBrowser
    from tests.browser.harness import Browser
    from tests.fixtures.postgres import BackendConfig
    from tests.fixtures.server import StartServer
    from tests.ops.process import ServerProcess

PASSWORD = "correct horse battery"
HANG_GUARD_S = 90  # fails a hung test; never a timing assertion
STEP_STATES = "#dag .node"

# Counts what the DAG showed at every DOM change: the most steps running at once, and
# whether running and cancelled steps were ever on screen together (a cancel that did not
# land in one render). The console renders once per animation frame, so a DOM change is
# what a user could have seen.
WATCH_DAG = """
const watch = window.__watch = {maxRunning: 0, mixed: false, states: []};
new MutationObserver(() => {
  const nodes = [...document.querySelectorAll('#dag .node')];
  const running = nodes.filter((n) => n.dataset.state === 'running').length;
  const cancelled = nodes.filter((n) => n.dataset.state === 'cancelled').length;
  watch.maxRunning = Math.max(watch.maxRunning, running);
  if (running && cancelled) watch.mixed = true;
  const conn = document.getElementById('connection');
  const shown = conn.textContent;
  if (watch.states[watch.states.length - 1] !== shown) watch.states.push(shown);
}).observe(document.body, {subtree: true, childList: true, characterData: true,
  attributes: true, attributeFilter: ['data-state']});
"""


def q(selector: str) -> str:
    """JS: the first element matching ``selector`` (or null)."""
    return f"document.querySelector({json.dumps(selector)})"


def n(selector: str) -> str:
    """JS: how many elements match ``selector``."""
    return f"document.querySelectorAll({json.dumps(selector)}).length"


def text(selector: str) -> str:
    """JS: the text of the first element matching ``selector`` ('' when none)."""
    return f"({q(selector)}?.textContent ?? '')"


CONNECTION = "document.getElementById('connection').dataset.state"


def parallel_plan(width: int, *, tail: bool = True) -> dict[str, Any]:
    """read -> ``width`` ai.generate steps in parallel (each one model call) -> write."""
    steps: list[dict[str, Any]] = [
        {"id": "read", "tool": "vfs.read", "args": {"path": "README.md"}, "needs": []}
    ]
    for i in range(width):
        prompt = f"Part {i} of a summary of: {{{{steps.read.output.content}}}}"
        args = {"prompt": prompt}
        steps.append({"id": f"gen{i}", "tool": "ai.generate", "args": args, "needs": ["read"]})
    if tail:
        args = {"path": "SUMMARY.md", "content": "{{steps.gen0.output.text}}"}
        steps.append({"id": "write", "tool": "vfs.write", "args": args, "needs": ["gen0", "gen1"]})
    return {"steps": steps}


async def wait_js(browser: Browser, condition: str, hang_guard_s: float = HANG_GUARD_S) -> Any:
    """Poll a JS expression until truthy; its value. Fails with a screenshot on the guard."""
    with trio.move_on_after(hang_guard_s):
        while True:
            value = await browser.js(f"return ({condition})")
            if value:
                return value
            await trio.sleep(POLL_S)
    await browser.screenshot("timeout")
    text = await browser.js("return document.getElementById('main').innerText.slice(0, 2000)")
    raise AssertionError(f"{browser.name}: not {condition!r} in {hang_guard_s}s; page: {text}")


async def page_errors(browser: Browser) -> list[str]:
    """The page's console errors (uncaught exceptions, CSP violations), leaving out the
    network log lines of the error answers the flow provokes on purpose (412, 400)."""
    entries = await trio.to_thread.run_sync(browser.driver.get_log, "browser")
    return [
        str(e["message"])
        for e in entries
        if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
    ]


async def run_async(browser: Browser, script: str) -> Any:
    """An async script (it calls ``arguments[arguments.length - 1]`` with its result)."""
    return await trio.to_thread.run_sync(browser.driver.execute_async_script, script)


async def fill(browser: Browser, selector: str, value: str) -> None:
    await browser.js(
        "const el = document.querySelector(arguments[0]); el.value = arguments[1];"
        "el.dispatchEvent(new Event('input', {bubbles: true}));",
        selector,
        value,
    )


async def click(browser: Browser, selector: str) -> None:
    await wait_js(browser, f"document.querySelector({json.dumps(selector)})")
    await browser.js(  # dispatched: SVG nodes have no click()
        "document.querySelector(arguments[0])"
        ".dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true}))",
        selector,
    )


async def dag_states(browser: Browser) -> dict[str, str]:
    states = await browser.js(
        "return Object.fromEntries([...document.querySelectorAll(arguments[0])]"
        ".map((n) => [n.dataset.step, n.dataset.state]))",
        STEP_STATES,
    )
    assert isinstance(states, dict)
    return states


async def color_scheme(browser: Browser, scheme: str) -> None:
    """Emulate ``prefers-color-scheme`` (the console follows it)."""
    features = [{"name": "prefers-color-scheme", "value": scheme}]
    await trio.to_thread.run_sync(
        browser.driver.execute_cdp_cmd,
        "Emulation.setEmulatedMedia",
        {"features": features},
    )
    dark = await browser.js("return matchMedia('(prefers-color-scheme: dark)').matches")
    assert dark is (scheme == "dark")


async def session_headers(browser: Browser) -> dict[str, str]:
    token = await browser.js(
        "return JSON.parse(sessionStorage.getItem('stretto.session')).accessToken"
    )
    return {"Authorization": f"Bearer {token}"}


async def run_plan(browser: Browser, plan: dict[str, Any]) -> str:
    """Write ``plan`` into the prompt box's plan editor and run it; the new run's id."""
    await click(browser, "#write-plan")
    await fill(browser, "#plan-json", json.dumps(plan, indent=2))
    await click(browser, "#run")
    route = await wait_js(
        browser, "location.hash.includes('/runs/') && document.querySelector('#dag .node')"
        " && location.hash",
    )  # fmt: skip
    return str(route).rsplit("/", 1)[1]


async def get_run(server: ServerProcess, headers: dict[str, str], run_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.get(f"/api/workflow/runs/{run_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def serve(
    nursery: trio.Nursery, backend: BackendConfig, tmp_path: Path, port: int = 0, **settings: Any
) -> ServerProcess:
    return await start_stretto(
        nursery, backend, tmp_path / "stretto.log", port or free_port(), **settings
    )


# The prompt box's error line for a 422 ``model_required`` (the offline provider refusing to
# plan a free-form prompt), rendered by the console's own module.
EXPLAIN_MODEL_REQUIRED = """
const done = arguments[arguments.length - 1];
const { errorBox } = await import('/console/dom.js');
const box = errorBox({status: 422, code: 'model_required',
  message: 'The offline provider cannot plan free-form prompts.', details: {}});
done(box.textContent);
"""


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
        assert await browser.js("return window.__watch.mixed") is False
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

# Feeds 10,000 events of a synthetic 150-step run through the console's own modules (the
# ones the run screen uses), as a burst, then renders once per frame like the run screen.
FEED_10K = """
const done = arguments[arguments.length - 1];
const [{ RunState }, { EventList }, { Dag }] = await Promise.all([
  import('/console/runstate.js'), import('/console/eventlist.js'), import('/console/dag.js')]);
const steps = Array.from({length: 150}, (_, i) => ({id: `s${i}`, tool: 'vfs.write', args: {},
  needs: i >= 10 ? [`s${i - 10}`] : [], status: 'pending', attempts: 0}));
const state = new RunState({id: 'r', project_id: 'p', status: 'running', steps,
  created_at: new Date().toISOString(), started_at: new Date().toISOString()});
const list = new EventList();
const dag = new Dag(() => {});
document.getElementById('main').append(list.el, dag.el);
dag.build(state.ordered());
let seq = 0;
const at = new Date().toISOString();
for (let round = 0; seq < 10000; round++) {
  for (const s of steps) {
    if (seq >= 10000) break;
    const type = round % 2 ? 'step.succeeded' : 'step.started';
    const event = {id: ++seq, type, data: {type, run_id: 'r', step_id: s.id,
      attempt: Math.floor(round / 2) + 1, at}};
    list.push(event);
    state.apply(event);
  }
}
requestAnimationFrame(() => {
  for (const id of state.takeDirty()) dag.update(state.steps.get(id));
  list.render();
  list.follow = false; // what a user scrolling up does (the scroll event sets it)
  list.el.scrollTop = 4990 * 20;
  list.render();
  done({
    count: list.size,
    rows: list.el.querySelectorAll('.event').length,
    middle: [...list.el.querySelectorAll('.event .seq')].some((e) => e.textContent === '#5000'),
    nodes: dag.el.querySelectorAll('.node').length,
  });
});
"""


# The run model's guards, on the console's own module: a replay of what the snapshot already
# shows changes nothing; a retry shows `retrying` and then its attempt's end; a shutdown's
# cancel puts the step back to pending and the resumed attempt runs; a run never moves back.
RUN_STATE_CASES = """
const done = arguments[arguments.length - 1];
const { RunState } = await import('/console/runstate.js');
const at = '2026-01-01T00:00:00Z';
const step = (id, status, attempts) => ({id, tool: 'ai.generate', args: {}, needs: [], status,
  attempts, started_at: attempts ? at : null, finished_at: null});
const ev = (type, step_id, attempt, extra = {}) => ({id: null, type,
  data: {type, run_id: 'r', step_id, attempt, at, ...extra}});
const run = (steps, status = 'running') => new RunState({id: 'r', project_id: 'p', status,
  steps, created_at: at, started_at: at});
const out = {};
let s = run([step('a', 'succeeded', 1)]);
s.apply(ev('step.started', 'a', 1));
out.replayKeepsSucceeded = s.steps.get('a').status;
s = run([step('b', 'running', 1)]);
s.apply(ev('step.retrying', 'b', 1, {next_attempt: 2}));
out.retrying = s.steps.get('b').status;
s.apply(ev('step.succeeded', 'b', 2, {output: {text: 'ok'}}));
out.afterRetry = s.steps.get('b').status + ':' + s.steps.get('b').attempt;
s = run([step('c', 'running', 1)]);
s.apply(ev('step.cancelled', 'c', 1, {reason: 'shutdown'}));
out.shutdown = s.steps.get('c').status;
s.apply(ev('step.started', 'c', 2));
out.resumed = s.steps.get('c').status + ':' + s.steps.get('c').attempt;
s.apply(ev('step.delta', 'c', 2, {text: 'hel'}));
s.apply(ev('step.delta', 'c', 2, {text: 'lo'}));
out.streamed = s.steps.get('c').text;
s.apply(ev('step.cancelled', 'c', 2, {reason: 'user'}));
s.apply(ev('step.started', 'c', 2));
out.cancelledStays = s.steps.get('c').status;
s = run([step('d', 'succeeded', 1)], 'succeeded');
s.apply({id: 1, type: 'run.started', data: {type: 'run.started', run_id: 'r', at}});
out.runNeverBack = s.status;
done(out);
"""


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
