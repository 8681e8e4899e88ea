// runstate.js: a run as the console shows it, built from GET /api/workflow/runs/{id} and
// then moved forward by the run's events. Pure (no DOM): apply(event) returns whether
// something changed and collects the changed step ids in `dirty`.
//
// Events may repeat what the snapshot already shows (the stream replays the run's events
// from the start), so every change is guarded: a run never moves back (pending < planning
// < running < awaiting_review < terminal); a step ignores events of an older attempt and
// never leaves a terminal state, except that `step.cancelled` with reason `shutdown` (a
// server stopped mid-run; the run resumes elsewhere) puts it back to pending.
//
// The state is a fold: snapshot, then every event received, in order. A snapshot can be
// older than events already applied (a GET answered after the stream delivered what
// followed it: the refetch after Approve races the run's first steps), so load() keeps the
// events received so far (not `step.delta`) and folds them again over the new snapshot. The
// guards make that a no-op for what the snapshot already shows, and bring it forward for
// what it missed; the snapshot carries no event sequence number to cut the log at.

export const TERMINAL_STEP = new Set(["succeeded", "failed", "cancelled", "skipped"]);
const RUN_RANK = {
  pending: 0, planning: 1, awaiting_approval: 1.5, running: 2, awaiting_review: 2.5,
  succeeded: 3, failed: 3, cancelled: 3,
};
const DELTA_KEEP = 64 * 1024; // characters of streamed output kept per step (the tail)

/**
 * @typedef {{id: string, tool: string, args: any, needs: string[], status: string,
 *   attempt: number, started: (number|null), finished: (number|null), output: any,
 *   error: any, reason: (string|null), text: string, reused: boolean}} StepView
 */

/** @param {string|null|undefined} iso */
const t = (iso) => (iso ? Date.parse(iso) : null);

export class RunState {
  /** @param {any} run the Run object of the API */
  constructor(run) {
    /** @type {Map<string, StepView>} */ this.steps = new Map();
    /** @type {Set<string>} */ this.dirty = new Set();
    /** @type {Array<{type: string, data: any}>} the events folded so far (not step.delta) */
    this.log = [];
    this.structureChanged = true;
    this.load(run);
  }

  /**
   * A fresh snapshot (first load, a refetch, or after a `reset`), with the events received
   * so far folded over it again: a snapshot older than them does not take the run back.
   * @param {any} run
   */
  load(run) {
    this.id = run.id;
    this.projectId = run.project_id;
    this.status = run.status;
    this.prompt = run.prompt;
    this.error = run.error;
    this.created = t(run.created_at);
    this.started = t(run.started_at);
    this.finished = t(run.finished_at);
    this.metrics = run.metrics || null;
    this.plan = run.plan || null;
    this.retryOf = run.retry_of || null;
    /** @type {string|null} why a run ended cancelled (user, rejected, approval_timeout...) */
    this.reason = (run.error && run.error.reason) || null;
    this.approved = Boolean(run.approval && run.approval.approved_at);
    const old = this.steps;
    this.steps = new Map();
    const steps = run.steps && run.steps.length ? run.steps : planSteps(run.plan);
    for (const s of steps) {
      const previous = old.get(s.id);
      this.steps.set(s.id, {
        id: s.id, tool: s.tool, args: s.args || {}, needs: s.needs || [],
        status: s.status || "pending", attempt: s.attempts || 0,
        // A reused step ran in the retried run: its times are not this run's.
        started: s.reused ? null : t(s.started_at), finished: s.reused ? null : t(s.finished_at),
        output: s.output ?? null, error: s.error ?? null, reason: null,
        text: previous ? previous.text : "", reused: Boolean(s.reused),
      });
    }
    for (const event of this.log) this.fold(event);
    this.structureChanged = true;
    for (const id of this.steps.keys()) this.dirty.add(id);
  }

  get terminal() { return RUN_RANK[this.status] === 3; }

  /** No executor works on it any more: terminal, or its changes wait for review. */
  get settled() { return this.terminal || this.status === "awaiting_review"; }

  /** @param {string} status */
  runTo(status) {
    if ((RUN_RANK[status] ?? -1) <= (RUN_RANK[this.status] ?? -1)) return false;
    this.status = status;
    return true;
  }

  /** Fold one event in (and keep it for later snapshots). @param {{type: string, data: any}} event @returns {boolean} changed */
  apply(event) {
    if (event.type !== "step.delta") this.log.push(event);
    return this.fold(event);
  }

  /** @param {{type: string, data: any}} event @returns {boolean} changed */
  fold(event) {
    const d = event.data || {};
    const at = t(d.at);
    switch (event.type) {
      case "run.planning": return this.runTo("planning");
      case "run.planned":
        if (this.steps.size === 0 && d.plan) { this.setPlan(d.plan); return true; }
        return false;
      case "run.awaiting_approval":
        if (this.steps.size === 0 && d.plan) this.setPlan(d.plan);
        else if (d.plan && !this.plan) this.plan = d.plan;
        return this.runTo("awaiting_approval");
      case "run.approved":
        // The approved plan (maybe edited) replaces the one shown, unless the run is past it.
        if (this.status !== "awaiting_approval" || this.approved) return false;
        this.approved = true;
        if (d.plan) this.setPlan(d.plan);
        return true;
      case "run.started":
        if (this.started === null) this.started = at;
        return this.runTo("running");
      case "run.awaiting_review": {
        const changed = this.runTo("awaiting_review");
        if (changed) { this.finished = at; if (d.metrics) this.metrics = d.metrics; }
        return changed;
      }
      case "run.succeeded": case "run.failed": case "run.cancelled": {
        const reviewed = this.status === "awaiting_review";
        const changed = this.runTo(event.type.slice(4));
        // A snapshot does not say why a run was discarded or rejected; its event does.
        if (!changed && this.status === event.type.slice(4) && !this.reason && d.reason) this.reason = d.reason;
        if (changed) {
          if (!reviewed || this.finished === null) this.finished = at; // the steps' end, not the review's
          this.error = d.error || null;
          this.reason = d.reason || (d.error && d.error.reason) || null;
          if (d.metrics) this.metrics = d.metrics;
        }
        return changed;
      }
      default:
        return event.type.startsWith("step.") ? this.applyStep(event.type.slice(5), d, at) : false;
    }
  }

