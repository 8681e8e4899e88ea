// diff.js: line diffs as the console shows them. parseUnified() reads the server's unified
// diffs (GET .../changes); diffLines() compares two texts in the browser (what changed in a
// conflicting file); renderDiff() draws either as rows with old and new line numbers, a
// +/- sign column (colour is not the only signal) and long unchanged stretches folded.
// Pure except renderDiff (DOM through h(), text through textContent only).
import { h } from "./dom.js";

/** @typedef {{op: ("+"|"-"|" "|"@"|"~"), text: string, old: (number|null), new: (number|null)}} DiffRow
 *  op: added, removed, context, hunk header, or a note ("\ No newline at end of file"). */

const HUNK = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$/;
const MAX_CELLS = 4_000_000; // diffLines compares at most this many line pairs
const CONTEXT = 3; // unchanged lines kept around a change when folding
const MAX_ROWS = 3000; // rows drawn per diff; the rest is summarised

/** Rows of a unified diff (file header lines `---`/`+++` left out). @param {string} text @returns {DiffRow[]} */
export function parseUnified(text) {
  /** @type {DiffRow[]} */
  const rows = [];
  let oldNo = 0;
  let newNo = 0;
  let inHunk = false;
  for (const line of text.split("\n")) {
    const hunk = HUNK.exec(line);
    if (hunk) {
      oldNo = Number(hunk[1]);
      newNo = Number(hunk[2]);
      inHunk = true;
      rows.push({ op: "@", text: line, old: null, new: null });
    } else if (!inHunk) {
      continue; // "--- a/x" / "+++ b/x": the path is shown above the diff
    } else if (line.startsWith("+")) {
      rows.push({ op: "+", text: line.slice(1), old: null, new: newNo++ });
    } else if (line.startsWith("-")) {
      rows.push({ op: "-", text: line.slice(1), old: oldNo++, new: null });
    } else if (line.startsWith("\\")) {
      rows.push({ op: "~", text: line, old: null, new: null });
    } else if (line.startsWith(" ")) {
      rows.push({ op: " ", text: line.slice(1), old: oldNo++, new: newNo++ });
    }
  }
  return rows;
}

/**
 * The line diff of two texts (longest common subsequence), or null when they are too large
 * to compare here. @param {string} before @param {string} after @returns {DiffRow[]|null}
 */
export function diffLines(before, after) {
  const a = before === "" ? [] : before.replace(/\n$/, "").split("\n");
  const b = after === "" ? [] : after.replace(/\n$/, "").split("\n");
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) { endA--; endB--; }
  const n = endA - start;
  const m = endB - start;
  if ((n + 1) * (m + 1) > MAX_CELLS) return null;
  // lcs[i][j]: the longest common subsequence of a[start+i..endA) and b[start+j..endB)
  const width = m + 1;
  const lcs = new Uint32Array((n + 1) * width);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * width + j] = a[start + i] === b[start + j]
        ? lcs[(i + 1) * width + j + 1] + 1
        : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
    }
  }
  /** @type {DiffRow[]} */
  const rows = [];
  for (let k = 0; k < start; k++) rows.push({ op: " ", text: a[k], old: k + 1, new: k + 1 });
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[start + i] === b[start + j]) {
      rows.push({ op: " ", text: a[start + i], old: start + i + 1, new: start + j + 1 }); i++; j++;
    } else if (i < n && (j === m || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])) {
      rows.push({ op: "-", text: a[start + i], old: start + i + 1, new: null }); i++; // removals first
    } else {
      rows.push({ op: "+", text: b[start + j], old: null, new: start + j + 1 }); j++;
    }
  }
  for (let k = 0; k < a.length - endA; k++) {
    rows.push({ op: " ", text: a[endA + k], old: endA + k + 1, new: endB + k + 1 });
  }
  return rows;
}

/**
 * Rows as an element: a grid of old number, new number, sign and text. Unchanged stretches
 * longer than twice the context are folded into one "n unchanged lines" row.
 * @param {DiffRow[]} rows @param {string} label (for screen readers) @returns {HTMLElement}
 */
export function renderDiff(rows, label) {
  const changed = rows.map((r) => r.op === "+" || r.op === "-");
  const near = (/** @type {number} */ i) => {
    for (let k = Math.max(0, i - CONTEXT); k <= Math.min(rows.length - 1, i + CONTEXT); k++) if (changed[k]) return true;
    return false;
  };
  const out = [];
  let folded = 0;
  let drawn = 0;
  const flush = () => {
    if (folded) out.push(note(`⋯ ${folded} unchanged line${folded > 1 ? "s" : ""}`));
    folded = 0;
  };
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    if (r.op === " " && !near(i)) { folded++; continue; }
    flush();
    if (drawn++ >= MAX_ROWS) {
      out.push(note(`⋯ ${rows.length - i} more lines not drawn`));
      break;
    }
    const kind = { "+": "add", "-": "del", " ": "ctx", "@": "hunk", "~": "note" }[r.op];
    out.push(h("div", { class: `dl ${kind}` },
      h("span", { class: "ln" }, r.old ?? ""), h("span", { class: "ln" }, r.new ?? ""),
      h("span", { class: "sg", "aria-hidden": "true" }, r.op === "+" || r.op === "-" ? r.op : ""),
      h("span", { class: "tx" }, r.op === "+" ? h("span", { class: "sr-only" }, "added: ") : r.op === "-" ? h("span", { class: "sr-only" }, "removed: ") : null, r.text)));
  }
  flush();
  return h("div", { class: "diff", role: "group", "aria-label": label, tabIndex: 0 }, out);
}

/** A folded-lines row. @param {string} text */
function note(text) {
  return h("div", { class: "dl fold" }, h("span", { class: "ln" }), h("span", { class: "ln" }), h("span", { class: "sg" }), h("span", { class: "tx" }, text));
}

/** How many lines a diff adds and removes. @param {DiffRow[]} rows */
export function diffStat(rows) {
  return { added: rows.filter((r) => r.op === "+").length, removed: rows.filter((r) => r.op === "-").length };
}
