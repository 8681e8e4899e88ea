// project.js: one project: its files (files.js), the prompt box (prompt.js) and its run
// history. A project stream keeps the file tree and the history current (debounced
// refetches on file.* and run.* events).
import { h, mount, badge, duration, when, ms, errorBox } from "./dom.js";
import { FilePane } from "./files.js";
import { PromptBox } from "./prompt.js";

export const NAME = "project";
const REFRESH_DELAY_MS = 250;

/** @param {any} ctx @param {HTMLElement} main @param {string[]} params */
export async function render(ctx, main, [projectId]) {
  const project = await ctx.api.getProject(projectId);
  ctx.crumbs([["Projects", "#/projects"], [project.name, null]]);
  const files = new FilePane(ctx.api, projectId);
  const prompt = new PromptBox(ctx, projectId);
  const runs = h("tbody", { id: "run-rows" });
  const runsError = errorBox();

  const loadRuns = async () => {
    try {
      const page = await ctx.api.listRuns({ projectId, limit: 50 });
      mount(runs, page.items.length ? page.items.map((run) => runRow(projectId, run, ctx.user)) :
        h("tr", {}, h("td", { colSpan: 5, class: "muted" }, "No run yet.")));
    } catch (error) { mount(runsError, String(error.message)); runsError.hidden = false; }
  };

  mount(main,
    h("div", { class: "project-grid" },
      h("section", { class: "card files", "aria-label": "Files" }, h("h2", {}, "Files"), files.el),
      h("div", { class: "stack" },
        h("section", { class: "card", "aria-label": "Prompt" }, h("h2", {}, "Run"), prompt.el),
        h("section", { class: "card", "aria-label": "Run history" },
          h("h2", {}, "Runs"), runsError,
          h("table", { class: "runs" },
            h("thead", {}, h("tr", {}, ["Run", "Status", "Started", "Duration", "By"].map((t) => h("th", { scope: "col" }, t)))),
            runs)))));
  await Promise.all([files.load(), loadRuns()]);

  /** @type {ReturnType<typeof setTimeout>|undefined} */
  let runsTimer;
  /** @type {ReturnType<typeof setTimeout>|undefined} */
  let filesTimer;
  const stream = ctx.api.stream(projectId, {
    onState: (state, error) => ctx.connection.state(state, error),
    onEvent: (event) => {
      if (event.type.startsWith("run.") || event.type === "reset") {
        clearTimeout(runsTimer);
        runsTimer = setTimeout(loadRuns, REFRESH_DELAY_MS);
      }
      if (event.type.startsWith("file.") || event.type === "reset") {
        clearTimeout(filesTimer);
        filesTimer = setTimeout(() => files.load(), REFRESH_DELAY_MS);
      }
      if (event.type === "reset") ctx.connection.reset();
      if (event.type === "project.deleted") ctx.go("#/projects");
    },
  });
  ctx.connection.attach(stream);
  return () => { stream.close(); clearTimeout(runsTimer); clearTimeout(filesTimer); };
}

/** @param {string} projectId @param {any} run @param {any} user */
function runRow(projectId, run, user) {
  const started = ms(run.started_at);
  const finished = ms(run.finished_at);
  const took = run.metrics && run.metrics.wall_ms != null ? run.metrics.wall_ms
    : started && finished ? finished - started : null;
  const label = run.prompt ? run.prompt : `plan of ${run.steps.length} steps`;
  return h("tr", { "data-run": run.id },
    h("td", {}, h("a", { href: `#/p/${encodeURIComponent(projectId)}/runs/${encodeURIComponent(run.id)}` }, label)),
    h("td", {}, badge(run.status)),
    h("td", { class: "small" }, when(run.started_at || run.created_at)),
    h("td", { class: "num" }, run.finished_at ? duration(took) : run.started_at ? "running" : "–"),
    h("td", { class: "small" }, user ? user.email : "you"));
}
