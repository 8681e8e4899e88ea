// review.js: the run screen's file review and undo. ReviewPanel shows while a run waits in
// `awaiting_review`: each change of its changeset with its diff and a checkbox, and Apply
// all, Apply chosen and Discard. UndoPanel shows on a finished run that may have changed
// files: "Undo" reverts the run (a run that changed none answers with no path). A run's
// stream carries no `file.*` events (the run filter keeps run and step events), so a run
// discarded in review offers Undo only when part of it was applied from this page.
// A 409 `conflict` lists the
// files that changed since, each with what changed (conflicts.js). Both only call the API;
// the run's events (run.succeeded, run.cancelled) move the screen.
import { h, mount, errorBox, showError } from "./dom.js";
import { parseUnified, renderDiff, diffStat } from "./diff.js";
import { explainConflict } from "./conflicts.js";

/** @param {number|null} n */
const size = (n) => (n === null ? "–" : n < 1024 ? `${n} B` : `${(n / 1024).toFixed(1)} KB`);

export class ReviewPanel {
  /**
   * @param {any} ctx @param {string} projectId @param {string} runId
   * @param {(paths: string[]) => void} onApplied
   */
  constructor(ctx, projectId, runId, onApplied) {
    this.ctx = ctx;
    this.projectId = projectId;
    this.runId = runId;
    this.onApplied = onApplied;
    this.loaded = false;
    /** @type {any[]} */ this.changes = [];
    this.error = errorBox();
    this.error.id = "review-error";
    this.status = h("p", { class: "small muted", id: "review-status", role: "status" });
    this.list = h("div", { id: "changes" });
    this.conflict = h("div", { class: "conflict-box", id: "review-conflict", hidden: true });
    this.applyAll = h("button", { type: "button", id: "apply-all", class: "primary", onclick: () => this.apply(null) }, "Apply all");
    this.applyChosen = h("button", { type: "button", id: "apply-chosen", onclick: () => this.apply(this.chosen()) }, "Apply chosen");
    this.discardButton = h("button", { type: "button", id: "discard", class: "danger", onclick: () => this.discard() }, "Discard");
    this.el = h("section", { class: "card review", id: "review", "aria-label": "Review changes", hidden: true },
      h("h2", {}, "Review the run's changes"),
      h("p", { class: "small muted" }, "The run's file writes wait here: nothing in the project changed yet. Apply them all, only the ticked ones, or discard them."),
      h("div", { class: "row" }, this.applyAll, this.applyChosen, this.discardButton, this.status),
      this.error, this.conflict, this.list);
  }

  /** @param {import("./runstate.js").RunState} state */
  paint(state) {
    const waiting = state.status === "awaiting_review";
    this.el.hidden = !waiting;
    if (waiting && !this.loaded) { this.loaded = true; this.load(); }
  }

  async load() {
    try {
      this.changes = (await this.ctx.api.runChanges(this.runId)).items;
    } catch (error) { showError(this.error, error); return; }
    mount(this.list, this.changes.length ? this.changes.map((c) => this.changeView(c))
      : h("p", { class: "muted" }, "The run staged no change."));
    this.status.textContent = `${this.changes.length} change${this.changes.length === 1 ? "" : "s"} to review`;
  }

  /** @param {any} c a RunChange */
  changeView(c) {
    const id = `choose-${this.changes.indexOf(c)}`;
    const rows = c.diff ? parseUnified(c.diff) : [];
    const stat = diffStat(rows);
    const what = c.kind === "move" ? `moved from ${c.from}` : c.kind;
    return h("article", { class: "change", "data-path": c.path, "data-kind": c.kind },
      h("div", { class: "row change-head" },
        h("input", { type: "checkbox", id, class: "choose", checked: true, value: c.path }),
        h("label", { for: id, class: "check grow" }, h("code", {}, c.path)),
        h("span", { class: `kind k-${c.kind}` }, what),
        c.diff ? h("span", { class: "small stat" }, h("span", { class: "plus" }, `+${stat.added}`), " ", h("span", { class: "minus" }, `−${stat.removed}`)) : null,
        h("span", { class: "small muted" }, `${size(c.size_before)} → ${size(c.size_after)}`)),
      c.binary ? h("p", { class: "small muted" }, "Binary content: not shown.")
        : rows.length ? renderDiff(rows, `Changes to ${c.path}`) : h("p", { class: "small muted" }, "No line changes."),
      c.diff_truncated ? h("p", { class: "small muted" }, "The diff is cut short: the file is large.") : null);
  }

  /** The ticked paths. @returns {string[]} */
  chosen() {
    return [...this.list.querySelectorAll("input.choose")].filter((i) => /** @type {HTMLInputElement} */ (i).checked)
      .map((i) => /** @type {HTMLInputElement} */ (i).value);
  }

