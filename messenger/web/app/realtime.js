// The WebSocket connection (API_CONTRACT.md §8): connect, resume, reconnect.
//
// Every frame's `event_id` is kept (in localStorage, per user) once the frame has been handed
// on, and given back as `last_event_id` on the next connection, so a reconnect — to this
// process or any other — delivers exactly what was missed. Reconnects back off exponentially
// (0.5 s doubling up to 15 s) with jitter, reset once a connection is `ready`; the browser
// coming back online retries at once. Close code 1008 means the access token expired:
// refresh, then reconnect. Two handshakes refused in a row while the REST API answers mean
// the cursor is refused: it is dropped and the connection starts fresh (the frame handler is
// told `resync_required`, as for a cursor the server cannot serve).

import { BASE } from "./api.js";

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15_000;
const REFUSED_HANDSHAKES_BEFORE_FRESH_START = 2;

export function cursorKey(userId) {
  return `messenger.cursor.${userId}`;
}

export class Realtime extends EventTarget {
  /** `onFrame(frame)` gets every server frame in order. */
  constructor(session, api, onFrame) {
    super();
    this.session = session;
    this.api = api;
    this.onFrame = onFrame;
    this.socket = null;
    this.open = false;
    this.stopped = true;
    this.attempts = 0;
    this.refusedWhileUp = 0;
    this.timer = null;
    this.onOnline = () => this.reconnectNow();
  }

  get cursor() {
    return this.session.user ? localStorage.getItem(cursorKey(this.session.user.id)) : null;
  }

  set cursor(value) {
    if (!this.session.user) return;
    if (value) localStorage.setItem(cursorKey(this.session.user.id), value);
    else localStorage.removeItem(cursorKey(this.session.user.id));
  }

  start() {
    this.stopped = false;
    window.addEventListener("online", this.onOnline);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, "bye");
    this.socket = null;
    this.setOpen(false);
  }

  /** Send a client frame; false when not connected (the caller decides what then). */
  send(frame) {
    if (!this.open || !this.socket) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** "open" says whether the connection resumed from a cursor (else the stream began now,
   * and what happened before it is only over REST). */
  setOpen(open, detail = {}) {
    if (this.open === open) return;
    this.open = open;
    this.dispatchEvent(new CustomEvent(open ? "open" : "closed", { detail }));
  }

  reconnectNow() {
    if (this.stopped || this.socket) return;
    clearTimeout(this.timer);
    this.attempts = 0;
    this.connect();
  }

  async connect() {
    this.timer = null;
    if (this.stopped || this.socket) return;
    this.dispatchEvent(new CustomEvent("connecting", { detail: { attempt: this.attempts } }));
    if (this.session.expiresIn < 10_000) {
      try {
        await this.session.refresh();
      } catch {
        if (!this.session.signedIn) return; // signed out: main shows the login screen
        this.retry();
        return;
      }
    }
    if (this.stopped || this.socket) return;
    const url = new URL("ws", BASE);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("token", this.session.accessToken);
    const cursor = this.cursor;
    if (cursor) url.searchParams.set("last_event_id", cursor);
    const socket = new WebSocket(url);
    this.socket = socket;
    let ready = false;
    socket.onmessage = (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame.type === "ready") {
        ready = true;
        this.attempts = 0;
        this.refusedWhileUp = 0;
      }
      this.onFrame(frame);
      if (frame.event_id) this.cursor = frame.event_id;
      if (frame.type === "ready") this.setOpen(true, { resumed: Boolean(cursor) });
    };
    socket.onclose = (event) => {
      if (this.socket === socket) this.socket = null;
      this.setOpen(false);
      if (this.stopped) return;
      if (!ready) {
        this.handshakeFailed(cursor);
        return;
      }
      if (event.code === 1008) {
        this.session.refresh().catch(() => {}).finally(() => this.retry(0));
        return;
      }
      this.retry();
    };
  }

  /** A handshake failed: the server is unreachable, or it refused this token or cursor.
   * While the REST API answers, a refused handshake is retried; refused twice in a row with
   * the same cursor, the cursor is dropped (a fresh start; `resync_required` for the UI). */
  async handshakeFailed(cursor) {
    if (cursor) {
      try {
        await this.api.me(); // refreshes (or signs out) when the token is the problem
        this.refusedWhileUp += 1;
      } catch {
        this.refusedWhileUp = 0; // the server is down (or the session ended)
      }
      if (this.refusedWhileUp >= REFUSED_HANDSHAKES_BEFORE_FRESH_START
          && this.cursor === cursor) {
        this.cursor = null;
        this.refusedWhileUp = 0;
        this.onFrame({ type: "resync_required", local: true });
      }
    }
    if (this.session.signedIn) this.retry(this.refusedWhileUp === 1 ? 0 : null);
  }

  retry(delay = null) {
    if (this.stopped || this.timer) return;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempts);
    const wait = delay ?? ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempts += 1;
    this.dispatchEvent(new CustomEvent("waiting", { detail: { ms: wait } }));
    this.timer = setTimeout(() => this.connect(), wait);
  }
}
