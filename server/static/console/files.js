// files.js: a project's file tree with a viewer and editor. Saving sends If-Match with the
// ETag that was read; a 412 (someone else saved first) shows both versions side by side
// with "keep mine" (save over theirs, If-Match their ETag) and "take theirs". "Versions"
// lists the file's kept versions with Restore (versions.js).
import { h, mount, errorBox, showError } from "./dom.js";
import { VersionList } from "./versions.js";

const TEXT_LIMIT = 1024 * 1024; // larger or binary files are shown as metadata only

export class FilePane {
  /** @param {any} api @param {string} projectId */
  constructor(api, projectId) {
    this.api = api;
    this.projectId = projectId;
    /** @type {any[]} */ this.items = [];
    /** @type {string|null} */ this.open = null;
    this.versionsOpen = false;
    this.tree = h("nav", { class: "tree", id: "file-tree", "aria-label": "File tree" });
    this.viewer = h("div", { class: "viewer", id: "file-viewer" }, h("p", { class: "muted" }, "Pick a file, or upload one."));
    this.error = errorBox();
    const upload = h("input", { type: "file", id: "upload", multiple: true, class: "sr-only", onchange: () => this.upload(upload) });
    const newPath = h("input", { type: "text", id: "new-file", placeholder: "path/of/new-file.txt", "aria-label": "New file path" });
    this.el = h("div", {},
      h("div", { class: "row" },
        h("label", { for: "upload", class: "button", tabIndex: 0,
          onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); upload.click(); } } }, "Upload…"), upload,
        h("form", { class: "row grow", onsubmit: (e) => { e.preventDefault(); if (newPath.value.trim()) this.edit(newPath.value.trim(), "", null); } },
          newPath, h("button", { type: "submit" }, "New file"))),
      this.error, this.tree, this.viewer);
  }

  async load() {
    /** @type {any[]} */
    const items = [];
    let cursor = null;
    do {
      const page = await this.api.listFiles(this.projectId, { limit: 200, cursor: cursor || undefined });
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor && items.length < 5000);
    this.items = items;
    this.renderTree();
  }

  renderTree() {
    if (!this.items.length) { mount(this.tree, h("p", { class: "muted" }, "No file yet.")); return; }
    /** @type {Map<string, any>} */
    const root = new Map();
    for (const item of this.items) {
      const parts = item.path.split("/");
      let level = root;
      for (const dir of parts.slice(0, -1)) {
        if (!level.has(dir + "/")) level.set(dir + "/", new Map());
        level = level.get(dir + "/");
      }
      level.set(parts[parts.length - 1], item);
    }
    /** @param {Map<string, any>} level @returns {HTMLElement} */
    const list = (level) => h("ul", {}, [...level.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, node]) =>
      node instanceof Map
        ? h("li", {}, h("details", { open: true }, h("summary", {}, name), list(node)))
        : h("li", {}, h("button", {
          type: "button", class: "file" + (node.path === this.open ? " current" : ""), "data-path": node.path,
          onclick: () => this.view(node.path),
        }, name, h("span", { class: "muted small" }, ` ${node.size} B`)))));
    mount(this.tree, list(root));
  }

  /** @param {HTMLInputElement} input */
  async upload(input) {
    showError(this.error, null);
    try {
      for (const file of input.files || []) {
        await this.api.writeFile(this.projectId, file.name, file, { contentType: file.type || undefined });
      }
      await this.load();
      if (input.files && input.files.length) await this.view(input.files[0].name);
    } catch (error) { showError(this.error, error); }
    input.value = "";
  }

  /** @param {string} path */
  async view(path) {
    showError(this.error, null);
    this.open = path;
    this.renderTree();
    try {
      const file = await this.api.readFile(this.projectId, path);
      const meta = this.items.find((i) => i.path === path);
      const body = /** @type {Blob} */ (file.body);
      const text = body.size <= TEXT_LIMIT ? await body.text() : null;
      if (text === null || text.includes("\u0000")) {
        mount(this.viewer, h("h3", {}, path), h("p", { class: "muted" }, `${body.size} bytes, ${file.contentType}: not shown.`));
        return;
      }
      const versions = new VersionList(this.api, this.projectId, path, text, async () => { await this.load(); await this.view(path); });
      const toggle = h("button", { type: "button", id: "show-versions", "aria-expanded": String(this.versionsOpen),
        onclick: () => {
          this.versionsOpen = !this.versionsOpen;
          toggle.setAttribute("aria-expanded", String(this.versionsOpen));
          versions.el.hidden = !this.versionsOpen;
          if (this.versionsOpen) versions.load();
        } }, "Versions");
      versions.el.hidden = !this.versionsOpen;
      mount(this.viewer,
        h("div", { class: "row" }, h("h3", { class: "grow" }, path),
          h("span", { class: "muted small", id: "file-version" }, meta ? `version ${meta.version}` : ""),
          toggle,
          h("button", { type: "button", id: "edit-file", onclick: () => this.edit(path, text, file.etag) }, "Edit")),
        h("pre", { class: "code", id: "file-content", tabIndex: 0 }, text),
        versions.el);
      if (this.versionsOpen) await versions.load();
    } catch (error) { showError(this.error, error); }
  }

  /** @param {string} path @param {string} text @param {string|null} etag (null: a new file) */
  edit(path, text, etag) {
    const area = h("textarea", { id: "editor", spellcheck: false, value: text, "aria-label": `Content of ${path}` });
    const status = h("span", { class: "muted small", role: "status" });
    const save = async () => {
      showError(this.error, null);
      try {
        const options = etag ? { ifMatch: etag } : { ifNoneMatch: "*" };
        await this.api.writeFile(this.projectId, path, area.value, { ...options, contentType: "text/plain; charset=utf-8" });
        await this.load();
        await this.view(path);
      } catch (error) {
        if (error && error.status === 412) await this.conflict(path, area.value);
        else showError(this.error, error);
      }
    };
    mount(this.viewer,
      h("div", { class: "row" }, h("h3", { class: "grow" }, path), status,
        h("button", { type: "button", id: "save-file", class: "primary", onclick: save }, "Save"),
        h("button", { type: "button", onclick: () => (etag ? this.view(path) : mount(this.viewer)) }, "Cancel")),
      area);
    area.focus();
  }

  /** Someone saved first: both versions, and a choice. @param {string} path @param {string} mine */
  async conflict(path, mine) {
    let theirs = "";
    let theirEtag = null;
    try {
      const file = await this.api.readFile(this.projectId, path);
      theirs = await file.text();
      theirEtag = file.etag;
    } catch (error) { if (!error || error.status !== 404) { showError(this.error, error); return; } }
    mount(this.viewer,
      h("div", { class: "conflict", id: "conflict", role: "alert" },
        h("h3", {}, `${path} changed while you edited it`),
        h("div", { class: "split" },
          h("div", {}, h("h4", {}, "Your version"), h("pre", { class: "code mine" }, mine)),
          h("div", {}, h("h4", {}, theirEtag ? `Saved version (version ${theirEtag.replace(/"/g, "")})` : "Deleted on the server"), h("pre", { class: "code theirs" }, theirs))),
        h("div", { class: "row" },
          h("button", { type: "button", class: "primary", id: "keep-mine", onclick: () => this.edit(path, mine, theirEtag) }, "Keep mine (edit, then save over it)"),
          h("button", { type: "button", id: "take-theirs", onclick: () => this.view(path) }, "Take theirs"))));
    /** @type {HTMLElement} */ (this.viewer.querySelector("#keep-mine")).focus();
  }
}
