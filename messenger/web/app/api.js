// The REST client and the login session (API_CONTRACT.md §2, §4, §9).
//
// Session: the token pair lives in localStorage (one key for every tab of this origin). The
// access token is refreshed shortly before it expires. A refresh token works once, so tabs
// take turns: under a Web Lock where the browser has one (secure contexts), and in any case
// each refresh first re-reads the stored pair — if another tab rotated it already, this tab
// adopts the new pair instead of spending the old one (which would revoke the whole family).
// `refresh_token_reused` or `invalid_token` from a refresh ends the session: the page goes
// back to the login screen.

const SESSION_KEY = "messenger.session";
const REFRESH_LOCK = "messenger.refresh";
/** Refresh this long before the access token expires (or a tenth of its lifetime if less). */
const REFRESH_MARGIN_MS = 60_000;
const REFRESH_RETRY_MS = 5_000;

/** Every URL is relative to the server root, found from the page's own URL (/app/ -> /). */
export const BASE = new URL("..", location.href);

export function apiUrl(path) {
  return new URL(path, BASE).toString();
}

export class ApiError extends Error {
  constructor(status, code, message, body = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }

  /** Worth retrying as is: the server was busy or down, not refusing this request. */
  get transient() {
    return this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

/** The server could not be reached (offline, restarting, connection cut). */
export class NetworkError extends Error {
  get transient() {
    return true;
  }
}

function readStored() {
  try {
    const raw = localStorage.getItem(SESSION_KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

export class Session extends EventTarget {
  constructor() {
    super();
    this.state = readStored();
    this.timer = null;
    this.refreshing = null;
    window.addEventListener("storage", (event) => {
      if (event.key !== SESSION_KEY) return;
      const stored = readStored();
      if (!stored) {
        if (this.state) this.end("You signed out in another tab.");
      } else if (!this.state || stored.refresh_token !== this.state.refresh_token) {
        const switched = this.state && stored.user.id !== this.state.user.id;
        this.state = stored;
        this.schedule();
        this.dispatchEvent(new CustomEvent(switched ? "switched" : "tokens"));
      }
    });
    if (this.state) this.schedule();
  }

  get signedIn() {
    return this.state !== null;
  }

  get user() {
    return this.state?.user ?? null;
  }

  get accessToken() {
    return this.state?.access_token ?? null;
  }

  /** Milliseconds until the access token expires (negative once it has). */
  get expiresIn() {
    return this.state ? this.state.expires_at - Date.now() : -1;
  }

  /** Keep a TokenBody (register, login, refresh). */
  save(body) {
    this.state = {
      user: body.user,
      access_token: body.access_token,
      refresh_token: body.refresh_token,
      expires_at: Date.now() + body.expires_in * 1000,
      lifetime_ms: body.expires_in * 1000,
    };
    localStorage.setItem(SESSION_KEY, JSON.stringify(this.state));
    this.schedule();
    this.dispatchEvent(new CustomEvent("tokens"));
  }

  updateUser(user) {
    if (!this.state) return;
    this.state.user = { ...this.state.user, ...user };
    localStorage.setItem(SESSION_KEY, JSON.stringify(this.state));
  }

  /** Sign out here and in every tab; `reason` is shown on the login screen. */
  end(reason = "") {
    clearTimeout(this.timer);
    const had = this.state;
    this.state = null;
    localStorage.removeItem(SESSION_KEY);
    this.dispatchEvent(new CustomEvent("ended", { detail: { reason, user: had?.user ?? null } }));
  }

  schedule(delay = null) {
    clearTimeout(this.timer);
    if (!this.state) return;
    const margin = Math.min(REFRESH_MARGIN_MS, this.state.lifetime_ms / 10);
    const wait = delay ?? Math.max(0, this.expiresIn - margin);
    this.timer = setTimeout(() => this.refresh().catch(() => {}), wait);
  }

  /** Get a fresh pair: one refresh at a time per tab, one at a time across tabs. */
  refresh() {
    if (!this.refreshing) {
      const run = () => this.refreshOnce();
      const locked = navigator.locks ? navigator.locks.request(REFRESH_LOCK, run) : run();
      this.refreshing = locked.finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async refreshOnce() {
    const held = this.state;
    if (!held) throw new ApiError(401, "unauthorized", "signed out");
    const stored = readStored();
    if (!stored) {
      this.end("You signed out in another tab.");
      throw new ApiError(401, "unauthorized", "signed out");
    }
    if (stored.refresh_token !== held.refresh_token) {
      this.state = stored; // another tab rotated the pair already: use theirs
      this.schedule();
      this.dispatchEvent(new CustomEvent("tokens"));
      return;
    }
    let response;
    try {
      response = await fetch(apiUrl("api/auth/refresh"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: held.refresh_token }),
      });
    } catch (error) {
      this.schedule(REFRESH_RETRY_MS);
      throw new NetworkError(String(error));
    }
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      this.save(body);
      return;
    }
    const code = body?.error?.code ?? "error";
    if (response.status === 401) {
      this.end(code === "refresh_token_reused"
        ? "Your session was used elsewhere and has been closed for safety: sign in again."
        : "Your session has ended: sign in again.");
    } else {
      this.schedule(REFRESH_RETRY_MS);
    }
    throw new ApiError(response.status, code, body?.error?.message ?? response.statusText, body);
  }
}

export class Api {
  constructor(session) {
    this.session = session;
  }

  async request(method, path, { body, auth = true, retried = false } = {}) {
    const headers = {};
    if (auth) {
      if (this.session.expiresIn < 5_000) {
        await this.session.refresh().catch((error) => {
          if (!this.session.signedIn) throw error;
        });
      }
      headers.Authorization = `Bearer ${this.session.accessToken}`;
    }
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(apiUrl(path), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new NetworkError(String(error));
    }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (response.ok) return data;
    const code = data?.error?.code ?? "error";
    if (response.status === 401 && auth && !retried && code === "invalid_token") {
      await this.session.refresh(); // signs out when the refresh is refused
      return this.request(method, path, { body, auth, retried: true });
    }
    throw new ApiError(response.status, code, data?.error?.message ?? response.statusText, data);
  }

  // -- auth --------------------------------------------------------------------------
  async register(email, password, displayName) {
    const body = await this.request("POST", "api/auth/register", {
      body: { email, password, display_name: displayName },
      auth: false,
    });
    this.session.save(body);
    return body.user;
  }

  async login(email, password) {
    const body = await this.request("POST", "api/auth/login", {
      body: { email, password },
      auth: false,
    });
    this.session.save(body);
    return body.user;
  }

  /** Sign out here at once, and end the session's token family on the server (best
   * effort: a page offline now still forgets its tokens). */
  async logout() {
    const token = this.session.state?.refresh_token;
    this.session.end("");
    if (!token) return;
    await this.request("POST", "api/auth/logout", { body: { refresh_token: token }, auth: false })
      .catch(() => {});
  }

  // -- users -------------------------------------------------------------------------
  me() {
    return this.request("GET", "api/users/me");
  }

  user(id) {
    return this.request("GET", `api/users/${encodeURIComponent(id)}`);
  }

  /** The user with exactly this email, or null. */
  async findByEmail(email) {
    const body = await this.request("GET", `api/users?email=${encodeURIComponent(email)}`);
    return body.users[0] ?? null;
  }

  // -- chats -------------------------------------------------------------------------
  async chats() {
    return (await this.request("GET", "api/chats")).chats;
  }

  chat(id) {
    return this.request("GET", `api/chats/${id}`);
  }

  createDirect(userId) {
    return this.request("POST", "api/chats", { body: { type: "direct", member_ids: [userId] } });
  }

  createGroup(title, memberIds) {
    return this.request("POST", "api/chats", {
      body: { type: "group", member_ids: memberIds, title: title || null },
    });
  }

  addMembers(chatId, userIds) {
    return this.request("POST", `api/chats/${chatId}/members`, { body: { user_ids: userIds } });
  }

  history(chatId, beforeId = null, limit = 50) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (beforeId) query.set("before_id", beforeId);
    return this.request("GET", `api/chats/${chatId}/messages?${query}`);
  }

  send(chatId, text, clientMsgId, attachmentIds = []) {
    const body = { text, client_msg_id: clientMsgId };
    if (attachmentIds.length) body.attachment_ids = attachmentIds;
    return this.request("POST", `api/chats/${chatId}/messages`, { body });
  }

  markRead(chatId, seq) {
    return this.request("POST", `api/chats/${chatId}/read`, { body: { seq } });
  }

  typing(chatId, isTyping) {
    return this.request("POST", `api/chats/${chatId}/typing`, { body: { is_typing: isTyping } });
  }

  // -- attachments (§9) --------------------------------------------------------------
  /** Upload a File in the four steps; the ready Upload. */
  async upload(file) {
    const ticket = await this.request("POST", "api/uploads", {
      body: { filename: file.name, content_type: file.type || "application/octet-stream",
              size: file.size },
    });
    const request = ticket.upload_request;
    let put;
    try {
      put = await fetch(request.url, { method: request.method, headers: request.headers,
                                       body: file });
    } catch (error) {
      throw new NetworkError(String(error));
    }
    if (!put.ok) {
      const data = await put.json().catch(() => null);
      throw new ApiError(put.status, data?.error?.code ?? "upload_failed",
                         data?.error?.message ?? `upload refused (${put.status})`);
    }
    return this.request("POST", `api/uploads/${ticket.id}/complete`);
  }

  /** A short-lived download URL of an attachment: {url, expires_at}. */
  attachmentUrl(id) {
    return this.request("GET", `api/attachments/${id}?redirect=false`);
  }
}
