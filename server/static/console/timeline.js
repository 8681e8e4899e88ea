// timeline.js: a Gantt-style chart of step start and end times, one row per step (in start
// order), bars coloured by state; overlapping bars are the parallelism. Redrawn whole per
// frame while the run is live (a bar per step: cheap at a few hundred steps).
import { svg } from "./dom.js";

const ROW = 16;
const LABEL = 130;
const WIDTH = 760;

export class Timeline {
  constructor() {
    this.el = svg("svg", { id: "timeline", class: "timeline", role: "img", "aria-label": "Timeline of the steps" });
  }

  /** @param {import("./runstate.js").RunState} state @param {number} now */
  render(state, now) {
    const steps = [...state.steps.values()].filter((s) => s.started !== null)
      .sort((a, b) => /** @type {number} */ (a.started) - /** @type {number} */ (b.started));
    const t0 = state.started ?? (steps.length ? steps[0].started : now) ?? now;
    const ends = steps.map((s) => s.finished ?? now);
    const t1 = Math.max(t0 + 1, state.finished ?? 0, ...ends);
    const span = t1 - t0;
    const plot = WIDTH - LABEL - 10;
    const height = Math.max(1, steps.length) * ROW + 22;
    this.el.replaceChildren();
    this.el.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
    this.el.setAttribute("width", String(WIDTH));
    this.el.setAttribute("height", String(height));
    steps.forEach((s, i) => {
      const y = i * ROW;
      const x = LABEL + ((/** @type {number} */ (s.started) - t0) / span) * plot;
      const w = Math.max(2, (((s.finished ?? now) - /** @type {number} */ (s.started)) / span) * plot);
      const label = svg("text", { x: 4, y: y + 12, class: "label" });
      label.textContent = s.id.length > 18 ? s.id.slice(0, 17) + "…" : s.id;
      const bar = svg("rect", { x, y: y + 3, width: w, height: ROW - 5, rx: 2, class: "bar", "data-state": s.status, "data-step": s.id });
      const title = svg("title");
      title.textContent = `${s.id}: ${s.status}, ${Math.round((s.finished ?? now) - /** @type {number} */ (s.started))} ms`;
      bar.append(title);
      this.el.append(label, bar);
    });
    const axis = svg("text", { x: WIDTH - 10, y: height - 6, class: "axis", "text-anchor": "end" });
    axis.textContent = `${(span / 1000).toFixed(1)} s`;
    const zero = svg("text", { x: LABEL, y: height - 6, class: "axis" });
    zero.textContent = "0 s";
    this.el.append(axis, zero);
  }
}
