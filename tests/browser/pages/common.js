// Shared by the test pages: query parameters, a report the test reads
// (window.report), and a visible log for the screenshots.
export const params = new URLSearchParams(location.search);
export const api = params.get("api");

export const report = { events: [], states: [], opens: 0, errors: 0, done: false, failure: null };
window.report = report;

export const TYPES = [
  "run.created", "run.planning", "run.planned", "run.started", "step.started", "step.delta",
  "step.retrying", "step.succeeded", "step.failed", "step.cancelled", "step.skipped",
  "run.succeeded", "run.failed", "run.cancelled", "file.changed", "file.moved",
  "file.deleted", "project.updated", "project.deleted", "reset",
];
export const TERMINAL = ["run.succeeded", "run.failed", "run.cancelled"];

const log = document.getElementById("log");
const status = document.getElementById("status");

export function show(line) {
  log.textContent += line + "\n";
}

export function setStatus(text) {
  status.textContent = text;
}

export function fail(error) {
  report.failure = String(error && error.stack ? error.stack : error);
  setStatus("FAILED: " + report.failure);
}
