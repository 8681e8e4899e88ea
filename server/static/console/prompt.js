// prompt.js: the prompt box. "Preview plan" asks POST /api/workflow/plan for the intent and
// the plan (nothing runs) and shows the plan as editable JSON; "Run" starts a run from the
// plan when one is shown (edited or written by hand), else from the prompt; "Ask for
// approval" sends options.approval = "plan" (the run waits for Approve); "Review changes"
// sends options.changes = "review" (its file writes wait for Apply or Discard). Errors are
// shown in the box: a server that cannot plan free-form prompts (422 model_required) gets an
// explanation and the plan editor.
import { h, mount, errorBox, showError } from "./dom.js";

const EXAMPLE_PLAN = {
  steps: [
    { id: "read", tool: "vfs.read", args: { path: "README.md" }, needs: [] },
    { id: "summary", tool: "ai.generate", args: { prompt: "Summarize: {{steps.read.output.content}}" }, needs: ["read"] },
    { id: "write", tool: "vfs.write", args: { path: "SUMMARY.md", content: "{{steps.summary.output.text}}" }, needs: ["summary"] },
  ],
};

export class PromptBox {
  /** @param {any} ctx @param {string} projectId */
  constructor(ctx, projectId) {
    this.ctx = ctx;
    this.projectId = projectId;
    this.prompt = h("textarea", { id: "prompt", rows: 3, placeholder: "add input validation to every handler in src/", "aria-label": "Prompt" });
    this.planText = h("textarea", { id: "plan-json", rows: 10, spellcheck: false, "aria-label": "Plan (JSON)" });
    this.intent = h("div", { class: "intent small", id: "intent" });
    this.steps = h("ol", { class: "plan-steps small", id: "plan-steps" });
    this.planBox = h("div", { class: "plan-box", hidden: true }, this.intent,
      h("label", { for: "plan-json" }, "Plan (JSON, editable)"), this.planText, this.steps);
    this.error = errorBox();
    this.error.id = "prompt-error";
    this.runButton = h("button", { type: "button", id: "run", class: "primary", onclick: () => this.run() }, "Run");
    this.previewButton = h("button", { type: "button", id: "preview", onclick: () => this.preview() }, "Preview plan");
    this.approval = h("input", { type: "checkbox", id: "ask-approval" });
    this.review = h("input", { type: "checkbox", id: "ask-review" });
    this.planText.addEventListener("input", () => this.listSteps());
    this.el = h("div", { class: "prompt" },
      this.prompt,
      h("div", { class: "row" }, this.previewButton, this.runButton,
        h("button", { type: "button", id: "write-plan", class: "link", onclick: () => this.writePlan() }, "Write a plan"),
        h("button", { type: "button", id: "clear-plan", class: "link", onclick: () => this.clearPlan() }, "Clear plan"),
        h("label", { class: "check small", for: "ask-approval", title: "The run is planned, then waits for you to approve, edit or reject the plan" },
          this.approval, " Ask for approval before running"),
        h("label", { class: "check small", for: "ask-review", title: "The run's file writes wait for you to review, apply or discard them" },
          this.review, " Review changes before applying")),
      this.error, this.planBox);
    this.prompt.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); this.run(); }
    });
  }

  /** @param {boolean} busy */
  busy(busy) { this.runButton.disabled = busy; this.previewButton.disabled = busy; }

  async preview() {
    showError(this.error, null);
    const prompt = this.prompt.value.trim();
    if (!prompt) { showError(this.error, { code: "validation_failed", message: "Write a prompt first." }); return; }
    this.busy(true);
    try {
      const { intent, plan } = await this.ctx.api.plan(this.projectId, prompt);
      mount(this.intent, h("strong", {}, "Intent: "), summary(intent));
      this.showPlan(plan);
    } catch (error) {
      showError(this.error, error);
      if (error && error.code === "model_required" && this.planBox.hidden) this.writePlan();
    } finally { this.busy(false); }
  }

  writePlan() {
    if (!this.planText.value.trim()) this.planText.value = JSON.stringify(EXAMPLE_PLAN, null, 2);
    mount(this.intent);
    this.planBox.hidden = false;
    this.listSteps();
    this.planText.focus();
  }

  clearPlan() { this.planText.value = ""; this.planBox.hidden = true; showError(this.error, null); }

  /** @param {any} plan */
  showPlan(plan) {
    this.planText.value = JSON.stringify(plan, null, 2);
    this.planBox.hidden = false;
    this.listSteps();
  }

  listSteps() {
    let plan;
    try { plan = JSON.parse(this.planText.value); } catch { mount(this.steps, h("li", { class: "muted" }, "(not valid JSON yet)")); return; }
    const steps = plan && Array.isArray(plan.steps) ? plan.steps : [];
    mount(this.steps, steps.map((s) => h("li", {}, h("code", {}, s.id), ` ${s.tool}`,
      s.needs && s.needs.length ? h("span", { class: "muted" }, ` after ${s.needs.join(", ")}`) : null)));
  }

  async run() {
    showError(this.error, null);
    /** @type {Record<string, any>} */
    const request = { projectId: this.projectId, idempotencyKey: crypto.randomUUID() };
    /** @type {Record<string, string>} */
    const options = {};
    if (this.approval.checked) options.approval = "plan";
    if (this.review.checked) options.changes = "review";
    if (Object.keys(options).length) request.options = options;
    if (!this.planBox.hidden && this.planText.value.trim()) {
      try { request.plan = JSON.parse(this.planText.value); } catch (error) {
        showError(this.error, { code: "invalid_json", message: `The plan is not valid JSON: ${error.message}` });
        return;
      }
    } else if (this.prompt.value.trim()) {
      request.prompt = this.prompt.value.trim();
    } else {
      showError(this.error, { code: "validation_failed", message: "Write a prompt or a plan first." });
      return;
    }
    this.busy(true);
    try {
      const run = await this.ctx.api.startRun(request);
      this.ctx.go(`#/p/${encodeURIComponent(this.projectId)}/runs/${encodeURIComponent(run.id)}`);
    } catch (error) {
      showError(this.error, error);
      if (error && error.code === "model_required" && this.planBox.hidden) this.writePlan();
    } finally { this.busy(false); }
  }
}

/** The intent as one line: its scalar fields. @param {any} intent */
function summary(intent) {
  if (!intent || typeof intent !== "object") return String(intent);
  return Object.entries(intent)
    .filter(([, v]) => v !== null && typeof v !== "object")
    .map(([k, v]) => `${k}: ${v}`).join(" · ") || JSON.stringify(intent);
}
