// versions.js: a file's kept versions in the file viewer (GET ...?versions), newest first,
// with when, by whom (a run, or a user: an edit, restore or undo) and size. "View" shows a version's content and
// how it differs from the current one; "Restore" writes it back as the newest version
// (POST .../restore), then the viewer reloads. Only calls the API.
import { h, mount, when, errorBox, showError } from "./dom.js";
import { diffLines, renderDiff } from "./diff.js";

const TEXT_LIMIT = 256 * 1024;

export class VersionList {
  /**
   * @param {any} api @param {string} projectId @param {string} path
   * @param {string} current the current content (to compare a version with)
   * @param {() => Promise<void>} onRestored
   */
  constructor(api, projectId, path, current, onRestored) {
    this.api = api;
    this.projectId = projectId;
    this.path = path;
    this.current = current;
    this.onRestored = onRestored;
    this.error = errorBox();
    this.error.id = "versions-error";
    this.rows = h("tbody", { id: "version-rows" });
    this.shown = h("div", { id: "version-view" });
    this.el = h("section", { class: "versions", id: "versions", "aria-label": `Versions of ${path}` },
      h("h4", {}, "Versions"), this.error,
      h("table", { class: "runs small version-table" },
        h("thead", {}, h("tr", {}, ["Version", "Written", ""].map((t) => h("th", { scope: "col" }, t)))),
        this.rows),
      this.shown);
  }

  async load() {
    showError(this.error, null);
    try {
      const { items } = await this.api.fileVersions(this.projectId, this.path, { limit: 50 });
      const newest = items.length ? items[0].version : null;
      mount(this.rows, items.map((v) => this.row(v, v.version === newest)));
    } catch (error) { showError(this.error, error); }
  }

  /** @param {any} v a FileVersion @param {boolean} isCurrent */
  row(v, isCurrent) {
    const by = v.run_id
      ? ["run ", h("a", { href: `#/p/${encodeURIComponent(this.projectId)}/runs/${encodeURIComponent(v.run_id)}` }, v.run_id.slice(-8))]
      : "by a user";
    return h("tr", { "data-version": v.version },
      h("td", {}, h("strong", {}, `v${v.version}`), isCurrent ? h("div", { class: "muted" }, "current") : null, v.deleted ? h("div", { class: "muted" }, "deleted") : null),
      h("td", {}, when(v.created_at), h("div", { class: "muted" }, by, v.deleted ? "" : ` · ${v.size} B`)),
      h("td", { class: "actions" },
        v.deleted ? null : h("button", { type: "button", class: "link view-version", "data-version": v.version, onclick: () => this.view(v) }, "View"),
        isCurrent || v.deleted ? null : h("button", { type: "button", class: "restore", "data-version": v.version, onclick: () => this.restore(v) }, "Restore")));
  }

  /** @param {any} v */
  async view(v) {
    showError(this.error, null);
    try {
      if (v.size > TEXT_LIMIT) { mount(this.shown, h("p", { class: "muted" }, `Version ${v.version}: ${v.size} bytes, not shown.`)); return; }
      const text = await (await this.api.readFileVersion(this.projectId, this.path, v.version)).text();
      const rows = text.includes("\u0000") ? null : diffLines(text, this.current);
      mount(this.shown,
        h("h4", {}, `Version ${v.version}`),
        h("pre", { class: "code", id: "version-content", tabIndex: 0 }, text),
        rows && rows.some((r) => r.op !== " ")
          ? [h("h4", {}, `From version ${v.version} to the current one`), renderDiff(rows, `Version ${v.version} against the current one`)]
          : h("p", { class: "small muted" }, "Same content as the current version."));
    } catch (error) { showError(this.error, error); }
  }

  /** @param {any} v */
  async restore(v) {
    showError(this.error, null);
    try {
      await this.api.restoreFile(this.projectId, this.path, v.version);
      await this.onRestored();
    } catch (error) { showError(this.error, error); }
  }
}
