// What the page knows: chats, their messages, people, presence, typing, read positions, and
// messages still being sent. No I/O: main.js feeds it REST answers and WebSocket events, the
// views read it and listen for "change".
//
// A chat's messages are kept by `seq`, so a message that arrives more than once (the REST
// answer of a send, the live event, a resumed stream, a history page) is kept once, and the
// list is always in `seq` order.

const TYPING_SHOWN_MS = 7_000; // the server ends typing after TYPING_TTL_SECONDS (6 s)

function activity(chat) {
  return chat.lastMessage?.created_at ?? chat.created_at;
}

export class ChatState {
  constructor(view) {
    this.id = view.id;
    this.messages = new Map(); // seq -> Message
    this.hasMore = true; // older messages may exist (until a page says otherwise)
    this.loaded = false; // a history page arrived
    this.readBy = new Map(); // other user id -> highest seq they read (from read events)
    this.typing = new Map(); // user id -> until (ms)
    this.unread = 0;
    this.lastMessage = null;
    this.lastSeq = 0;
    this.apply(view);
  }

  /** Take a Chat or ChatView from the server, keeping what is newer here. */
  apply(view) {
    this.type = view.type;
    this.title = view.title;
    this.member_ids = view.member_ids;
    this.created_at = view.created_at;
    if ("unread_count" in view) {
      this.unread = view.unread_count;
    }
    if (view.last_message && (!this.lastMessage || view.last_message.seq >= this.lastMessage.seq)) {
      this.lastMessage = view.last_message;
    }
    this.lastSeq = Math.max(this.lastSeq, view.last_seq ?? 0);
  }

