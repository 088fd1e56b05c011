// Rendering: the login screen, the chat list, the open chat. Views read the store and call
// back into main.js for anything that does I/O. Text from the server only ever goes into the
// page as text nodes (never as HTML).

const $ = (id) => document.getElementById(id);

/** A DOM element: h("li", {class: "x", dataset: {seq: 1}, onclick}, "text", child, ...). */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) element.append(child);
  }
  return element;
}

export function formatTime(iso) {
  const date = new Date(iso);
  const now = new Date();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === now.toDateString()) return time;
  return `${date.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function hue(text) {
  let hash = 0;
  for (const char of text) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return hash % 360;
}

function initials(name) {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? words[0][0] + words.at(-1)[0] : (words[0] ?? "?").slice(0, 2);
  return letters.toUpperCase();
}

/** Fill an avatar element: initials on a colour of the id, and a presence dot. */
export function paintAvatar(element, { id, name, presence = null, group = false }) {
  element.textContent = group ? "#" : initials(name || "?");
  element.style.setProperty("--hue", hue(id || name || "?"));
  element.dataset.presence = presence ?? "unknown";
  element.title = presence ? `${name}: ${presence}` : name;
}

function typingText(store, chat) {
  const names = chat.typists().map((id) => store.name(id));
  if (!names.length) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return "Several people are typing…";
}

function preview(store, chat) {
  const typing = typingText(store, chat);
  if (typing) return { text: typing, typing: true };
  const message = chat.lastMessage;
  if (!message) return { text: "No messages yet", typing: false };
  const who = message.sender_id === store.me?.id ? "You: "
    : chat.type === "group" ? `${store.name(message.sender_id)}: ` : "";
  const files = message.attachments ?? [];
  const body = message.text || (files.length ? `Attachment: ${files[0].filename}` : "");
  return { text: who + body, typing: false };
}

// -- login ---------------------------------------------------------------------------------
export class LoginView {
  constructor({ onSubmit }) {
    this.form = $("login-form");
    this.note = $("login-note");
    this.mode = "login";
    $("tab-login").addEventListener("click", () => this.setMode("login"));
    $("tab-register").addEventListener("click", () => this.setMode("register"));
    this.form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(this.form));
      this.busy(true);
      try {
        await onSubmit(this.mode, data);
        this.form.reset();
        this.say("");
      } catch (error) {
        this.say(error.message, "error");
      } finally {
        this.busy(false);
      }
    });
    this.setMode("login");
  }

  setMode(mode) {
    this.mode = mode;
    const register = mode === "register";
    $("tab-login").setAttribute("aria-selected", String(!register));
    $("tab-register").setAttribute("aria-selected", String(register));
    this.form.classList.toggle("registering", register);
    this.form.elements.display_name.required = register;
    this.form.elements.password.minLength = register ? 8 : 0;
    this.form.elements.password.autocomplete = register ? "new-password" : "current-password";
    $("login-submit").textContent = register ? "Create account" : "Sign in";
  }

  busy(on) {
    $("login-submit").disabled = on;
  }

  say(text, kind = "info") {
    this.note.textContent = text;
    this.note.dataset.kind = kind;
  }

  show(reason = "") {
    $("main").hidden = true;
    $("login").hidden = false;
    this.say(reason, reason ? "error" : "info");
    this.form.elements.email.focus();
  }

  hide() {
    $("login").hidden = true;
  }
}

// -- the chat list -------------------------------------------------------------------------
export class Sidebar {
  constructor(store, { onOpen, onSignOut, onDirect, onGroup }) {
    this.store = store;
    this.list = $("chat-list");
    this.items = new Map(); // chat id -> li
    $("sign-out").addEventListener("click", onSignOut);
    const panel = $("new-chat-panel");
    $("new-chat-toggle").addEventListener("click", () => {
      panel.hidden = !panel.hidden;
      if (!panel.hidden) $("direct-form").elements.email.focus();
    });
    this.onOpen = onOpen;
    this.bindForm($("direct-form"), (data) => onDirect(data.email.trim()));
    this.bindForm($("group-form"), (data) => onGroup(
      data.title.trim(), data.emails.split(/[\s,;]+/).filter(Boolean)));
  }

  bindForm(form, handler) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button");
      button.disabled = true;
      this.say("");
      try {
        await handler(Object.fromEntries(new FormData(form)));
        form.reset();
        $("new-chat-panel").hidden = true;
      } catch (error) {
        this.say(error.message, "error");
      } finally {
        button.disabled = false;
      }
    });
  }

  say(text, kind = "info") {
    $("new-chat-note").textContent = text;
    $("new-chat-note").dataset.kind = kind;
  }

  renderMe() {
    const me = this.store.me;
    if (!me) return;
    $("me-name").textContent = me.display_name;
    paintAvatar($("me-avatar"), { id: me.id, name: me.display_name });
    const labels = { online: "Online", connecting: "Connecting…", offline: "Offline — reconnecting…" };
    const connection = $("connection");
    connection.textContent = labels[this.store.connection];
    connection.dataset.state = this.store.connection;
  }

  render() {
    this.renderMe();
    const chats = this.store.chatList();
    $("no-chats").hidden = chats.length > 0;
    const keep = new Set(chats.map((chat) => chat.id));
    for (const [id, item] of this.items) {
      if (!keep.has(id)) {
        item.remove();
        this.items.delete(id);
      }
    }
    chats.forEach((chat, index) => {
      const item = this.items.get(chat.id) ?? this.createItem(chat.id);
      this.fill(item, chat);
      if (this.list.children[index] !== item) this.list.insertBefore(item, this.list.children[index] ?? null);
    });
  }

  createItem(chatId) {
    const item = h("li", { class: "chat-item", dataset: { chatId } },
      h("button", { type: "button", class: "chat-button", onclick: () => this.onOpen(chatId) },
        h("span", { class: "avatar" }),
        h("span", { class: "chat-text" },
          h("span", { class: "chat-top" },
            h("span", { class: "chat-name" }), h("time", { class: "chat-time" })),
          h("span", { class: "chat-bottom" },
            h("span", { class: "chat-preview" }), h("span", { class: "badge" })))));
    this.items.set(chatId, item);
    return item;
  }

  fill(item, chat) {
    const store = this.store;
    const title = store.chatTitle(chat);
    const other = chat.type === "direct" ? store.others(chat)[0] : null;
    paintAvatar(item.querySelector(".avatar"), {
      id: other ?? chat.id, name: title, group: chat.type === "group",
      presence: other ? store.presence.get(other)?.status : null,
    });
    item.querySelector(".chat-name").textContent = title;
    const last = chat.lastMessage;
    item.querySelector(".chat-time").textContent = last ? formatTime(last.created_at) : "";
    const { text, typing } = preview(store, chat);
    const previewElement = item.querySelector(".chat-preview");
    previewElement.textContent = text;
    previewElement.classList.toggle("is-typing", typing);
    const badge = item.querySelector(".badge");
    badge.textContent = chat.unread > 99 ? "99+" : String(chat.unread);
    badge.hidden = chat.unread === 0;
    item.classList.toggle("unread", chat.unread > 0);
    item.classList.toggle("active", chat.id === store.openChatId);
  }
}

// -- the open chat -------------------------------------------------------------------------
export class ConversationView {
  constructor(store, handlers) {
    this.store = store;
    this.handlers = handlers; // onSend, onTyping, onOlder, onRetry, onDiscard, onFiles,
    // onRemoveFile, onAddMembers, attachmentUrl, onDismissNotice
    this.scroller = $("messages");
    this.list = $("message-list");
    this.items = new Map(); // key -> li
    this.renderedChat = null;
    this.text = $("composer-text");

    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    this.text.addEventListener("input", () => {
      this.autosize();
      handlers.onTyping(this.text.value.length > 0);
    });
    $("load-older").addEventListener("click", () => handlers.onOlder());
    this.scroller.addEventListener("scroll", () => {
      if (this.scroller.scrollTop < 40 && !$("load-older").hidden) handlers.onOlder();
    });
    $("file-input").addEventListener("change", (event) => {
      handlers.onFiles([...event.target.files]);
      event.target.value = "";
    });
    $("add-members-toggle").addEventListener("click", () => {
      const form = $("add-members-form");
      form.hidden = !form.hidden;
      if (!form.hidden) form.elements.emails.focus();
    });
    $("add-members-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.target;
      try {
        await handlers.onAddMembers(form.elements.emails.value.split(/[\s,;]+/).filter(Boolean));
        form.reset();
        form.hidden = true;
      } catch (error) {
        this.store.setNotice(error.message, "error");
      }
    });
  }

  submit() {
    const text = this.text.value;
    if (this.handlers.onSend(text)) {
      this.text.value = "";
      this.autosize();
    }
    this.text.focus();
  }

  autosize() {
    this.text.style.height = "auto";
    const border = this.text.offsetHeight - this.text.clientHeight;
    this.text.style.height = `${Math.min(this.text.scrollHeight + border, 160)}px`;
    this.text.style.overflowY = this.text.scrollHeight + border > 160 ? "auto" : "hidden";
  }

  renderNotice() {
    const notice = this.store.notice;
    const element = $("notice");
    element.hidden = !notice;
    element.replaceChildren();
    if (!notice) return;
    element.dataset.kind = notice.kind;
    element.append(h("span", {}, notice.text),
      h("button", { type: "button", class: "link", "aria-label": "Dismiss",
                    onclick: () => this.handlers.onDismissNotice() }, "×"));
  }

  render(uploads = []) {
    this.renderNotice();
    const store = this.store;
    const chat = store.chats.get(store.openChatId);
    $("no-chat").hidden = Boolean(chat);
    $("chat").hidden = !chat;
    if (!chat) {
      this.renderedChat = null;
      return;
    }
    if (this.renderedChat !== chat.id) {
      this.list.replaceChildren();
      this.items.clear();
      this.renderedChat = chat.id;
      $("add-members-form").hidden = true;
      this.text.value = "";
      this.autosize();
      this.stickToBottom = true;
    }
    this.renderHeader(chat);
    this.renderMessages(chat);
    $("typing").textContent = typingText(store, chat);
    this.renderUploads(uploads);
  }

  renderHeader(chat) {
    const store = this.store;
    const title = store.chatTitle(chat);
    const other = chat.type === "direct" ? store.others(chat)[0] : null;
    const presence = other ? store.presence.get(other) : null;
    paintAvatar($("chat-avatar"), { id: other ?? chat.id, name: title,
                                    group: chat.type === "group", presence: presence?.status });
    $("chat-title").textContent = title;
    let subtitle = "";
    if (chat.type === "group") {
      subtitle = chat.member_ids.map((id) => store.name(id)).join(", ");
    } else if (presence?.status === "online") {
      subtitle = "online";
    } else if (presence?.last_seen) {
      subtitle = `last seen ${formatTime(presence.last_seen)}`;
    }
    $("chat-subtitle").textContent = subtitle;
    $("add-members-toggle").hidden = chat.type !== "group";
  }

  renderMessages(chat) {
    const store = this.store;
    const scroller = this.scroller;
    const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
    const firstBefore = this.list.firstElementChild;
    const heightBefore = scroller.scrollHeight;
    const topBefore = scroller.scrollTop;

    const readUpTo = chat.readUpTo();
    const rows = chat.sorted().map((message) => ({ key: `m:${message.id}`, message }));
    for (const entry of store.pendingIn(chat.id)) rows.push({ key: `p:${entry.clientMsgId}`, entry });
    const keep = new Set(rows.map((row) => row.key));
    for (const [key, item] of this.items) {
      if (!keep.has(key)) {
        item.remove();
        this.items.delete(key);
      }
    }
    let ownAdded = false;
    rows.forEach((row, index) => {
      let item = this.items.get(row.key);
      if (!item) {
        item = row.message ? this.messageItem(chat, row.message) : this.pendingItem(row.entry);
        this.items.set(row.key, item);
        if (row.entry || row.message.sender_id === store.me?.id) ownAdded = true;
      }
      if (row.message) this.updateStatus(item, chat, row.message, readUpTo);
      else this.updatePending(item, row.entry);
      if (this.list.children[index] !== item) this.list.insertBefore(item, this.list.children[index] ?? null);
    });

    $("load-older").hidden = !chat.hasMore || !chat.loaded;
    if (this.stickToBottom || nearBottom || ownAdded) {
      scroller.scrollTop = scroller.scrollHeight;
      this.stickToBottom = false;
    } else if (firstBefore && this.list.firstElementChild !== firstBefore) {
      scroller.scrollTop = topBefore + (scroller.scrollHeight - heightBefore); // older page
    }
  }

  messageItem(chat, message) {
    const store = this.store;
    const mine = message.sender_id === store.me?.id;
    return h("li", { class: `message ${mine ? "mine" : "theirs"}`,
                     dataset: { seq: message.seq, id: message.id } },
      h("div", { class: "bubble" },
        !mine && chat.type === "group" ? h("div", { class: "sender" }, store.name(message.sender_id)) : null,
        message.text ? h("div", { class: "text" }, message.text) : null,
        message.attachments?.length ? this.attachmentList(message.attachments) : null,
        h("div", { class: "meta" },
          h("time", { datetime: message.created_at }, formatTime(message.created_at)),
          mine ? h("span", { class: "status" }) : null)));
  }

  updateStatus(item, chat, message, readUpTo) {
    const status = item.querySelector(".status");
    if (!status) return;
    const read = readUpTo >= message.seq;
    const label = read ? (chat.type === "group" ? this.readByText(chat, message.seq) : "Read") : "Sent";
    if (status.textContent !== label) status.textContent = label;
    status.dataset.state = read ? "read" : "sent";
  }

  readByText(chat, seq) {
    const count = [...chat.readBy.values()].filter((value) => value >= seq).length;
    return `Read by ${count}`;
  }

  pendingItem(entry) {
    return h("li", { class: "message mine pending", dataset: { clientMsgId: entry.clientMsgId } },
      h("div", { class: "bubble" },
        entry.text ? h("div", { class: "text" }, entry.text) : null,
        entry.attachments.length ? h("div", { class: "files" },
          entry.attachments.map((a) => h("span", { class: "file" }, a.filename))) : null,
        h("div", { class: "meta" }, h("span", { class: "status" }))));
  }

  updatePending(item, entry) {
    const meta = item.querySelector(".meta");
    item.classList.toggle("failed", entry.state === "failed");
    if (entry.state === "failed") {
      if (meta.dataset.state === "failed") return;
      meta.dataset.state = "failed";
      meta.replaceChildren(
        h("span", { class: "status", dataset: { state: "failed" } },
          `Not sent${entry.error ? `: ${entry.error}` : ""}`),
        h("button", { type: "button", class: "link", onclick: () => this.handlers.onRetry(entry.clientMsgId) }, "Retry"),
        h("button", { type: "button", class: "link", onclick: () => this.handlers.onDiscard(entry.clientMsgId) }, "Delete"));
    } else if (meta.dataset.state !== "pending") {
      meta.dataset.state = "pending";
      meta.replaceChildren(h("span", { class: "status", dataset: { state: "pending" } }, "Sending…"));
    }
  }

  attachmentList(attachments) {
    return h("div", { class: "files" }, attachments.map((attachment) => {
      if (attachment.content_type.startsWith("image/")) {
        const image = h("img", { class: "preview", alt: attachment.filename });
        image.addEventListener("load", () => {
          const scroller = this.scroller; // keep the newest message in view as the image grows
          const gap = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight;
          if (gap < image.height + 80) scroller.scrollTop = scroller.scrollHeight;
        });
        this.handlers.attachmentUrl(attachment.id)
          .then((url) => { image.src = url; })
          .catch(() => { image.alt = `${attachment.filename} (could not be loaded)`; });
        return h("figure", { class: "image" }, image,
          h("figcaption", {}, attachment.filename));
      }
      return h("button", { type: "button", class: "file", onclick: async () => {
        const url = await this.handlers.attachmentUrl(attachment.id);
        window.open(url, "_blank", "noopener");
      } }, `${attachment.filename} · ${formatSize(attachment.size)}`);
    }));
  }

  renderUploads(uploads) {
    const chips = $("attachments");
    chips.replaceChildren(...uploads.map((upload) => h("span",
      { class: `chip ${upload.state}`, title: upload.error ?? "" },
      upload.state === "uploading" ? `Uploading ${upload.filename}…` : upload.state === "failed"
        ? `${upload.filename}: ${upload.error}` : upload.filename,
      h("button", { type: "button", class: "link", "aria-label": `Remove ${upload.filename}`,
                    onclick: () => this.handlers.onRemoveFile(upload) }, "×"))));
    chips.hidden = uploads.length === 0;
  }
}
