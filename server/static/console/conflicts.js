// conflicts.js: what changed in the files a 409 `conflict` names. For each path: the
// versions written since a boundary (the version the run read, or last wrote), with when
// and by whom (a user, or another run), and the line diff from the boundary's content to
// the file as it is now. Only reads the API (GET ...?versions, ...?version=n).
import { h, when } from "./dom.js";
import { diffLines, renderDiff } from "./diff.js";

const TEXT_LIMIT = 256 * 1024; // larger versions are not compared in the page

/**
 * @param {any} api @param {string} projectId @param {string[]} paths
 * @param {(path: string, versions: any[]) => (number|null)} boundaryOf the version the
 *   run saw (null: the file did not exist for it)
 * @param {string} seen how the boundary reads in a sentence ("the run read")
 * @returns {Promise<HTMLElement>}
 */
export async function explainConflict(api, projectId, paths, boundaryOf, seen) {
  const items = await Promise.all(paths.map((path) => explainOne(api, projectId, path, boundaryOf, seen)));
  return h("ul", { class: "conflicts" }, items);
}

/** @param {any} api @param {string} projectId @param {string} path @param {(path: string, versions: any[]) => (number|null)} boundaryOf @param {string} seen */
async function explainOne(api, projectId, path, boundaryOf, seen) {
  let versions = [];
  try {
    versions = (await api.fileVersions(projectId, path, { limit: 50 })).items;
  } catch (error) {
    return h("li", { "data-path": path }, h("code", {}, path), h("span", { class: "muted" }, ` (its history cannot be read: ${error.message})`));
  }
  const boundary = boundaryOf(path, versions);
  const newer = versions.filter((v) => boundary === null || v.version > boundary);
  const current = versions[0];
  const base = versions.find((v) => v.version === boundary);
  const before = boundary === null ? "" : base ? await text(api, projectId, path, base) : null;
  const after = current ? await text(api, projectId, path, current) : "";
  const rows = before === null || after === null ? null : diffLines(before, after);
  return h("li", { "data-path": path },
    h("p", {}, h("code", {}, path), " — ",
      boundary === null ? `did not exist when ${seen} it; now ` : `version ${boundary} when ${seen} it; now `,
      current ? (current.deleted ? "deleted" : `version ${current.version}`) : "gone"),
    h("ul", { class: "small versions-since" }, newer.map((v) => h("li", {},
      `version ${v.version}${v.deleted ? " (deleted)" : ""} · ${when(v.created_at)} · `,
      v.run_id ? ["by run ", h("a", { href: `#/p/${encodeURIComponent(projectId)}/runs/${encodeURIComponent(v.run_id)}` }, v.run_id.slice(-8))] : "by a user"))),
    rows === null ? h("p", { class: "small muted" }, "Not compared here: too large, binary, or no longer kept.")
      : rows.some((r) => r.op !== " ") ? renderDiff(rows, `What changed in ${path}`)
        : h("p", { class: "small muted" }, "Same content, written again."));
}

/** A version's text ("" when deleted there; null when too large or binary). @param {any} api @param {string} projectId @param {string} path @param {any} version */
async function text(api, projectId, path, version) {
  if (!version || version.deleted) return "";
  if (version.size > TEXT_LIMIT) return null;
  try {
    const body = await (await api.readFileVersion(projectId, path, version.version)).text();
    return body.includes("\u0000") ? null : body;
  } catch { return null; }
}
