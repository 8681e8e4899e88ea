// eventlist.js: the run's event log as a virtualized list. Only the rows in view exist in
// the DOM (a fixed row height, a spacer for the rest), so 10,000+ events scroll smoothly.
// It follows the newest event while scrolled to the bottom; scrolling up stops following.
import { h } from "./dom.js";

const ROW = 20;
const OVERSCAN = 10;

export class EventList {
  constructor() {
    /** @type {Array<{id: (number|null), type: string, data: any}>} */
    this.events = [];
    this.follow = true;
    this.spacer = h("div", { class: "spacer" });
    this.rows = h("div", { class: "rows" });
    this.el = h("div", { class: "events", id: "event-list", tabIndex: 0, role: "log", "aria-label": "Events of the run" }, this.spacer, this.rows);
    this.el.addEventListener("scroll", () => {
      this.follow = this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - ROW;
      this.render();
    });
  }

  /** @param {{id: (number|null), type: string, data: any}} event */
  push(event) { this.events.push(event); }

  get size() { return this.events.length; }

  render() {
    this.spacer.style.height = `${this.events.length * ROW}px`;
    if (this.follow) this.el.scrollTop = this.el.scrollHeight;
    const first = Math.max(0, Math.floor(this.el.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(this.events.length, Math.ceil((this.el.scrollTop + (this.el.clientHeight || 240)) / ROW) + OVERSCAN);
    this.rows.replaceChildren();
    for (let i = first; i < last; i++) {
      const e = this.events[i];
      const row = h("div", { class: "event", "data-type": e.type },
        h("span", { class: "seq" }, e.id === null ? "" : `#${e.id}`),
        h("span", { class: "type" }, e.type),
        h("span", { class: "detail" }, detail(e.data)));
      row.style.top = `${i * ROW}px`;
      this.rows.append(row);
    }
  }
}

/** A one-line summary of an event's data. @param {any} d */
function detail(d) {
  if (!d || typeof d !== "object") return "";
  const parts = [];
  if (d.step_id) parts.push(d.step_id + (d.attempt > 1 ? ` (attempt ${d.attempt})` : ""));
  if (d.reason) parts.push(`reason ${d.reason}`);
  if (d.duration_ms != null) parts.push(`${Math.round(d.duration_ms)} ms`);
  if (d.error && d.error.code) parts.push(`${d.error.code}: ${d.error.message || ""}`);
  if (d.path) parts.push(d.path);
  if (d.steps_total != null) parts.push(`${d.steps_total} steps`);
  return parts.join(" · ");
}
