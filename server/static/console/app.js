// app.js: the console's entry point. It owns the one Stretto client, the session (kept in
// sessionStorage: it survives a reload, not the tab), the hash router and the header. Each
// screen is a module exporting `render(ctx, main, params) -> cleanup?`; the cleanup (closing
// streams) runs when the route changes.
import { Stretto } from "/client/stretto.js";
import { h, mount, explain } from "./dom.js";
import { Connection } from "./connection.js";
import * as authScreen from "./auth.js";
import * as projectsScreen from "./projects.js";
import * as projectScreen from "./project.js";
import * as runScreen from "./run.js";

const SESSION_KEY = "stretto.session";

function storedSession() {
  try { return JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null"); } catch { return null; }
}

const api = new Stretto({
  session: storedSession(),
  onSession: (session) => {
    if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    else sessionStorage.removeItem(SESSION_KEY);
  },
});

const main = /** @type {HTMLElement} */ (document.getElementById("main"));
const crumbs = /** @type {HTMLElement} */ (document.getElementById("crumbs"));
const who = /** @type {HTMLElement} */ (document.getElementById("who"));
const logoutButton = /** @type {HTMLButtonElement} */ (document.getElementById("logout"));
const connection = new Connection(/** @type {HTMLElement} */ (document.getElementById("connection")));

/** What every screen gets. */
const ctx = {
  api,
  connection,
  /** @type {any} */ user: null,
  /** @param {string} hash */ go(hash) { if (location.hash === hash) route(); else location.hash = hash; },
  /** @param {Array<[string, string|null]>} parts label and link (null: current page) */
  crumbs(parts) {
    mount(crumbs, parts.map(([label, link], i) => [
      i ? h("span", { class: "sep", "aria-hidden": "true" }, "/") : null,
      link ? h("a", { href: link }, label) : h("span", { "aria-current": "page" }, label),
    ]));
  },
};

/** @type {(() => void) | void} */
let cleanup;
let generation = 0;

const ROUTES = [
  { pattern: /^#\/login$/, screen: authScreen, open: true },
  { pattern: /^#\/projects$/, screen: projectsScreen },
  { pattern: /^#\/p\/([^/]+)$/, screen: projectScreen },
  { pattern: /^#\/p\/([^/]+)\/runs\/([^/]+)$/, screen: runScreen },
];

async function route() {
  const mine = ++generation;
  if (typeof cleanup === "function") cleanup();
  cleanup = undefined;
  connection.detach();
  const hash = location.hash || "#/projects";
  const match = ROUTES.map((r) => ({ r, m: hash.match(r.pattern) })).find((x) => x.m);
  if (!match) { ctx.go("#/projects"); return; }
  if (!match.r.open && !api.session) { ctx.go("#/login"); return; }
  if (!match.r.open && !ctx.user) {
    try {
      ctx.user = await api.me();
    } catch (error) {
      if (error && error.status === 401) { ctx.go("#/login"); return; }
      mount(main, h("p", { class: "error", role: "alert" }, explain(error)));
      return;
    }
  }
  showUser();
  if (mine !== generation) return;
  main.dataset.screen = match.r.screen.NAME;
  try {
    cleanup = await match.r.screen.render(ctx, main, match.m.slice(1).map(decodeURIComponent));
  } catch (error) {
    if (error && error.status === 401) { ctx.user = null; ctx.go("#/login"); return; }
    if (error && error.status === 404) {
      mount(main, h("p", { class: "error", role: "alert" }, "Not found (deleted, or not yours). "),
        h("a", { href: "#/projects" }, "Back to projects"));
      return;
    }
    mount(main, h("p", { class: "error", role: "alert" }, explain(error)));
  }
  if (mine !== generation && typeof cleanup === "function") cleanup();
}

function showUser() {
  const signedIn = Boolean(api.session && ctx.user);
  who.textContent = signedIn ? ctx.user.email : "";
  logoutButton.hidden = !signedIn;
}

logoutButton.addEventListener("click", async () => {
  try { await api.logout(); } catch { /* the session is dropped either way */ }
  ctx.user = null;
  showUser();
  ctx.go("#/login");
});

/** Called by the sign-in screen. @param {any} user */
ctx.signedIn = (user) => { ctx.user = user; showUser(); ctx.go("#/projects"); };

window.addEventListener("hashchange", route);
route();