  /** Messages oldest first. */
  sorted() {
    return [...this.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  get newestSeq() {
    return Math.max(this.lastSeq, this.lastMessage?.seq ?? 0);
  }

  /** The highest seq any other member is known to have read. */
  readUpTo() {
    let seq = 0;
    for (const value of this.readBy.values()) seq = Math.max(seq, value);
    return seq;
  }

  typists(now = Date.now()) {
    return [...this.typing].filter(([, until]) => until > now).map(([userId]) => userId);
  }
}

export class Store extends EventTarget {
  constructor() {
    super();
    this.visible = true; // the page is shown (main.js follows document.visibilityState)
    this.reset(null);
  }

  reset(me) {
    this.me = me;
    this.users = new Map(); // id -> User
    this.chats = new Map(); // id -> ChatState
    this.presence = new Map(); // user id -> {status, last_seen}
    this.pending = new Map(); // client_msg_id -> {clientMsgId, chatId, text, attachments, state}
    this.openChatId = null;
    this.connection = "connecting"; // "connecting" | "online" | "offline"
    this.notice = null; // {text, kind}
    if (me) this.users.set(me.id, me);
    this.changed();
  }

  changed(what = "all") {
    this.dispatchEvent(new CustomEvent("change", { detail: { what } }));
  }

  // -- chats -------------------------------------------------------------------------
  /** The chat list from `GET /api/chats`: chats not in it are gone (left, or a resync). */
  setChats(views) {
    const seen = new Set();
    for (const view of views) {
      seen.add(view.id);
      this.upsertChat(view, { quiet: true });
    }
    for (const id of [...this.chats.keys()]) if (!seen.has(id)) this.chats.delete(id);
    this.changed("chats");
  }

  upsertChat(view, { quiet = false } = {}) {
    const known = this.chats.get(view.id);
    if (known) {
      const before = known.lastSeq;
      known.apply(view);
      if ("unread_count" in view) {
        // messages that reached us after the server answered are unread on top of its count
        for (const message of known.messages.values()) {
          if (message.seq > (view.last_seq ?? before) && message.sender_id !== this.me?.id
              && !this.seeing(view.id)) {
            known.unread += 1;
          }
        }
      }
    } else {
      this.chats.set(view.id, new ChatState(view));
    }
    if (!quiet) this.changed("chats");
    return this.chats.get(view.id);
  }

  removeChat(chatId) {
    this.chats.delete(chatId);
    if (this.openChatId === chatId) this.openChatId = null;
    this.changed("chats");
  }

  /** Chats, most recent activity first (ties: newest id first), as the server orders them. */
  chatList() {
    return [...this.chats.values()].sort((a, b) => {
      const order = activity(b).localeCompare(activity(a));
      return order || b.id.localeCompare(a.id);
    });
  }

  // -- messages ----------------------------------------------------------------------
  /** A history page (oldest first). `older`: it was fetched with before_id. */
  addPage(chatId, page, { older = false, replace = false } = {}) {
    const chat = this.chats.get(chatId);
    if (!chat) return;
    if (replace) chat.messages.clear();
    for (const message of page.messages) chat.messages.set(message.seq, message);
    if (older || replace || !chat.loaded) chat.hasMore = page.has_more;
    chat.loaded = true;
    const newest = page.messages.at(-1);
    if (newest && (!chat.lastMessage || newest.seq >= chat.lastMessage.seq)) {
      chat.lastMessage = newest;
    }
    if (newest) chat.lastSeq = Math.max(chat.lastSeq, newest.seq);
    this.changed("messages");
  }

  /** A message from any source: a live event, a send's answer, a resumed stream. True when
   * it was not known. */
  addMessage(message) {
    const chat = this.chats.get(message.chat_id);
    if (message.client_msg_id && message.sender_id === this.me?.id) {
      this.pending.delete(message.client_msg_id);
    }
    if (!chat) {
      this.changed("messages");
      return false;
    }
    const fresh = !chat.messages.has(message.seq);
    chat.messages.set(message.seq, message);
    const beyond = message.seq > chat.newestSeq;
    if (!chat.lastMessage || message.seq >= chat.lastMessage.seq) chat.lastMessage = message;
    chat.lastSeq = Math.max(chat.lastSeq, message.seq);
    chat.typing.delete(message.sender_id); // a message ends its sender's typing
    if (message.sender_id !== this.me?.id) {
      // sending moves the sender's read position up to their message (no read event says so)
      chat.readBy.set(message.sender_id,
                      Math.max(chat.readBy.get(message.sender_id) ?? 0, message.seq));
    }
    if (beyond && message.sender_id !== this.me?.id && !this.seeing(chat.id)) {
      chat.unread += 1;
    }
    this.changed("messages");
    return fresh;
  }

  // -- sending -----------------------------------------------------------------------
  addPending(entry) {
    this.pending.set(entry.clientMsgId, entry);
    this.changed("messages");
  }

  setPendingState(clientMsgId, state, error = null) {
    const entry = this.pending.get(clientMsgId);
    if (!entry) return;
    entry.state = state;
    entry.error = error;
    this.changed("messages");
  }

  pendingIn(chatId) {
    return [...this.pending.values()].filter((entry) => entry.chatId === chatId);
  }

  // -- read state, typing, presence --------------------------------------------------
  read(event) {
    const chat = this.chats.get(event.chat_id);
    if (!chat) return;
    if (event.user_id === this.me?.id) {
      chat.unread = event.unread_count;
    } else {
      chat.readBy.set(event.user_id, Math.max(chat.readBy.get(event.user_id) ?? 0, event.seq));
    }
    this.changed("read");
  }

  typing(event) {
    const chat = this.chats.get(event.chat_id);
    if (!chat || event.user_id === this.me?.id) return;
    if (event.is_typing) chat.typing.set(event.user_id, Date.now() + TYPING_SHOWN_MS);
    else chat.typing.delete(event.user_id);
    this.changed("typing");
  }

  setPresence(event) {
    this.presence.set(event.user_id, { status: event.status, last_seen: event.last_seen });
    this.changed("presence");
  }

  // -- people ------------------------------------------------------------------------
  addUser(user) {
    this.users.set(user.id, user);
    this.changed("users");
  }

  name(userId) {
    if (userId === this.me?.id) return "You";
    return this.users.get(userId)?.display_name ?? "…";
  }

  /** Other members of a chat (for a direct chat: the one other person). */
  others(chat) {
    return chat.member_ids.filter((id) => id !== this.me?.id);
  }

  chatTitle(chat) {
    if (chat.type === "direct") {
      const other = this.others(chat)[0];
      return other ? this.name(other) : "Just you";
    }
    if (chat.title) return chat.title;
    const names = this.others(chat).map((id) => this.name(id));
    return names.length ? names.join(", ") : "New group";
  }

  // -- the page ----------------------------------------------------------------------
  setConnection(state) {
    if (this.connection === state) return;
    this.connection = state;
    this.changed("connection");
  }

  setNotice(text, kind = "info") {
    this.notice = text ? { text, kind } : null;
    this.changed("notice");
  }

  /** The chat is open and the page visible: its new messages are read as they come. */
  seeing(chatId) {
    return this.visible && chatId === this.openChatId;
  }

  openChat(chatId) {
    this.openChatId = chatId;
    this.changed("open");
  }
}
