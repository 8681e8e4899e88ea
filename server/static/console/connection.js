// connection.js: the header's connection indicator. A screen that streams attaches its
// StreamHandle; the indicator shows live, reconnecting (with the last event id it will
// resume after), reset (events were trimmed: state refetched) or closed.

const RESET_SHOWN_MS = 4000;

export class Connection {
  /** @param {HTMLElement} el */
  constructor(el) {
    this.el = el;
    /** @type {any} */
    this.stream = null;
    this.show("idle", "no stream");
  }

  /** @param {string} kind @param {string} text */
  show(kind, text) {
    this.el.className = `conn conn-${kind}`;
    this.el.dataset.state = kind;
    this.el.textContent = text;
  }

  /** @param {any} stream a StreamHandle of stretto.js */
  attach(stream) { this.stream = stream; }

  detach() { this.stream = null; this.show("idle", "no stream"); }

  /** The stream's onState. @param {string} state @param {Error} [error] */
  state(state, error) {
    const last = this.stream ? this.stream.lastEventId : null;
    if (state === "open") this.show("live", "live");
    else if (state === "connecting") this.show("connecting", "connecting…");
    else if (state === "reconnecting") {
      this.show("reconnecting", last === null ? "reconnecting…" : `reconnecting after #${last}…`);
    } else this.show("closed", error ? `closed: ${error.message}` : "closed");
  }

  /** A `reset` event arrived: the screen refetched its state. Shown for a while, then the
   * stream's own state again. */
  reset() {
    this.show("reset", "reset: state refetched");
    const stream = this.stream;
    setTimeout(() => { if (stream && this.stream === stream) this.state(stream.state); }, RESET_SHOWN_MS);
  }
}
