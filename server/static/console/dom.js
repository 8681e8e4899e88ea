// dom.js: small DOM helpers shared by the console's screens. No framework: elements are
// built with h() and updated in place. Text always goes through textContent (never
// innerHTML), so nothing a user or a model wrote can run as markup.

/**
 * An element with attributes, properties, listeners and children.
 * `on*` keys add listeners; `class`, `for`, `aria-*`, `data-*` and friends are attributes;
 * other keys are set as properties (value, checked, disabled, hidden...).
 * @param {string} tag @param {Record<string, any>} [attrs] @param {...any} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class" || key === "for" || key === "role" || key === "href" || key === "type"
      || key === "name" || key === "title" || key === "placeholder" || key === "autocomplete"
      || key.startsWith("aria-") || key.startsWith("data-")) el.setAttribute(key, String(value));
    else /** @type {any} */ (el)[key] = value;
  }
  append(el, children);
  return el;
}

/** @param {Element} el @param {any[]} children */
function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. @param {Element} el @param {...any} children */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element. @param {string} tag @param {Record<string, any>} [attrs] @returns {SVGElement} */
export function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  }
  return el;
}

/** A duration for people: 850 ms, 3.2 s, 2 min 05 s. @param {number|null|undefined} ms */
export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${String(Math.round((ms % 60_000) / 1000)).padStart(2, "0")} s`;
}

/** A timestamp for people (local time). @param {string|null|undefined} iso */
export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

/** Milliseconds since the epoch of an RFC 3339 string, or null. @param {string|null|undefined} iso */
export function ms(iso) {
  return iso ? Date.parse(iso) : null;
}

/**
 * An error as a sentence for the user, from a StrettoError (code, message, details) or any
 * other error (network down: "Failed to fetch").
 * @param {any} error @returns {string}
 */
export function explain(error) {
  if (error && error.code === "model_required") {
    return "This server's model cannot plan free-form prompts (the offline provider needs a "
      + "model to plan). Write the plan as JSON below and run it, or configure a Gemini key.";
  }
  if (error && error.code) {
    const details = error.details && Object.keys(error.details).length
      ? " (" + Object.entries(error.details).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join("; ") + ")"
      : "";
    return `${error.message}${details}`;
  }
  if (error instanceof TypeError) return "The server cannot be reached. Check the connection and try again.";
  return String(error && error.message ? error.message : error);
}

/** An inline error box (role=alert) for an error, or an empty one. @param {any} [error] */
export function errorBox(error) {
  const box = h("p", { class: "error", role: "alert", hidden: !error });
  if (error) showError(box, error);
  return box;
}

/** @param {HTMLElement} box @param {any} error */
export function showError(box, error) {
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  mount(box, error.code ? h("code", {}, error.code) : null, error.code ? " " : null, explain(error));
}

/**
 * Run fn at most once per animation frame (render batching): many events in a burst, one
 * render. @param {() => void} fn @returns {() => void} schedule
 */
export function perFrame(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; fn(); });
  };
}

/** A status badge. @param {string} status */
export function badge(status) {
  return h("span", { class: `badge s-${status}`, "data-status": status }, status);
}
