// run.js: one run, live. The run's events (replayed from its first, then live) move a
// RunState forward; rendering is batched per animation frame: the DAG touches only changed
// nodes, the timeline and metrics redraw, the event list renders only the rows in view.
// `ai.generate` output streams into the step panel from `step.delta`. A run awaiting
// review shows its changes (review.js); a finished run offers Undo (run revert).
import { h, mount, badge, duration, errorBox, showError, perFrame } from "./dom.js";
import { RunState, TERMINAL_STEP } from "./runstate.js";
import { Dag } from "./dag.js";
import { Timeline } from "./timeline.js";
import { EventList } from "./eventlist.js";
import { ApprovalPanel, RetryPanel } from "./hitl.js";
import { ReviewPanel, UndoPanel } from "./review.js";

export const NAME = "run";
const TICK_MS = 250; // live durations move while steps run

/** @param {any} ctx @param {HTMLElement} main @param {string[]} params */
export async function render(ctx, main, [projectId, runId]) {
  const [project, run] = await Promise.all([ctx.api.getProject(projectId), ctx.api.getRun(runId)]);
  ctx.crumbs([["Projects", "#/projects"], [project.name, `#/p/${encodeURIComponent(projectId)}`], [`run ${runId.slice(-8)}`, null]]);
  const state = new RunState(run);
  /** @type {string|null} */
  let selected = null;
  let userSelected = false;
  const dag = new Dag((id) => { selected = id; userSelected = true; dag.select(id); schedule(); });
  const timeline = new Timeline();
  const events = new EventList();
  const status = h("span", { id: "run-status" });
  const error = errorBox();
  const cancel = h("button", {
    type: "button", id: "cancel", class: "danger",
    onclick: async () => {
      cancel.disabled = true;
      try { await ctx.api.cancelRun(runId); } catch (err) { if (!err || err.code !== "run_finished") showError(error, err); }
    },
  }, "Cancel run");
  const metrics = h("dl", { class: "metrics", id: "metrics" });
  const panel = h("div", { class: "step-panel", id: "step-panel" });
  const runError = h("p", { class: "error", id: "run-error", hidden: true });
  const reason = h("span", { id: "run-reason", class: "small muted" });
  const approval = new ApprovalPanel(ctx, runId, () => refetch());
  const retry = new RetryPanel(ctx, projectId, runId);
  const undo = new UndoPanel(ctx, projectId, runId);
  const review = new ReviewPanel(ctx, projectId, runId, (paths) => undo.applied(paths));
  const origin = run.retry_of
    ? h("p", { class: "small muted", id: "retry-of" }, "Retry of ",
      h("a", { href: `#/p/${encodeURIComponent(projectId)}/runs/${encodeURIComponent(run.retry_of)}` }, `run ${run.retry_of.slice(-8)}`),
      ": steps that succeeded there are reused (dashed outline).")
    : null;

  mount(main,
    h("section", { class: "card" },
      h("div", { class: "row" }, h("h1", { class: "grow title" }, run.prompt || `Plan of ${state.steps.size} steps`), status, reason, cancel),
      origin, error, runError, retry.el, undo.el, metrics),
    approval.el,
    review.el,
    h("div", { class: "run-grid" },
      h("section", { class: "card", "aria-label": "Graph" }, h("h2", {}, "Steps"), legend(), h("div", { class: "scroll dag-box" }, dag.el)),
      h("section", { class: "card", "aria-label": "Step" }, h("h2", {}, "Step"), panel)),
    h("section", { class: "card", "aria-label": "Timeline" }, h("h2", {}, "Timeline"), h("div", { class: "scroll timeline-box" }, timeline.el)),
    h("section", { class: "card", "aria-label": "Events" }, h("h2", {}, "Events"), events.el));

  const paint = () => {
    const now = Date.now();
    if (state.structureChanged) {
      state.structureChanged = false;
      state.takeDirty();
      dag.build(state.ordered());
    } else {
      for (const id of state.takeDirty()) {
        const step = state.steps.get(id);
        if (step) dag.update(step);
      }
    }
    mount(status, badge(state.status));
    reason.textContent = state.reason ? `(${state.reason})` : "";
    approval.paint(state);
    retry.paint(state);
    review.paint(state);
    undo.paint(state);
    cancel.disabled = state.settled;
    cancel.hidden = state.settled;
    runError.hidden = !state.error;
    if (state.error) runError.textContent = `${state.error.code || "error"}: ${state.error.message || ""}`;
    paintMetrics(metrics, state, now);
    timeline.render(state, now);
    if (!userSelected) {
      const streaming = [...state.steps.values()].find((s) => s.status === "running" && s.tool.startsWith("ai.")) || [...state.steps.values()].find((s) => s.status === "running");
      if (streaming && streaming.id !== selected) { selected = streaming.id; dag.select(selected); }
      if (!selected && state.steps.size) { selected = state.steps.keys().next().value || null; dag.select(selected); }
    }
    paintStep(panel, selected ? state.steps.get(selected) : undefined);
    events.el.dataset.count = String(events.size);
    events.render();
  };
  const schedule = perFrame(paint);

  const refetch = async () => {
    try { state.load(await ctx.api.getRun(runId)); } catch (err) { showError(error, err); }
    schedule();
  };

  const stream = ctx.api.stream(projectId, {
    runId,
    lastEventId: 0, // replay this run's retained events, then live ones
    onState: (s, err) => ctx.connection.state(s, err),
    onEvent: (event) => {
      if (event.type === "reset") { ctx.connection.reset(); refetch(); return; }
      if (event.type === "project.deleted") { ctx.go("#/projects"); return; }
      if (event.type !== "step.delta") events.push(event);
      const wasSettled = state.settled;
      state.apply(event);
      if (!wasSettled && state.settled) {
        ctx.api.getRun(runId).then((final) => { state.metrics = final.metrics; schedule(); }, () => {});
      }
      schedule();
    },
  });
  ctx.connection.attach(stream);
  const ticker = setInterval(() => { if (!state.settled) schedule(); }, TICK_MS);
  paint();
  return () => { stream.close(); clearInterval(ticker); };
}

