// stretto.js: the browser client of a stretto server. One ES module, no dependencies, no
// build step. Served by stretto at /client/stretto.js.
//
//   import { Stretto } from "https://api.example.com/client/stretto.js";
//   const api = new Stretto({ baseUrl: "https://api.example.com" });
//   await api.login({ email, password });
//   const project = await api.createProject({ name: "demo" });
//   const run = await api.startRun({ projectId: project.id, prompt: "add a README" });
//   const stream = api.stream(project.id, { runId: run.id, onEvent: (e) => console.log(e) });
//
// Auth: access tokens are refreshed shortly before they expire and once more on a 401.
// Streams: a ticket per EventSource; when the browser gives up on one (readyState CLOSED)
// the client takes a fresh ticket and reopens after the last id it saw, with backoff.

/**
 * @typedef {{accessToken: string, refreshToken: string, expiresAt: number}} Session
 *   expiresAt: the access token's expiry, milliseconds since the epoch.
 * @typedef {{id: string, email: string, name: (string|null), created_at: string}} User
 * @typedef {{id: string, name: string, description: (string|null), created_at: string, updated_at: string}} Project
 * @typedef {{path: string, size: number, version: number, sha256: string, content_type: string, updated_at: string}} FileMeta
 * @typedef {{items: Array<any>, next_cursor: (string|null)}} Page
 * @typedef {{id: string, project_id: string, status: string, prompt: (string|null), plan: (object|null), steps: Array<object>, error: (object|null)}} Run
 * @typedef {{steps: Array<{id: string, tool: string, args: object, needs?: Array<string>, timeout_s?: number, retries?: number, continue_on_error?: boolean}>}} Plan
 * @typedef {{path: string, kind: ("create"|"modify"|"delete"|"move"), from: (string|null),
 *   base_version: (number|null), size_before: (number|null), size_after: (number|null),
 *   diff: (string|null), binary: boolean, diff_truncated: boolean}} RunChange
 *   One change of a review run's changeset; `diff` is a unified diff (null when binary).
 * @typedef {{version: number, size: number, sha256: (string|null), content_type: (string|null),
 *   deleted: boolean, run_id: (string|null), created_at: string}} FileVersion
 *   A kept version of a file, newest first; `run_id` names the run that wrote it (null: by hand).
 * @typedef {{id: (number|null), type: string, data: any}} StreamEvent
 *   id: the project's event sequence number (null for live-only events such as step.delta).
 * @typedef {"connecting"|"open"|"reconnecting"|"closed"} StreamState
 * @typedef {{runId?: string, lastEventId?: (number|null), onEvent?: (event: StreamEvent) => void,
 *   onState?: (state: StreamState, error?: Error) => void, types?: Array<string>}} StreamOptions
 * @typedef {{close: function(): void, readonly state: StreamState, readonly lastEventId: (number|null)}} StreamHandle
 */

/** The event types of the contract (EventSource only dispatches the named types it listens to). */
export const EVENT_TYPES = Object.freeze([
  "run.created", "run.planning", "run.planned", "run.awaiting_approval", "run.approved",
  "run.started",
  "step.started", "step.delta", "step.retrying", "step.succeeded", "step.failed",
  "step.cancelled", "step.skipped", "run.succeeded", "run.failed", "run.cancelled",
  "run.awaiting_review", "file.changed", "file.moved", "file.deleted", "project.updated", "project.deleted",
  "reset",
]);

/** Terminal run events: a stream filtered to a run may be closed after one of these. */
export const TERMINAL_RUN_EVENTS = Object.freeze(["run.succeeded", "run.failed", "run.cancelled"]);

const REFRESH_MARGIN_MS = 60_000; // refresh this long before the access token expires
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 30_000;

/** An error answer of the server: `{"error": {"code", "message", "details"}}` and its status. */
export class StrettoError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {object} [details]
   */
  constructor(status, code, message, details) {
    super(message);
    this.name = "StrettoError";
    /** @type {number} */ this.status = status;
    /** @type {string} */ this.code = code;
    /** @type {object} */ this.details = details || {};
  }
}

