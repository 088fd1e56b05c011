// The web client's wiring: session -> store <- REST and WebSocket events -> views.
//
// Loading order avoids gaps: the WebSocket connects first; once it is `ready` without a cursor
// (a stream that starts now), the chat list and the open chat's history are loaded over REST,
// so nothing that happened before is missed and what comes after arrives as events. A
// connection that resumed from a cursor needs no reload; `resync_required` reloads everything.

import { Api, ApiError, Session } from "./api.js";
import { Outbox } from "./outbox.js";
import { cursorKey, Realtime } from "./realtime.js";
import { Store } from "./store.js";
import { ConversationView, LoginView, Sidebar } from "./views.js";

const TYPING_REPEAT_MS = 3_000; // a start while typing only pushes the server's expiry back
const TYPING_IDLE_MS = 4_000; // no keystroke for this long: typing_stop
const MAX_TEXT = 4000;

const $ = (id) => document.getElementById(id);

const session = new Session();
const api = new Api(session);
const store = new Store();
let realtime = null;
let outbox = null;
let uploads = []; // the composer's files: {key, filename, state, upload, error}
const userRequests = new Map();
const historyRequests = new Map();
const readSent = new Map(); // chat id -> highest seq we marked read
const attachmentUrls = new Map(); // attachment id -> {url, until}
let typingState = { chatId: null, sentAt: 0, idle: null };
let booting = true;

// -- views ---------------------------------------------------------------------------------
const login = new LoginView({
  async onSubmit(mode, data) {
    if (mode === "register") {
      await api.register(data.email.trim(), data.password, data.display_name.trim());
    } else {
      await api.login(data.email.trim(), data.password);
    }
    start();
  },
});

const sidebar = new Sidebar(store, {
  onOpen: (chatId) => openChat(chatId),
  onSignOut: signOut,
  onDirect: startDirectChat,
  onGroup: createGroup,
});

const conversation = new ConversationView(store, {
  onSend: send,
  onTyping: typed,
  onOlder: () => loadHistory(store.openChatId, { older: true }),
  onRetry: (clientMsgId) => outbox.retry(clientMsgId),
  onDiscard: (clientMsgId) => outbox.discard(clientMsgId),
  onFiles: attach,
  onRemoveFile: (upload) => {
    uploads = uploads.filter((entry) => entry !== upload);
    render();
  },
  onAddMembers: addMembers,
  attachmentUrl,
  onDismissNotice: () => store.setNotice(null),
});

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    sidebar.render();
    conversation.render(uploads);
    const unread = [...store.chats.values()].reduce((sum, chat) => sum + chat.unread, 0);
    document.title = unread ? `(${unread}) messenger` : "messenger";
    $("main").classList.toggle("show-chat", Boolean(store.openChatId));
  });
}
store.addEventListener("change", render);
$("back").addEventListener("click", () => store.openChat(null));

// -- session -------------------------------------------------------------------------------
session.addEventListener("ended", (event) => stop(event.detail.reason));
session.addEventListener("switched", () => location.reload());

function start() {
  booting = true;
  store.reset(session.user);
  readSent.clear();
  login.hide();
  $("main").hidden = false;
  realtime = new Realtime(session, api, handleFrame);
  realtime.addEventListener("connecting", () => {
    if (store.connection !== "offline") store.setConnection("connecting");
  });
  realtime.addEventListener("waiting", () => store.setConnection("offline"));
  realtime.addEventListener("closed", () => store.setConnection("connecting"));
  realtime.addEventListener("open", (event) => {
    store.setConnection("online");
    readSent.clear(); // a mark_read may have been lost with the old socket
    if (!event.detail.resumed) reload();
    else markReadIfSeen();
  });
  outbox = new Outbox(api, realtime, store);
  outbox.restore();
  realtime.start();
  reload(); // paint at once; the first `ready` loads again when it started fresh
  api.me().then((me) => {
    session.updateUser(me);
    store.me = { ...store.me, ...me };
    store.addUser(store.me);
  }).catch(() => {});
}

/** Sign out on purpose: what this page kept for the user goes too (unsent messages, cursor). */
function signOut() {
  const userId = store.me?.id;
  if (userId) {
    localStorage.removeItem(`messenger.outbox.${userId}`);
    localStorage.removeItem(cursorKey(userId));
  }
  api.logout();
}

function stop(reason) {
  realtime?.stop();
  realtime = null;
  outbox = null;
  uploads = [];
  store.reset(null);
  $("main").hidden = true;
  login.show(reason);
}