  /** @param {string} kind @param {any} d @param {number|null} at */
  applyStep(kind, d, at) {
    const step = this.steps.get(d.step_id);
    if (!step) return false;
    const attempt = Number(d.attempt || 0);
    const terminal = TERMINAL_STEP.has(step.status);
    if (kind === "delta") {
      if (attempt < step.attempt || terminal) return false;
      step.text = (step.text + (d.text || "")).slice(-DELTA_KEEP);
    } else if (kind === "started") {
      if (attempt < step.attempt || (attempt === step.attempt && step.status !== "pending")) return false;
      Object.assign(step, { status: "running", attempt, started: at, finished: null, text: "", error: null, reason: null });
    } else if (kind === "retrying") {
      const next = Number(d.next_attempt || attempt + 1);
      if (next <= step.attempt || terminal) return false;
      Object.assign(step, { status: "retrying", attempt: next, error: d.error || null });
    } else if (kind === "cancelled" && d.reason === "shutdown") {
      if (attempt < step.attempt || terminal) return false;
      Object.assign(step, { status: "pending", reason: "shutdown" });
    } else if (TERMINAL_STEP.has(kind)) {
      if (terminal || (attempt && attempt < step.attempt)) return false;
      Object.assign(step, { status: kind, finished: at, reason: d.reason || null });
      if (attempt) step.attempt = Math.max(step.attempt, attempt);
      if (kind === "succeeded") { step.output = d.output ?? null; step.reused = Boolean(d.reused); }
      if (kind === "failed") step.error = d.error || null;
    } else {
      return false;
    }
    this.dirty.add(step.id);
    return true;
  }

  /** Show a plan's steps, all pending (a new or an approved, maybe edited, plan). @param {any} plan */
  setPlan(plan) {
    this.plan = plan;
    this.steps = new Map();
    for (const s of planSteps(plan)) {
      this.steps.set(s.id, { id: s.id, tool: s.tool, args: s.args || {}, needs: s.needs || [], status: "pending",
        attempt: 0, started: null, finished: null, output: null, error: null, reason: null, text: "", reused: false });
    }
    this.structureChanged = true;
  }

  /** The dirty step ids since the last call. */
  takeDirty() {
    const ids = [...this.dirty];
    this.dirty.clear();
    return ids;
  }

  /**
   * Live metrics: wall time, critical path (the longest chain of step durations along
   * `needs`), and max parallelism (most steps running at once), with `now` for running ones.
   * @param {number} now
   */
  liveMetrics(now) {
    const end = (/** @type {StepView} */ s) => s.finished ?? (s.status === "running" || s.status === "retrying" ? now : null);
    /** @type {Array<[number, number]>} */
    const marks = [];
    /** @type {Map<string, number>} */
    const chain = new Map();
    for (const s of this.ordered()) {
      const stop = end(s);
      const own = s.started !== null && stop !== null ? Math.max(0, stop - s.started) : 0;
      const before = Math.max(0, ...s.needs.map((n) => chain.get(n) || 0));
      chain.set(s.id, before + own);
      if (s.started !== null && stop !== null) { marks.push([s.started, 1]); marks.push([stop, -1]); }
    }
    marks.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const sum = [...this.steps.values()].reduce((total, s) => {
      const stop = end(s);
      return total + (s.started !== null && stop !== null ? Math.max(0, stop - s.started) : 0);
    }, 0);
    let running = 0;
    let most = 0;
    for (const [, delta] of marks) { running += delta; most = Math.max(most, running); }
    const wallEnd = this.finished ?? (this.terminal ? null : now);
    return {
      wall: this.started !== null && wallEnd !== null ? wallEnd - this.started : null,
      critical: Math.max(0, ...chain.values()),
      maxParallelism: most,
      sum,
      done: [...this.steps.values()].filter((s) => s.status === "succeeded").length,
      total: this.steps.size,
    };
  }

  /** Steps in dependency order (needs first; ties in plan order). @returns {StepView[]} */
  ordered() {
    /** @type {StepView[]} */
    const out = [];
    const seen = new Set();
    const visit = (/** @type {StepView} */ s, depth = 0) => {
      if (seen.has(s.id) || depth > 10_000) return;
      seen.add(s.id);
      for (const n of s.needs) { const need = this.steps.get(n); if (need) visit(need, depth + 1); }
      out.push(s);
    };
    for (const s of this.steps.values()) visit(s);
    return out;
  }
}

/** @param {any} plan */
function planSteps(plan) {
  return plan && Array.isArray(plan.steps) ? plan.steps : [];
}
