// projects.js: the caller's projects: list, create, rename, delete.
import { h, mount, errorBox, showError, when } from "./dom.js";

export const NAME = "projects";

/** @param {any} ctx @param {HTMLElement} main */
export async function render(ctx, main) {
  ctx.crumbs([["Projects", null]]);
  const list = h("ul", { class: "list", id: "project-list", "aria-label": "Projects" });
  const error = errorBox();
  const nameInput = h("input", { id: "new-project", type: "text", required: true, maxLength: 200, placeholder: "New project name" });
  const form = h("form", {
    class: "row", id: "create-project",
    onsubmit: async (event) => {
      event.preventDefault();
      showError(error, null);
      try {
        const project = await ctx.api.createProject({ name: nameInput.value.trim() });
        ctx.go(`#/p/${encodeURIComponent(project.id)}`);
      } catch (err) { showError(error, err); }
    },
  }, h("label", { for: "new-project", class: "sr-only" }, "New project name"), nameInput,
  h("button", { type: "submit", class: "primary" }, "Create project"));

  const load = async () => {
    /** @type {any[]} */
    const items = [];
    let cursor = null;
    do {
      const page = await ctx.api.listProjects({ limit: 200, cursor: cursor || undefined });
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor && items.length < 2000);
    mount(list, items.length ? items.map(row) : h("li", { class: "muted" }, "No project yet: create one above."));
  };

  /** @param {any} project */
  const row = (project) => {
    const li = h("li", { "data-project": project.id });
    const view = () => mount(li,
      h("a", { href: `#/p/${encodeURIComponent(project.id)}`, class: "grow" }, project.name),
      h("span", { class: "muted small" }, `updated ${when(project.updated_at)}`),
      h("button", { type: "button", class: "rename", onclick: edit }, "Rename"),
      h("button", { type: "button", class: "delete danger", onclick: confirmDelete }, "Delete"));
    const edit = () => {
      const input = h("input", { type: "text", value: project.name, "aria-label": "Project name", required: true });
      mount(li, h("form", {
        class: "row grow",
        onsubmit: async (event) => {
          event.preventDefault();
          try {
            Object.assign(project, await ctx.api.updateProject(project.id, { name: input.value.trim() }));
            view();
          } catch (err) { showError(error, err); }
        },
      }, input, h("button", { type: "submit", class: "primary" }, "Save"),
      h("button", { type: "button", onclick: view }, "Cancel")));
      input.focus();
    };
    const confirmDelete = () => {
      mount(li, h("span", { class: "grow" }, `Delete “${project.name}” and all its files and runs?`),
        h("button", {
          type: "button", class: "danger confirm-delete",
          onclick: async () => {
            try { await ctx.api.deleteProject(project.id); li.remove(); } catch (err) { showError(error, err); }
          },
        }, "Delete for good"),
        h("button", { type: "button", onclick: view }, "Keep"));
      /** @type {HTMLElement} */ (li.querySelector(".confirm-delete")).focus();
    };
    view();
    return li;
  };

  mount(main, h("section", { class: "card" }, h("h1", {}, "Projects"), form, error, list));
  await load();
  nameInput.focus();
}