// -- loading -------------------------------------------------------------------------------
async function reload() {
  try {
    const views = await api.chats();
    store.setChats(views);
    const ids = new Set(views.flatMap((view) => view.member_ids));
    ensureUsers([...ids]);
    const open = store.openChatId;
    if (open && store.chats.has(open)) await loadHistory(open, { replace: true });
    booting = false;
  } catch (error) {
    if (!(error instanceof ApiError) || error.transient) return; // the socket's `ready` retries
    store.setNotice(error.message, "error");
  }
}

function ensureUsers(ids) {
  return Promise.all(ids.filter((id) => !store.users.has(id)).map((id) => {
    if (!userRequests.has(id)) {
      userRequests.set(id, api.user(id).then((user) => store.addUser(user)).catch(() => {})
        .finally(() => userRequests.delete(id)));
    }
    return userRequests.get(id);
  }));
}

async function loadHistory(chatId, { older = false, replace = false } = {}) {
  const chat = store.chats.get(chatId);
  if (!chat || (older && !chat.hasMore)) return;
  const key = `${chatId}:${older}`;
  if (historyRequests.has(key)) return historyRequests.get(key);
  const before = older ? chat.sorted()[0]?.id ?? null : null;
  const request = api.history(chatId, before)
    .then((page) => {
      store.addPage(chatId, page, { older, replace });
      ensureUsers([...new Set(page.messages.map((message) => message.sender_id))]);
      markReadIfSeen();
    })
    .catch((error) => {
      if (!(error instanceof ApiError) || error.transient) return;
      store.setNotice(error.message, "error");
    })
    .finally(() => historyRequests.delete(key));
  historyRequests.set(key, request);
  return request;
}

async function ensureChat(chatId) {
  if (store.chats.has(chatId)) return store.chats.get(chatId);
  const view = await api.chat(chatId);
  ensureUsers(view.member_ids);
  return store.upsertChat(view);
}

// -- events --------------------------------------------------------------------------------
function handleFrame(frame) {
  switch (frame.type) {
    case "new_message":
      received(frame.message);
      break;
    case "message_sent":
      outbox?.acknowledged(frame.message);
      received(frame.message);
      break;
    case "typing":
      store.typing(frame);
      break;
    case "read":
      store.read(frame);
      break;
    case "presence":
      store.setPresence(frame);
      break;
    case "chat_created":
      if (!store.chats.has(frame.chat.id)) {
        store.upsertChat({ ...frame.chat, last_message: null, unread_count: 0 });
      }
      ensureUsers(frame.chat.member_ids);
      break;
    case "members_added":
      if (store.chats.has(frame.chat.id)) store.upsertChat(frame.chat);
      else ensureChat(frame.chat.id).then(() => loadHistory(frame.chat.id)).catch(() => {});
      ensureUsers(frame.user_ids);
      break;
    case "member_removed":
      if (frame.user_id === store.me?.id) store.removeChat(frame.chat.id);
      else store.upsertChat(frame.chat);
      break;
    case "resync_required":
      if (!booting) {
        store.setNotice("You were away for a while: chats and messages were reloaded.", "info");
      }
      reload();
      break;
    case "error":
      if (!outbox?.frameError(frame) && frame.code !== "rate_limited") {
        store.setNotice(frame.message, "error");
      }
      break;
    default:
      break; // ready, pong
  }
}

function received(message) {
  if (!store.chats.has(message.chat_id)) {
    ensureChat(message.chat_id).then(() => received(message)).catch(() => {});
    return;
  }
  store.addMessage(message);
  ensureUsers([message.sender_id]);
  markReadIfSeen();
}

// -- reading -------------------------------------------------------------------------------
/** Mark the open chat read up to its newest message, while the page is visible. */
function markReadIfSeen() {
  const chat = store.chats.get(store.openChatId);
  if (!chat || document.visibilityState !== "visible") return;
  const seq = chat.newestSeq;
  if (seq === 0 || seq <= (readSent.get(chat.id) ?? 0)) return;
  const newest = chat.messages.get(seq) ?? chat.lastMessage;
  const fromOthers = newest && newest.sender_id !== store.me?.id;
  if (chat.unread === 0 && !fromOthers) return;
  readSent.set(chat.id, seq);
  chat.unread = 0;
  store.changed("read");
  const frame = { type: "mark_read", chat_id: chat.id, seq };
  if (!realtime?.send(frame)) {
    api.markRead(chat.id, seq)
      .then((state) => store.read({ ...state, user_id: store.me.id }))
      .catch(() => readSent.delete(chat.id));
  }
}
store.visible = document.visibilityState === "visible";
document.addEventListener("visibilitychange", () => {
  store.visible = document.visibilityState === "visible";
  markReadIfSeen();
});

