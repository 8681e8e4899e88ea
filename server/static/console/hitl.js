// hitl.js: the run screen's human-in-the-loop controls. ApprovalPanel shows while a run
// waits in `awaiting_approval`: Approve, Edit plan (the plan as JSON; approve with the
// edited plan, a 400 invalid_plan shows its details) and Reject. RetryPanel shows on a
// failed or cancelled run: "Retry from the failed step" (POST .../retry); a 409 conflict
// lists the changed paths and offers "Retry anyway" (force=true). Both only call the API;
// the run's events (run.approved, run.cancelled) move the screen, and `refresh` re-reads it.
import { h, mount, errorBox, showError } from "./dom.js";

export class ApprovalPanel {
  /** @param {any} ctx @param {string} runId @param {() => void} refresh */
  constructor(ctx, runId, refresh) {
    this.ctx = ctx;
    this.runId = runId;
    this.refresh = refresh;
    this.editing = false;
    this.error = errorBox();
    this.error.id = "approval-error";
    this.editor = h("textarea", { id: "approval-plan", rows: 12, spellcheck: false, "aria-label": "Plan to approve (JSON)" });
    this.approveButton = h("button", { type: "button", id: "approve", class: "primary", onclick: () => this.approve(false) }, "Approve");
    this.editButton = h("button", { type: "button", id: "edit-plan", onclick: () => this.edit() }, "Edit plan");
    this.rejectButton = h("button", { type: "button", id: "reject", class: "danger", onclick: () => this.reject() }, "Reject");
    this.approveEdited = h("button", { type: "button", id: "approve-edited", class: "primary", onclick: () => this.approve(true) }, "Approve edited plan");
    this.editBox = h("div", { class: "plan-box", hidden: true },
      h("label", { for: "approval-plan" }, "Plan (JSON, editable)"), this.editor,
      h("div", { class: "row" }, this.approveEdited,
        h("button", { type: "button", id: "cancel-edit", class: "link", onclick: () => this.stopEditing() }, "Discard edits")));
    this.el = h("section", { class: "card approval", id: "approval", "aria-label": "Approval", hidden: true },
      h("h2", {}, "Waiting for your approval"),
      h("p", { class: "small muted" }, "This run was planned and waits for approval before any step runs. Check the steps below."),
      h("div", { class: "row" }, this.approveButton, this.editButton, this.rejectButton),
      this.error, this.editBox);
    /** @type {any} */ this.plan = null;
  }

  /** @param {import("./runstate.js").RunState} state */
  paint(state) {
    const waiting = state.status === "awaiting_approval" && !state.approved;
    this.el.hidden = !waiting;
    this.plan = state.plan;
  }

  /** @param {boolean} busy */
  busy(busy) {
    for (const b of [this.approveButton, this.editButton, this.rejectButton, this.approveEdited]) b.disabled = busy;
  }

  edit() {
    if (!this.editing) this.editor.value = JSON.stringify(this.plan || { steps: [] }, null, 2);
    this.editing = true;
    this.editBox.hidden = false;
    this.editor.focus();
  }

  stopEditing() { this.editing = false; this.editBox.hidden = true; showError(this.error, null); }

  /** @param {boolean} edited */
  async approve(edited) {
    showError(this.error, null);
    let plan;
    if (edited) {
      try { plan = JSON.parse(this.editor.value); } catch (error) {
        showError(this.error, { code: "invalid_json", message: `The plan is not valid JSON: ${error.message}` });
        return;
      }
    }
    this.busy(true);
    try {
      await this.ctx.api.approveRun(this.runId, plan);
      this.stopEditing();
      this.refresh();
    } catch (error) {
      showError(this.error, error);
      if (error && error.code === "not_awaiting_approval") this.refresh();
    } finally { this.busy(false); }
  }

  async reject() {
    showError(this.error, null);
    this.busy(true);
    try {
      await this.ctx.api.rejectRun(this.runId);
      this.stopEditing();
      this.refresh();
    } catch (error) {
      showError(this.error, error);
      if (error && error.code === "not_awaiting_approval") this.refresh();
    } finally { this.busy(false); }
  }
}

export class RetryPanel {
  /** @param {any} ctx @param {string} projectId @param {string} runId */
  constructor(ctx, projectId, runId) {
    this.ctx = ctx;
    this.projectId = projectId;
    this.runId = runId;
    this.error = errorBox();
    this.error.id = "retry-error";
    this.retryButton = h("button", { type: "button", id: "retry", class: "primary", onclick: () => this.retry(false) }, "Retry from the failed step");
    this.forceButton = h("button", { type: "button", id: "retry-force", class: "danger", onclick: () => this.retry(true) }, "Retry anyway");
    this.paths = h("ul", { class: "small", id: "retry-paths" });
    this.conflict = h("div", { class: "conflict-box", id: "retry-conflict", hidden: true },
      h("p", {}, "Files that reused steps read have changed since this run:"), this.paths,
      h("p", { class: "small muted" }, "Retrying anyway reuses the old outputs as they were."), this.forceButton);
    this.el = h("div", { class: "retry", id: "retry-box", hidden: true },
      h("div", { class: "row" }, this.retryButton,
        h("span", { class: "small muted" }, "A new run: succeeded steps are reused, the rest run again.")),
      this.error, this.conflict);
  }

  /** @param {import("./runstate.js").RunState} state */
  paint(state) {
    // A run discarded in review succeeded in every step: there is nothing to retry.
    this.el.hidden = !(state.status === "failed" || state.status === "cancelled") || state.reason === "discarded";
  }

  /** @param {boolean} force */
  async retry(force) {
    showError(this.error, null);
    this.retryButton.disabled = true;
    this.forceButton.disabled = true;
    try {
      const run = await this.ctx.api.retryRun(this.runId, { force });
      this.ctx.go(`#/p/${encodeURIComponent(this.projectId)}/runs/${encodeURIComponent(run.id)}`);
    } catch (error) {
      const paths = error && error.code === "conflict" && error.details && Array.isArray(error.details.paths) ? error.details.paths : null;
      if (paths) {
        mount(this.paths, paths.map((/** @type {string} */ p) => h("li", {}, h("code", {}, p))));
        this.conflict.hidden = false;
      } else {
        showError(this.error, error);
      }
    } finally {
      this.retryButton.disabled = false;
      this.forceButton.disabled = false;
    }
  }
}
