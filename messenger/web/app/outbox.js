// Sending messages so that each is stored once, whatever fails on the way (API_CONTRACT.md §5).
//
// Every message gets its `client_msg_id` when it is written and keeps it through every retry:
// the server stores one message per id and answers a repeat with the original. An attempt goes
// over the WebSocket when it is connected (acknowledged by `message_sent`, or by the message
// arriving by any other route), else over REST; no answer within ACK_TIMEOUT_MS, a dropped
// connection or a transient error means another attempt, backing off up to RETRY_MAX_MS, and
// at once when the socket is back. A permanent refusal (a 4xx other than 408/429) marks the
// message failed; the person may retry it or drop it. Messages not yet acknowledged are kept
// in localStorage (per user), so a reload goes on sending them.

import { ApiError } from "./api.js";

const ACK_TIMEOUT_MS = 5_000;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 5_000;
const TRANSIENT_FRAME_ERRORS = new Set(["rate_limited", "service_unavailable", "internal_error"]);

export function newClientMsgId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12)); // randomUUID needs a secure context
  return "w-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export class Outbox {
  constructor(api, realtime, store) {
    this.api = api;
    this.realtime = realtime;
    this.store = store;
    this.timers = new Map(); // client_msg_id -> timeout
    this.inFlight = new Set(); // client_msg_ids with a REST attempt under way
    this.tries = new Map();
    realtime.addEventListener("open", () => this.retryAll());
    store.addEventListener("change", (event) => {
      if (event.detail.what === "messages" || event.detail.what === "all") this.persist();
    });
  }

  get storageKey() {
    return `messenger.outbox.${this.store.me?.id}`;
  }

  /** Take up what a previous page of this user left unsent. */
  restore() {
    let saved = [];
    try {
      saved = JSON.parse(localStorage.getItem(this.storageKey) ?? "[]");
    } catch {
      saved = [];
    }
    for (const entry of saved) {
      this.store.addPending({ ...entry, state: entry.state === "failed" ? "failed" : "pending" });
      if (entry.state !== "failed") this.attempt(entry.clientMsgId);
    }
  }

  persist() {
    if (!this.store.me) return;
    const entries = [...this.store.pending.values()].map(
      ({ clientMsgId, chatId, text, attachments, state, createdAt }) =>
        ({ clientMsgId, chatId, text, attachments, state, createdAt }));
    if (entries.length) localStorage.setItem(this.storageKey, JSON.stringify(entries));
    else localStorage.removeItem(this.storageKey);
  }

  send(chatId, text, attachments = []) {
    const clientMsgId = newClientMsgId();
    this.store.addPending({ clientMsgId, chatId, text, attachments, state: "pending",
                            createdAt: new Date().toISOString() });
    this.attempt(clientMsgId);
    return clientMsgId;
  }

  retry(clientMsgId) {
    this.tries.delete(clientMsgId);
    this.store.setPendingState(clientMsgId, "pending");
    this.attempt(clientMsgId);
  }

  discard(clientMsgId) {
    this.clear(clientMsgId);
    this.store.pending.delete(clientMsgId);
    this.store.changed("messages");
  }

  retryAll() {
    for (const entry of this.store.pending.values()) {
      if (entry.state === "pending") this.attempt(entry.clientMsgId);
    }
  }

  clear(clientMsgId) {
    clearTimeout(this.timers.get(clientMsgId));
    this.timers.delete(clientMsgId);
  }

  later(clientMsgId, ms) {
    this.clear(clientMsgId);
    this.timers.set(clientMsgId, setTimeout(() => this.attempt(clientMsgId), ms));
  }

  backoff(clientMsgId) {
    const tries = (this.tries.get(clientMsgId) ?? 0) + 1;
    this.tries.set(clientMsgId, tries);
    const ceiling = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (tries - 1));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  attempt(clientMsgId) {
    const entry = this.store.pending.get(clientMsgId);
    this.clear(clientMsgId);
    if (!entry || entry.state !== "pending" || this.inFlight.has(clientMsgId)) return;
    const attachmentIds = entry.attachments.map((attachment) => attachment.id);
    const frame = { type: "send_message", chat_id: entry.chatId, text: entry.text,
                    client_msg_id: clientMsgId };
    if (attachmentIds.length) frame.attachment_ids = attachmentIds;
    if (this.realtime.send(frame)) {
      this.later(clientMsgId, ACK_TIMEOUT_MS);
      return;
    }
    this.inFlight.add(clientMsgId);
    this.api.send(entry.chatId, entry.text, clientMsgId, attachmentIds)
      .then((message) => this.acknowledged(message))
      .catch((error) => this.failedAttempt(clientMsgId, error))
      .finally(() => this.inFlight.delete(clientMsgId));
  }

  /** The stored message, from `message_sent`, a REST answer or the message's own event. */
  acknowledged(message) {
    if (!message.client_msg_id) return;
    this.clear(message.client_msg_id);
    this.tries.delete(message.client_msg_id);
    this.store.addMessage(message);
  }

  failedAttempt(clientMsgId, error) {
    if (error.transient || !(error instanceof ApiError)) {
      this.later(clientMsgId, this.backoff(clientMsgId));
    } else {
      this.clear(clientMsgId);
      this.store.setPendingState(clientMsgId, "failed", error.message);
    }
  }

  /** An `error` frame: the server refused a frame; `ref` names our message when it was one. */
  frameError(frame) {
    if (!frame.ref || !this.store.pending.has(frame.ref)) return false;
    if (TRANSIENT_FRAME_ERRORS.has(frame.code)) {
      this.later(frame.ref, this.backoff(frame.ref));
    } else {
      this.clear(frame.ref);
      this.store.setPendingState(frame.ref, "failed", frame.message);
    }
    return true;
  }
}