async function openChat(chatId) {
  stopTyping();
  uploads = [];
  store.openChat(chatId);
  const chat = store.chats.get(chatId);
  if (chat && !chat.loaded) await loadHistory(chatId);
  markReadIfSeen();
  $("composer-text").focus();
}

// -- typing --------------------------------------------------------------------------------
function sendTyping(chatId, on) {
  const frame = { type: on ? "typing_start" : "typing_stop", chat_id: chatId };
  if (!realtime?.send(frame)) api.typing(chatId, on).catch(() => {});
}

function typed(active) {
  const chatId = store.openChatId;
  if (!chatId) return;
  if (!active) {
    stopTyping();
    return;
  }
  const now = Date.now();
  if (typingState.chatId !== chatId || now - typingState.sentAt > TYPING_REPEAT_MS) {
    if (typingState.chatId && typingState.chatId !== chatId) stopTyping();
    sendTyping(chatId, true);
    typingState.chatId = chatId;
    typingState.sentAt = now;
  }
  clearTimeout(typingState.idle);
  typingState.idle = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping({ send = true } = {}) {
  clearTimeout(typingState.idle);
  if (typingState.chatId && send) sendTyping(typingState.chatId, false);
  typingState = { chatId: null, sentAt: 0, idle: null };
}

// Typing shown here ends by itself too (the server sends is_typing false, but best effort).
setInterval(() => {
  const now = Date.now();
  for (const chat of store.chats.values()) {
    for (const [userId, until] of chat.typing) {
      if (until <= now) {
        chat.typing.delete(userId);
        store.changed("typing");
      }
    }
  }
}, 1_000);

// -- sending -------------------------------------------------------------------------------
function send(text) {
  const chatId = store.openChatId;
  if (!chatId || !outbox) return false;
  if (uploads.some((upload) => upload.state === "uploading")) {
    store.setNotice("Wait until the files are uploaded.", "info");
    return false;
  }
  const ready = uploads.filter((upload) => upload.state === "ready");
  const body = text.trim() ? text : "";
  if (!body && !ready.length) return false;
  if (body.length > MAX_TEXT) {
    store.setNotice(`A message has at most ${MAX_TEXT} characters.`, "error");
    return false;
  }
  stopTyping({ send: false }); // a message ends typing on the server
  const attachments = ready.map(({ upload }) => ({
    id: upload.id, filename: upload.filename, content_type: upload.content_type,
    size: upload.size,
  }));
  uploads = [];
  outbox.send(chatId, body, attachments);
  return true;
}

function attach(files) {
  for (const file of files) {
    const entry = { key: Math.random(), filename: file.name, state: "uploading" };
    uploads.push(entry);
    api.upload(file)
      .then((upload) => {
        entry.state = "ready";
        entry.upload = upload;
      })
      .catch((error) => {
        entry.state = "failed";
        entry.error = error.message;
      })
      .finally(render);
  }
  render();
}

async function attachmentUrl(id) {
  const cached = attachmentUrls.get(id);
  if (cached && cached.until > Date.now() + 30_000) return cached.url;
  const { url, expires_at: expiresAt } = await api.attachmentUrl(id);
  attachmentUrls.set(id, { url, until: Date.parse(expiresAt) });
  return url;
}

// -- new chats -----------------------------------------------------------------------------
async function findPeople(emails) {
  const found = await Promise.all(emails.map(async (email) => {
    try {
      return [email, await api.findByEmail(email)];
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        throw new Error("This server cannot look people up by email.");
      }
      throw error;
    }
  }));
  const missing = found.filter(([, user]) => !user).map(([email]) => email);
  if (missing.length) throw new Error(`No one has the email ${missing.join(", ")}.`);
  const users = found.map(([, user]) => user);
  for (const user of users) store.addUser(user);
  return users;
}

async function startDirectChat(email) {
  const [user] = await findPeople([email]);
  if (user.id === store.me?.id) throw new Error("That is your own email.");
  const view = await api.createDirect(user.id);
  store.upsertChat(view);
  await openChat(view.id);
}

async function createGroup(title, emails) {
  const users = await findPeople(emails);
  const view = await api.createGroup(title, users.map((user) => user.id));
  store.upsertChat(view);
  await openChat(view.id);
}

async function addMembers(emails) {
  const chatId = store.openChatId;
  const users = await findPeople(emails);
  store.upsertChat(await api.addMembers(chatId, users.map((user) => user.id)));
}

// -- boot ----------------------------------------------------------------------------------
if (session.signedIn) start();
else login.show();
