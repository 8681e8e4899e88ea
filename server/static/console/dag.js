// dag.js: a run's steps as an SVG graph. Columns are dependency depths (a step sits one
// column right of its deepest need), edges run from a need to its dependents. The layout is
// built once per plan; state changes only touch the changed nodes (data-state and label),
// so a burst of events on a 100+ step run costs what changed, not the whole graph.
import { svg } from "./dom.js";

const NODE_W = 132;
const NODE_H = 34;
const GAP_X = 34;
const GAP_Y = 12;
const PAD = 10;
const FIT_MAX_W = 1100;

export class Dag {
  /** @param {(id: string) => void} onSelect */
  constructor(onSelect) {
    this.onSelect = onSelect;
    this.el = svg("svg", { id: "dag", class: "dag", role: "group", "aria-label": "Steps of the run" });
    /** @type {Map<string, SVGElement>} */ this.nodes = new Map();
    /** @type {string|null} */ this.selected = null;
  }

  /** Lay the graph out again (new plan). @param {import("./runstate.js").StepView[]} ordered */
  build(ordered) {
    this.el.replaceChildren();
    this.nodes.clear();
    /** @type {Map<string, number>} */
    const depth = new Map();
    for (const s of ordered) depth.set(s.id, Math.max(-1, ...s.needs.map((n) => depth.get(n) ?? -1)) + 1);
    /** @type {Map<number, number>} */
    const rows = new Map();
    /** @type {Map<string, {x: number, y: number}>} */
    const at = new Map();
    for (const s of ordered) {
      const col = depth.get(s.id) || 0;
      const row = rows.get(col) || 0;
      rows.set(col, row + 1);
      at.set(s.id, { x: PAD + col * (NODE_W + GAP_X), y: PAD + row * (NODE_H + GAP_Y) });
    }
    const width = PAD * 2 + (Math.max(0, ...depth.values()) + 1) * (NODE_W + GAP_X) - GAP_X;
    const height = PAD * 2 + Math.max(1, ...rows.values()) * (NODE_H + GAP_Y) - GAP_Y;
    this.el.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.el.setAttribute("width", String(width));
    this.el.setAttribute("height", String(height));
    // Small graphs shrink to fit their box; large ones keep a readable size and scroll.
    this.el.classList.toggle("fit", width <= FIT_MAX_W);
    const edges = svg("g", { class: "edges", "aria-hidden": "true" });
    for (const s of ordered) {
      const to = /** @type {{x: number, y: number}} */ (at.get(s.id));
      for (const n of s.needs) {
        const from = at.get(n);
        if (!from) continue;
        const x1 = from.x + NODE_W, y1 = from.y + NODE_H / 2, x2 = to.x, y2 = to.y + NODE_H / 2;
        const mid = (x1 + x2) / 2;
        edges.append(svg("path", { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, "data-from": n, "data-to": s.id }));
      }
    }
    this.el.append(edges);
    for (const s of ordered) {
      const p = /** @type {{x: number, y: number}} */ (at.get(s.id));
      const node = svg("g", { class: "node", transform: `translate(${p.x},${p.y})`, tabindex: "0", role: "button", "data-step": s.id });
      const title = svg("title");
      const id = svg("text", { x: 10, y: 15, class: "id" });
      id.textContent = clip(s.id, 17);
      const tool = svg("text", { x: 10, y: 28, class: "tool" });
      tool.textContent = s.tool;
      node.append(title, svg("rect", { width: NODE_W, height: NODE_H, rx: 6 }), id, tool);
      node.addEventListener("click", () => this.onSelect(s.id));
      node.addEventListener("keydown", (e) => {
        if (/** @type {KeyboardEvent} */ (e).key === "Enter" || /** @type {KeyboardEvent} */ (e).key === " ") { e.preventDefault(); this.onSelect(s.id); }
      });
      this.nodes.set(s.id, node);
      this.el.append(node);
      this.update(s);
    }
    this.select(this.selected);
  }

  /** @param {import("./runstate.js").StepView} s */
  update(s) {
    const node = this.nodes.get(s.id);
    if (!node) return;
    node.setAttribute("data-state", s.status);
    if (s.reused) node.setAttribute("data-reused", "true"); else node.removeAttribute("data-reused");
    const label = `${s.id} (${s.tool}): ${s.status}${s.reused ? " (reused)" : ""}${s.attempt > 1 ? `, attempt ${s.attempt}` : ""}`;
    node.setAttribute("aria-label", label);
    /** @type {Element} */ (node.firstChild).textContent = label;
  }

  /** @param {string|null} id */
  select(id) {
    this.selected = id;
    for (const [sid, node] of this.nodes) node.classList.toggle("selected", sid === id);
  }
}

/** @param {string} text @param {number} n */
function clip(text, n) { return text.length > n ? text.slice(0, n - 1) + "…" : text; }