  /** @param {boolean} busy */
  busy(busy) { for (const b of [this.applyAll, this.applyChosen, this.discardButton]) b.disabled = busy; }

  /** @param {string[]|null} paths (null: all) */
  async apply(paths) {
    showError(this.error, null);
    this.conflict.hidden = true;
    if (paths && !paths.length) { showError(this.error, { code: "validation_failed", message: "Tick the changes to apply first." }); return; }
    this.busy(true);
    try {
      const result = await this.ctx.api.applyChanges(this.runId, paths ?? undefined);
      this.onApplied(result.applied);
      this.status.textContent = `Applied ${result.applied.length}; ${result.remaining} left to review.`;
      if (result.remaining > 0) await this.load();
    } catch (error) {
      if (error && error.code === "conflict" && error.details && Array.isArray(error.details.paths)) await this.showConflict(error.details.paths, paths);
      else showError(this.error, error);
    } finally { this.busy(false); }
  }

  /** @param {string[]} paths the conflicting ones @param {string[]|null} tried */
  async showConflict(paths, tried) {
    const base = new Map(this.changes.map((c) => [c.path, c.base_version]));
    for (const box of this.list.querySelectorAll("input.choose")) {
      const input = /** @type {HTMLInputElement} */ (box);
      const hit = paths.includes(input.value);
      if (hit) input.checked = false;
      /** @type {HTMLElement} */ (input.closest(".change")).classList.toggle("conflicted", hit);
    }
    const others = (tried ?? this.changes.map((c) => c.path)).filter((p) => !paths.includes(p));
    mount(this.conflict,
      h("h3", {}, "Nothing was applied: these files changed since the run read them"),
      await explainConflict(this.ctx.api, this.projectId, paths, (path) => base.get(path) ?? null, "the run read"),
      h("div", { class: "row" },
        others.length ? h("button", { type: "button", id: "apply-others", class: "primary", onclick: () => this.apply(others) }, `Apply the other ${others.length}`) : null,
        h("span", { class: "small muted" }, "Their boxes are unticked; Discard drops the whole changeset.")));
    this.conflict.hidden = false;
    this.conflict.querySelector("button")?.focus();
  }

  async discard() {
    showError(this.error, null);
    this.busy(true);
    try {
      await this.ctx.api.discardChanges(this.runId);
      this.status.textContent = "Discarded.";
    } catch (error) { showError(this.error, error); } finally { this.busy(false); }
  }
}

export class UndoPanel {
  /** @param {any} ctx @param {string} projectId @param {string} runId */
  constructor(ctx, projectId, runId) {
    this.ctx = ctx;
    this.projectId = projectId;
    this.runId = runId;
    /** @type {Set<string>} */ this.paths = new Set();
    this.error = errorBox();
    this.error.id = "undo-error";
    this.result = h("p", { class: "small", id: "undo-result", role: "status" });
    this.conflict = h("div", { class: "conflict-box", id: "undo-conflict", hidden: true });
    this.button = h("button", { type: "button", id: "undo", onclick: () => this.undo() }, "Undo this run");
    this.summary = h("span", { class: "small muted" }, "Puts every file the run changed back as it was before it.");
    this.el = h("div", { class: "undo", id: "undo-box", hidden: true },
      h("div", { class: "row" }, this.button, this.summary), this.error, this.result, this.conflict);
  }

  /** Paths applied from this page's review. @param {string[]} paths */
  applied(paths) { for (const p of paths) this.paths.add(p); }

  /** @param {import("./runstate.js").RunState} state */
  paint(state) {
    const neverRan = state.reason === "rejected" || state.reason === "approval_timeout";
    const discardedWhole = state.reason === "discarded" && this.paths.size === 0;
    this.el.hidden = !state.terminal || neverRan || discardedWhole;
  }

  async undo() {
    showError(this.error, null);
    this.conflict.hidden = true;
    this.button.disabled = true;
    try {
      const result = await this.ctx.api.revertRun(this.runId);
      mount(this.result, result.paths.length ? ["Undone: ", result.paths.map((p, i) => [i ? ", " : "", h("code", {}, p)])]
        : "Nothing to undo: the run changed no file, or it was undone already.");
    } catch (error) {
      if (error && error.code === "conflict" && error.details && Array.isArray(error.details.paths)) {
        mount(this.conflict, h("h3", {}, "Not undone: these files changed since the run wrote them"),
          await explainConflict(this.ctx.api, this.projectId, error.details.paths, (_path, versions) => {
            const mine = versions.find((/** @type {any} */ v) => v.run_id === this.runId);
            return mine ? mine.version : null;
          }, "the run wrote"));
        this.conflict.hidden = false;
      } else {
        showError(this.error, error);
      }
    } finally { this.button.disabled = false; }
  }
}