function legend() {
  return h("p", { class: "legend small", "aria-hidden": "true" },
    ["pending", "running", "retrying", "succeeded", "failed", "cancelled", "skipped"].map((s) => h("span", { class: `key s-${s}` }, s)));
}

/** @param {HTMLElement} el @param {RunState} state @param {number} now */
function paintMetrics(el, state, now) {
  const live = state.liveMetrics(now);
  const server = state.settled && state.metrics && state.metrics.wall_ms != null ? state.metrics : null;
  const wall = server ? server.wall_ms : live.wall;
  // The server's critical path counts reused steps' times in the retried run; the live one does not.
  const reused = [...state.steps.values()].some((s) => s.reused);
  const critical = server && !reused ? server.critical_path_ms : live.critical;
  const most = server ? server.max_parallelism : live.maxParallelism;
  const rows = [
    ["Wall time", duration(wall), "wall"],
    ["Critical path", duration(critical), "critical"],
    ["Sum of step times", duration(live.sum), "sum"],
    ["Speed-up vs one by one", wall && live.sum ? `${(live.sum / wall).toFixed(1)}×` : "–", "speedup"],
    ["Max parallelism", String(most ?? "–"), "parallelism"],
    ["Steps succeeded", `${live.done} / ${live.total}`, "done"],
  ];
  mount(el, rows.map(([label, value, key]) => h("div", { "data-metric": key }, h("dt", {}, label), h("dd", {}, value))));
}

/** @param {HTMLElement} el @param {import("./runstate.js").StepView|undefined} step */
function paintStep(el, step) {
  if (!step) { mount(el, h("p", { class: "muted" }, "Select a step in the graph.")); return; }
  const key = `${step.id}|${step.status}|${step.attempt}|${step.text.length}|${step.reused}`;
  if (el.dataset.key === key) return; // unchanged: keep the reader's scroll position
  el.dataset.key = key;
  el.dataset.step = step.id;
  const out = step.status === "succeeded" ? outputText(step.output) : step.text;
  mount(el,
    h("div", { class: "row" }, h("h3", { class: "grow" }, step.id), badge(step.status)),
    h("p", { class: "small muted" }, `${step.tool}${step.attempt ? ` · attempt ${step.attempt}` : ""}${step.needs.length ? ` · after ${step.needs.join(", ")}` : ""}${step.reason ? ` · ${step.reason}` : ""}${step.reused ? " · reused from the retried run" : ""}`),
    h("details", {}, h("summary", {}, "Arguments"), h("pre", { class: "code small" }, JSON.stringify(step.args, null, 2))),
    step.error ? h("p", { class: "error" }, `${step.error.code || "error"}: ${step.error.message || ""}`) : null,
    h("pre", { class: "code output", id: "step-output", tabIndex: 0, "aria-live": step.status === "running" ? "polite" : "off" },
      out || (TERMINAL_STEP.has(step.status) ? "(no output)" : step.status === "running" ? "…" : "")));
  const pre = el.querySelector("#step-output");
  if (pre && step.status === "running") pre.scrollTop = pre.scrollHeight;
}

/** @param {any} output */
function outputText(output) {
  if (output && typeof output.text === "string") return output.text;
  if (output && typeof output.content === "string") return output.content;
  return output == null ? "" : JSON.stringify(output, null, 2);
}
