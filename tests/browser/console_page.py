"""What the console's Chromium tests (test_console.py) drive: JS expressions over the
console's DOM, page actions (fill, click, wait), scripts that exercise the console's own ES
modules in the page, and the plans the runs execute. Every selenium call runs in a worker
thread (``Browser.js`` or ``trio.to_thread``); no wait is a timing assertion.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import trio

from tests.browser.harness import POLL_S, start_stretto
from tests.ops.process import free_port

if TYPE_CHECKING:
    from pathlib import Path

    from tests.browser.harness import Browser
    from tests.fixtures.postgres import BackendConfig
    from tests.ops.process import ServerProcess

PASSWORD = "correct horse battery"
HANG_GUARD_S = 90  # fails a hung test; never a timing assertion
STEP_STATES = "#dag .node"

# Counts what the DAG showed at every DOM change: the most steps running at once, and
# whether running and cancelled steps were ever on screen together (a cancel that did not
# land in one render). The console renders once per animation frame, so a DOM change is
# what a user could have seen.
WATCH_DAG = """
const watch = window.__watch = {maxRunning: 0, mixed: false, mixedRenders: 0, states: []};
new MutationObserver(() => {
  const nodes = [...document.querySelectorAll('#dag .node')];
  const running = nodes.filter((n) => n.dataset.state === 'running').length;
  const cancelled = nodes.filter((n) => n.dataset.state === 'cancelled').length;
  watch.maxRunning = Math.max(watch.maxRunning, running);
  if (running && cancelled) { watch.mixed = true; watch.mixedRenders += 1; }
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
    get_log = browser.driver.get_log  # type: ignore[attr-defined]  # Chrome's driver has it
    entries = await trio.to_thread.run_sync(get_log, "browser")
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


# -- human in the loop (test_console_hitl.py) ---------------------------------------------

RUN_BADGE = "document.querySelector('#run-status .badge')?.dataset.status"


def shown(selector: str) -> str:
    """JS: whether the first element matching ``selector`` exists and is not hidden."""
    return f"(({q(selector)}) !== null && !{q(selector)}.closest('[hidden]'))"


async def register_in_console(browser: Browser, email: str) -> dict[str, str]:
    """Register through the sign-in screen; the session's auth headers."""
    await wait_js(browser, "document.getElementById('auth-form')")
    await click(browser, "#auth-toggle")
    await fill(browser, "#email", email)
    await fill(browser, "#password", PASSWORD)
    await click(browser, "#auth-submit")
    await wait_js(browser, "document.getElementById('project-list')")
    return await session_headers(browser)


async def create_project_in_console(browser: Browser, name: str) -> str:
    """Create a project from the projects screen; its id (the project screen is open)."""
    await fill(browser, "#new-project", name)
    await click(browser, "#create-project button[type=submit]")
    await wait_js(browser, "document.getElementById('file-tree')")
    return str(await browser.js("return location.hash.split('/')[2]"))


async def put_file(
    server: ServerProcess, headers: dict[str, str], project_id: str, path: str, content: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.put(
            f"/api/projects/{project_id}/files/{path}", content=content.encode(), headers=headers
        )
    assert response.status_code in (200, 201), response.text


async def file_status(
    server: ServerProcess, headers: dict[str, str], project_id: str, path: str
) -> int:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.get(f"/api/projects/{project_id}/files/{path}", headers=headers)
    return response.status_code


async def reused_nodes(browser: Browser) -> list[str]:
    """The DAG's steps drawn as reused (succeeded in the run this one retries)."""
    ids = await browser.js(
        "return [...document.querySelectorAll('#dag .node[data-reused=true]')]"
        ".map((n) => n.dataset.step).sort()"
    )
    assert isinstance(ids, list)
    return [str(i) for i in ids]


# The run model's approval and retry guards, on the console's own module: an awaiting run
# shows its plan; run.approved with an edited plan replaces the steps once; a snapshot of
# the approved run ignores the replayed awaiting/approved events (its edited steps stay); a
# reused step.succeeded marks the step reused without times of this run.
RUN_STATE_HITL = """
const done = arguments[arguments.length - 1];
const { RunState } = await import('/console/runstate.js');
const at = '2026-01-01T00:00:00Z';
const plan = (...ids) => ({steps: ids.map((id) => ({id, tool: 'vfs.write', args: {}}))});
const ev = (type, extra = {}) => ({id: null, type, data: {type, run_id: 'r', at, ...extra}});
const out = {};
let s = new RunState({id: 'r', project_id: 'p', status: 'pending', steps: [], plan: null,
  created_at: at});
s.apply(ev('run.awaiting_approval', {plan: plan('a', 'b')}));
out.awaiting = s.status + ':' + [...s.steps.keys()].join(',');
s.apply(ev('run.approved', {plan: plan('a'), edited: true}));
out.approved = String(s.approved) + ':' + [...s.steps.keys()].join(',');
s.apply(ev('run.approved', {plan: plan('a', 'b'), edited: false}));
out.approvedOnce = [...s.steps.keys()].join(',');
const step = (id) => ({id, tool: 'vfs.write', args: {}, needs: [], status: 'succeeded',
  attempts: 1, started_at: at, finished_at: at});
s = new RunState({id: 'r', project_id: 'p', status: 'succeeded', steps: [step('a')],
  plan: plan('a'), approval: {mode: 'plan', approved_at: at}, created_at: at});
s.apply(ev('run.awaiting_approval', {plan: plan('a', 'b')}));
s.apply(ev('run.approved', {plan: plan('a'), edited: true}));
out.replay = s.status + ':' + [...s.steps.keys()].join(',');
s = new RunState({id: 'r', project_id: 'p', status: 'running', plan: plan('a'), created_at: at,
  steps: [{id: 'a', tool: 'vfs.write', args: {}, needs: [], status: 'pending', attempts: 0}]});
s.apply(ev('step.succeeded', {step_id: 'a', attempt: 0, reused: true, output: {}}));
const a = s.steps.get('a');
out.reused = a.status + ':' + a.reused + ':' + a.started;
s.apply(ev('run.cancelled', {reason: 'rejected', error: null}));
out.reason = s.status + ':' + s.reason;
// the refetch after Approve answers after the step's events, with the run as it was mid-step:
// the events received so far are folded over it again, so the step does not go back
s = new RunState({id: 'r', project_id: 'p', status: 'awaiting_approval', steps: [],
  plan: plan('a', 'b'), created_at: at});
s.apply(ev('run.approved', {plan: plan('a'), edited: true}));
s.apply(ev('run.started'));
s.apply(ev('step.started', {step_id: 'a', attempt: 1}));
s.apply(ev('step.succeeded', {step_id: 'a', attempt: 1, output: {}}));
s.load({id: 'r', project_id: 'p', status: 'running', plan: plan('a'), created_at: at,
  approval: {mode: 'plan', approved_at: at}, started_at: at,
  steps: [{id: 'a', tool: 'vfs.write', args: {}, needs: [], status: 'running', attempts: 1,
    started_at: at}]});
s.apply(ev('run.succeeded'));
out.staleSnapshot = s.status + ':' + [...s.steps.values()].map((x) => x.status).join(',');
done(out);
"""

# Installed before the console loads (CDP, so the page's CSP does not apply): while
# ``window.__delayRunReads`` is set, every answer to ``GET /api/workflow/runs/{id}`` reaches
# the console that many ms late. The refetch after Approve then lands after the run's first
# events: the race of issue 15, made to happen on every run instead of one in three.
DELAY_RUN_READS = """
(() => {
  const real = window.fetch;
  window.__delayRunReads = 0;
  window.__delayedReads = {pending: 0, delivered: 0};
  window.fetch = async function (input, init) {
    const response = await real.call(this, input, init);
    const url = new URL(input instanceof Request ? input.url : String(input), location.href);
    const method = (init && init.method) || 'GET';
    const delay = window.__delayRunReads;
    if (delay && method === 'GET' && /^\\/api\\/workflow\\/runs\\/[^/]+$/.test(url.pathname)) {
      window.__delayedReads.pending += 1;
      await new Promise((resolve) => setTimeout(resolve, delay));
      window.__delayedReads.pending -= 1;
      window.__delayedReads.delivered += 1;
    }
    return response;
  };
})();
"""


# Resolves after the delayed run reads were delivered and the console rendered them.
DELAYED_READS_LANDED = """
const done = arguments[arguments.length - 1];
const wait = () => {
  const reads = window.__delayedReads;
  if (reads.pending || !reads.delivered) { setTimeout(wait, 50); return; }
  requestAnimationFrame(() => requestAnimationFrame(() => done(reads.delivered)));
};
wait();
"""


async def delay_run_reads(browser: Browser) -> None:
    """Install DELAY_RUN_READS in every document the browser opens from now on."""
    await trio.to_thread.run_sync(
        browser.driver.execute_cdp_cmd,
        "Page.addScriptToEvaluateOnNewDocument",
        {"source": DELAY_RUN_READS},
    )