/**
 * A file path as URL segments (each one encoded; the server checks the path rules).
 * @param {string} path @returns {string}
 */
function filePath(path) {
  return String(path).split("/").map(encodeURIComponent).join("/");
}

/**
 * Jittered exponential backoff for attempt n (0-based), in milliseconds.
 * @param {number} attempt @returns {number}
 */
export function backoffMs(attempt) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.min(attempt, 16));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/**
 * A header when it has a value.
 * @param {string} name @param {string|undefined} value @returns {Record<string, string>}
 */
function optionalHeader(name, value) {
  return value ? { [name]: value } : {};
}

export class Stretto {
  /**
   * @param {{baseUrl?: string, session?: (Session|null), onSession?: function((Session|null)): void,
   *   fetch?: typeof fetch}} [options]
   *   baseUrl: the server (default: this page's origin). session: a stored session to resume.
   *   onSession: called with every new session (and null after logout), e.g. to store it.
   */
  constructor(options = {}) {
    /** @type {string} */
    this.baseUrl = (options.baseUrl || globalThis.location.origin).replace(/\/+$/, "");
    /** @type {Session|null} */
    this.session = options.session || null;
    this._onSession = options.onSession || (() => {});
    this._fetch = options.fetch || globalThis.fetch.bind(globalThis);
    /** @type {Promise<Session>|null} */
    this._refreshing = null;
    /** @type {Set<StreamHandle>} */
    this._streams = new Set();
  }

  // -- plumbing -----------------------------------------------------------------------

  /**
   * One HTTP call: JSON in and out, Bearer auth with refresh before expiry and one retry
   * on 401. Rejects with StrettoError for any status >= 400.
   * @param {string} method
   * @param {string} path
   * @param {{json?: any, body?: BodyInit, headers?: Record<string, string>, auth?: boolean,
   *   raw?: boolean, query?: Record<string, (string|number|null|undefined)>}} [options]
   * @returns {Promise<any>} the parsed JSON body (null for 204), or the Response when `raw`.
   */
  async request(method, path, options = {}) {
    const auth = options.auth !== false;
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(options.query || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, String(value));
    }
    const send = async () => {
      /** @type {Record<string, string>} */
      const headers = { ...(options.headers || {}) };
      let body = options.body;
      if (options.json !== undefined) {
        headers["Content-Type"] = "application/json";
        body = JSON.stringify(options.json);
      }
      if (auth) headers.Authorization = "Bearer " + (await this._accessToken());
      return this._fetch(url, { method, headers, body });
    };
    let response = await send();
    if (response.status === 401 && auth && this.session) {
      await this.refresh(); // one retry, with a fresh token
      response = await send();
    }
    if (response.status >= 400) throw await toError(response);
    if (options.raw) return response;
    if (response.status === 204 || response.status === 304) return null;
    return response.json();
  }

  /** A valid access token: refreshed first when it expires within the margin. */
  async _accessToken() {
    if (!this.session) throw new StrettoError(401, "unauthorized", "Not logged in.");
    if (Date.now() >= this.session.expiresAt - REFRESH_MARGIN_MS) await this.refresh();
    return /** @type {Session} */ (this.session).accessToken;
  }

  /** @param {any} body the auth routes' answer */
  _takeSession(body) {
    this.session = {
      accessToken: body.access_token,
      refreshToken: body.refresh_token,
      expiresAt: Date.now() + body.expires_in * 1000,
    };
    this._onSession(this.session);
    return body.user;
  }

  // -- auth ---------------------------------------------------------------------------

  /** @param {{email: string, password: string, name?: string}} account @returns {Promise<User>} */
  async register(account) {
    return this._takeSession(await this.request("POST", "/api/auth/register", { json: account, auth: false }));
  }

  /** @param {{email: string, password: string}} credentials @returns {Promise<User>} */
  async login(credentials) {
    return this._takeSession(await this.request("POST", "/api/auth/login", { json: credentials, auth: false }));
  }

  /**
   * A new token pair (refresh tokens rotate). Concurrent callers share one request.
   * On failure the session is dropped (onSession(null)) and the error is thrown.
   * @returns {Promise<Session>}
   */
  refresh() {
    if (!this._refreshing) {
      const session = this.session;
      this._refreshing = (async () => {
        if (!session) throw new StrettoError(401, "unauthorized", "Not logged in.");
        try {
          const body = await this.request("POST", "/api/auth/refresh", {
            json: { refresh_token: session.refreshToken }, auth: false,
          });
          this._takeSession(body);
          return /** @type {Session} */ (this.session);
        } catch (error) {
          if (error instanceof StrettoError && error.status === 401) {
            this.session = null;
            this._onSession(null);
          }
          throw error;
        }
      })().finally(() => { this._refreshing = null; });
    }
    return this._refreshing;
  }

  /** Ends the session (its refresh-token family; stream tickets die with it) and closes streams. */
  async logout() {
    const session = this.session;
    for (const stream of [...this._streams]) stream.close();
    if (session) {
      try {
        await this.request("POST", "/api/auth/logout", { json: { refresh_token: session.refreshToken } });
      } finally {
        this.session = null;
        this._onSession(null);
      }
    }
  }

  /** @returns {Promise<User>} */
  async me() { return (await this.request("GET", "/api/auth/me")).user; }

  // -- projects -----------------------------------------------------------------------

  /** @param {{limit?: number, cursor?: string}} [page] @returns {Promise<Page>} */
  listProjects(page = {}) { return this.request("GET", "/api/projects", { query: page }); }
  /** @param {{name: string, description?: string}} project @returns {Promise<Project>} */
  createProject(project) { return this.request("POST", "/api/projects", { json: project }); }
  /** @param {string} projectId @returns {Promise<Project>} */
  getProject(projectId) { return this.request("GET", `/api/projects/${encodeURIComponent(projectId)}`); }
  /** @param {string} projectId @param {{name?: string, description?: (string|null)}} changes @returns {Promise<Project>} */
  updateProject(projectId, changes) {
    return this.request("PATCH", `/api/projects/${encodeURIComponent(projectId)}`, { json: changes });
  }
  /** @param {string} projectId @returns {Promise<null>} */
  deleteProject(projectId) { return this.request("DELETE", `/api/projects/${encodeURIComponent(projectId)}`); }

  // -- files --------------------------------------------------------------------------

  /** @param {string} projectId @param {{prefix?: string, limit?: number, cursor?: string}} [query] @returns {Promise<Page>} */
  listFiles(projectId, query = {}) {
    return this.request("GET", `/api/projects/${encodeURIComponent(projectId)}/files`, { query });
  }

  /**
   * A file's content and its ETag. With `ifNoneMatch` (an ETag), `notModified` is true and
   * `body` null when it did not change.
   * @param {string} projectId @param {string} path @param {{ifNoneMatch?: string}} [options]
   * @returns {Promise<{body: (Blob|null), text: function(): Promise<string>, etag: (string|null), contentType: (string|null), notModified: boolean}>}
   */
  async readFile(projectId, path, options = {}) {
    const headers = optionalHeader("If-None-Match", options.ifNoneMatch);
    const response = await this.request("GET", `/api/projects/${encodeURIComponent(projectId)}/files/${filePath(path)}`, { headers, raw: true });
    const notModified = response.status === 304;
    const body = notModified ? null : await response.blob();
    return {
      body, notModified,
      etag: response.headers.get("ETag"),
      contentType: response.headers.get("Content-Type"),
      text: async () => (body ? body.text() : ""),
    };
  }

  /**
   * Create or replace a file. `ifMatch`: the ETag you read (412 version_mismatch when stale);
   * `ifNoneMatch: "*"`: create only.
   * @param {string} projectId @param {string} path @param {BodyInit} content
   * @param {{ifMatch?: string, ifNoneMatch?: string, contentType?: string}} [options]
   * @returns {Promise<FileMeta & {etag: (string|null), created: boolean}>}
   */
  async writeFile(projectId, path, content, options = {}) {
    /** @type {Record<string, string>} */
    const headers = { "Content-Type": options.contentType || "application/octet-stream" };
    if (options.ifMatch) headers["If-Match"] = options.ifMatch;
    if (options.ifNoneMatch) headers["If-None-Match"] = options.ifNoneMatch;
    const response = await this.request("PUT", `/api/projects/${encodeURIComponent(projectId)}/files/${filePath(path)}`, { body: content, headers, raw: true });
    return { ...(await response.json()), etag: response.headers.get("ETag"), created: response.status === 201 };
  }

  /** @param {string} projectId @param {string} path @param {string} newPath @param {{ifMatch?: string}} [options] @returns {Promise<FileMeta>} */
  moveFile(projectId, path, newPath, options = {}) {
    const headers = optionalHeader("If-Match", options.ifMatch);
    return this.request("PATCH", `/api/projects/${encodeURIComponent(projectId)}/files/${filePath(path)}`, { json: { path: newPath }, headers });
  }

  /** @param {string} projectId @param {string} path @param {{ifMatch?: string}} [options] @returns {Promise<null>} */
  deleteFile(projectId, path, options = {}) {
    const headers = optionalHeader("If-Match", options.ifMatch);
    return this.request("DELETE", `/api/projects/${encodeURIComponent(projectId)}/files/${filePath(path)}`, { headers });
  }

  // -- workflow runs and tools ----------------------------------------------------------

  /**
   * Start a run from a prompt or a plan (202). `idempotencyKey` makes a retried call return the same run.
   * @param {{projectId: string, prompt?: string, plan?: Plan, options?: object, idempotencyKey?: string}} run
   * @returns {Promise<Run>}
   */
  startRun(run) {
    /** @type {Record<string, any>} */
    const json = { project_id: run.projectId };
    if (run.prompt !== undefined) json.prompt = run.prompt;
    if (run.plan !== undefined) json.plan = run.plan;
    if (run.options !== undefined) json.options = run.options;
    const headers = optionalHeader("Idempotency-Key", run.idempotencyKey);
    return this.request("POST", "/api/workflow/runs", { json, headers });
  }

  /** Planning only. @param {string} projectId @param {string} prompt @returns {Promise<{intent: object, plan: Plan}>} */
  plan(projectId, prompt) {
    return this.request("POST", "/api/workflow/plan", { json: { project_id: projectId, prompt } });
  }

  /** @param {string} runId @returns {Promise<any>} */
  cancelRun(runId) { return this.request("POST", `/api/workflow/runs/${encodeURIComponent(runId)}/cancel`); }
  /**
   * Start a run awaiting approval (202), optionally with an edited plan (400 invalid_plan).
   * @param {string} runId @param {Plan} [plan] @returns {Promise<Run>}
   */
  approveRun(runId, plan) {
    const options = plan === undefined ? {} : { json: { plan } };
    return this.request("POST", `/api/workflow/runs/${encodeURIComponent(runId)}/approve`, options);
  }
  /** End a run awaiting approval: cancelled, reason `rejected`. @param {string} runId @returns {Promise<Run>} */
  rejectRun(runId) { return this.request("POST", `/api/workflow/runs/${encodeURIComponent(runId)}/reject`); }
  /**
   * A new run from a failed or cancelled one, reusing its succeeded steps (202). 409
   * `conflict` (details.paths) when a file a reused step read has changed, unless `force`.
   * @param {string} runId @param {{force?: boolean}} [options] @returns {Promise<Run>}
   */
  retryRun(runId, options = {}) {
    return this.request("POST", `/api/workflow/runs/${encodeURIComponent(runId)}/retry`,
      { query: { force: options.force ? "true" : undefined } });
  }
  /** @param {string} runId @returns {Promise<Run>} */
  getRun(runId) { return this.request("GET", `/api/workflow/runs/${encodeURIComponent(runId)}`); }
  /** @param {{projectId?: string, status?: string, limit?: number, cursor?: string}} [query] @returns {Promise<Page>} */
  listRuns(query = {}) {
    return this.request("GET", "/api/workflow/runs", {
      query: { project_id: query.projectId, status: query.status, limit: query.limit, cursor: query.cursor },
    });
  }
  /** The tool catalog. @returns {Promise<any>} */
  tools() { return this.request("GET", "/api/workflow/tools"); }

  // -- review, file history and undo ----------------------------------------------------
  // A run started with `options: {changes: "review"}` writes to its changeset and ends in
  // `awaiting_review`. Conflicts answer 409 `conflict` with `details.paths`: the files that
  // changed since the run read them (nothing is changed then).

  /** A review run's changes, each with its unified diff. @param {string} runId @returns {Promise<{items: RunChange[], next_cursor: null}>} */
  runChanges(runId) { return this.request("GET", `/api/workflow/runs/${encodeURIComponent(runId)}/changes`); }
  /**
   * Apply all of a review run's changes, or only `paths`, in one transaction. When none
   * remain the run ends `succeeded`; 409 `conflict` (details.paths) applies nothing.
   * @param {string} runId @param {string[]} [paths]
   * @returns {Promise<{run: Run, applied: string[], remaining: number}>}
   */
  applyChanges(runId, paths) {
    const options = paths === undefined ? {} : { json: { paths } };
    return this.request("POST", `/api/workflow/runs/${encodeURIComponent(runId)}/apply`, options);
  }
  /** Drop a review run's changes: it ends `cancelled` (reason `discarded`). @param {string} runId @returns {Promise<Run>} */
  discardChanges(runId) { return this.request("POST", `/api/workflow/runs/${encodeURIComponent(runId)}/discard`); }
  /**
   * Undo every file change a finished run made (its files back to their state before it),
   * in one transaction; 409 `conflict` (details.paths) when one changed since.
   * @param {string} runId @returns {Promise<{run_id: string, paths: string[]}>}
   */
  revertRun(runId) { return this.request("POST", `/api/workflow/runs/${encodeURIComponent(runId)}/revert`); }
  /**
   * A file's kept versions, newest first (the current one included).
   * @param {string} projectId @param {string} path @param {{limit?: number, cursor?: string}} [page]
   * @returns {Promise<{items: FileVersion[], next_cursor: (string|null)}>}
   */
  fileVersions(projectId, path, page = {}) {
    return this.request("GET", `/api/projects/${encodeURIComponent(projectId)}/files/${filePath(path)}?versions`, { query: page });
  }
  /**
   * One kept version's content (404 for a version at which the file was deleted).
   * @param {string} projectId @param {string} path @param {number} version
   * @returns {Promise<{body: Blob, text: function(): Promise<string>, contentType: (string|null)}>}
   */
  async readFileVersion(projectId, path, version) {
    const response = await this.request("GET", `/api/projects/${encodeURIComponent(projectId)}/files/${filePath(path)}`, { query: { version }, raw: true });
    const body = await response.blob();
    return { body, contentType: response.headers.get("Content-Type"), text: () => body.text() };
  }
  /**
   * Write a kept version back as the file's newest one.
   * @param {string} projectId @param {string} path @param {number} version
   * @returns {Promise<FileMeta & {etag: (string|null)}>}
   */
  async restoreFile(projectId, path, version) {
    const response = await this.request("POST", `/api/projects/${encodeURIComponent(projectId)}/files/${filePath(path)}/restore`, { json: { version }, raw: true });
    return { ...(await response.json()), etag: response.headers.get("ETag") };
  }

  // -- streams ------------------------------------------------------------------------

  /** @param {string} projectId @returns {Promise<{ticket: string, expires_in: number}>} */
  ticket(projectId) { return this.request("POST", "/api/sse/tickets", { json: { project_id: projectId } }); }

  /**
   * Stream a project's events (optionally one run's). Events reach `onEvent` once each, in
   * order (deduplicated by id). The browser reconnects by itself after stream ends; when it
   * gives up (a dead ticket, a restart answered with an error), a fresh ticket is taken and
   * the stream reopened after the last id seen, with backoff. A `reset` event means: refetch
   * state (events were trimmed). Ends for good on close(), logout, or a project that is gone.
   * @param {string} projectId @param {StreamOptions} [options] @returns {StreamHandle}
   */
  stream(projectId, options = {}) {
    const client = this;
    const onEvent = options.onEvent || (() => {});
    const onState = options.onState || (() => {});
    const types = [...new Set([...EVENT_TYPES, ...(options.types || [])])];
    /** @type {number|null} */
    let last = options.lastEventId ?? null;
    /** @type {EventSource|null} */
    let source = null;
    /** @type {StreamState} */
    let state = "connecting";
    let attempt = 0;
    let closed = false;
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    let timer;

    /** @param {StreamState} next @param {Error} [error] */
    const setState = (next, error) => {
      if (state === next && !error) return;
      state = next;
      onState(next, error);
    };

    /** @param {MessageEvent} message */
    const dispatch = (message) => {
      const id = message.lastEventId && /^\d+$/.test(message.lastEventId) && message.type !== "step.delta" && message.type !== "project.deleted"
        ? Number(message.lastEventId) : null;
      let data;
      try { data = JSON.parse(message.data); } catch { data = message.data; }
      if (message.type === "reset") {
        if (id !== null) last = id; // resume from here after refetching state
      } else if (id !== null) {
        if (last !== null && id <= last) return; // seen already (a replay overlap)
        last = id;
      }
      onEvent({ id, type: message.type, data });
      if (message.type === "project.deleted") handle.close();
    };

    const scheduleReopen = () => {
      if (closed) return;
      setState("reconnecting");
      timer = setTimeout(open, backoffMs(attempt++));
    };

    const open = async () => {
      if (closed) return;
      let ticket;
      try {
        ticket = (await client.ticket(projectId)).ticket;
      } catch (error) {
        if (error instanceof StrettoError && (error.status === 404 || error.status === 401)) {
          closed = true; // the project is gone, or the session ended
          client._streams.delete(handle);
          setState("closed", error);
        } else {
          scheduleReopen();
        }
        return;
      }
      if (closed) return;
      const url = new URL(`${client.baseUrl}/api/sse/projects/${encodeURIComponent(projectId)}`);
      url.searchParams.set("ticket", ticket);
      if (options.runId) url.searchParams.set("run_id", options.runId);
      if (last !== null) url.searchParams.set("last_event_id", String(last));
      const es = new EventSource(url.toString());
      source = es;
      es.onopen = () => { attempt = 0; setState("open"); };
      es.onerror = () => {
        if (source !== es) return;
        if (es.readyState === EventSource.CLOSED) {
          es.close();
          source = null;
          scheduleReopen();
        } else {
          setState("reconnecting"); // the browser retries by itself (Last-Event-ID included)
        }
      };
      for (const type of types) es.addEventListener(type, dispatch);
      es.onmessage = dispatch;
    };

    /** @type {StreamHandle} */
    const handle = {
      close() {
        if (closed) return;
        closed = true;
        clearTimeout(timer);
        if (source) source.close();
        source = null;
        client._streams.delete(handle);
        setState("closed");
      },
      get state() { return state; },
      get lastEventId() { return last; },
    };
    this._streams.add(handle);
    onState("connecting");
    open();
    return handle;
  }
}

/** @param {Response} response @returns {Promise<StrettoError>} */
async function toError(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const error = body && body.error ? body.error : {};
  return new StrettoError(
    response.status,
    error.code || "http_error",
    error.message || `HTTP ${response.status}`,
    error.details,
  );
}
