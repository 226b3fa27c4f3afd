// letterbox webmail: one plain ES2020 file, no framework, no build step.
//
// Mail is hostile: every string that comes from a message goes into the
// page through textContent or createTextNode, never through innerHTML. The
// HTML part of a message is shown only in a sandboxed iframe without
// allow-scripts, loaded from its own URL under its own strict CSP.
"use strict";

const PAGE_SIZE = 50;
const AUTOSAVE_MS = 3000;

const S = {
  user: "",
  csrf: "",
  config: null,
  folders: [],
  folderId: null,
  list: { offset: 0, total: 0, messages: [], filter: "", q: "", thread: false },
  selected: new Set(),
  cursor: null, // UID of the open (or keyboard-focused) message
  message: null, // the open message's JSON
  remote: false,
  events: null,
  compose: null, // {draftUid, files: [File], dirty, timer, saving}
};

const $ = (id) => document.getElementById(id);

// el("a", {href: "..."}, "text", child) builds an element; strings become
// text nodes, never markup.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

// ---------------------------------------------------------------- requests

class HttpError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

async function request(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (method === "POST") {
    opts.headers["X-CSRF-Token"] = S.csrf;
    if (body instanceof FormData) opts.body = body;
    else if (body) opts.body = new URLSearchParams(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    throw new HttpError(0, "The server cannot be reached", null);
  }
  let data = null;
  const type = resp.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      data = await resp.json();
    } catch (e) {
      data = null;
    }
  }
  if (!resp.ok) {
    if (resp.status === 401 && path.startsWith("/api/")) loggedOut();
    const msg = (data && data.error) || resp.status + " " + resp.statusText;
    throw new HttpError(resp.status, msg, data);
  }
  return data;
}

const get = (path) => request("GET", path);
const post = (path, body) => request("POST", path, body || {});

function toast(text, isError) {
  const t = $("toast");
  t.textContent = text;
  t.classList.toggle("error", !!isError);
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, isError ? 8000 : 3000);
}

function fail(e) {
  toast(e && e.message ? e.message : String(e), true);
}

// ---------------------------------------------------------------- login

async function start() {
  wire();
  try {
    const s = await get("/session");
    await loggedIn(s);
  } catch (e) {
    showLogin();
  }
}

function showLogin() {
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-password").value = "";
  document.title = "letterbox";
  (($("login-user").value && $("login-password")) || $("login-user")).focus();
}

async function loggedIn(s) {
  S.user = s.user;
  S.csrf = s.csrf;
  $("login").hidden = true;
  $("app").hidden = false;
  $("whoami").textContent = s.user;
  document.title = "letterbox – " + s.user;
  S.config = await get("/api/config");
  await loadFolders();
  const inbox = S.folders.find((f) => f.name.toUpperCase() === "INBOX") || S.folders[0];
  if (inbox) await openFolder(inbox.id);
  listen();
}

function loggedOut() {
  if (S.events) S.events.close();
  S.events = null;
  S.csrf = "";
  S.user = "";
  S.folders = [];
  S.folderId = null;
  S.message = null;
  S.selected.clear();
  stopCompose();
  clear($("messages"));
  clear($("folders"));
  showView(null);
  showLogin();
}

async function login(ev) {
  ev.preventDefault();
  $("login-error").textContent = "";
  const body = new URLSearchParams({ user: $("login-user").value, password: $("login-password").value });
  let resp;
  try {
    resp = await fetch("/login", { method: "POST", body, credentials: "same-origin" });
  } catch (e) {
    $("login-error").textContent = "The server cannot be reached";
    return;
  }
  let data = null;
  try {
    data = await resp.json();
  } catch (e) {
    data = null;
  }
  if (!resp.ok || !data) {
    $("login-error").textContent = (data && data.error) || "Login failed";
    $("login-password").value = "";
    $("login-password").focus();
    return;
  }
  $("login-password").value = "";
  try {
    await loggedIn(data);
  } catch (e) {
    fail(e);
  }
}

async function logout() {
  try {
    await post("/logout");
  } catch (e) {
    // The session may already be gone; the page forgets it either way.
  }
  loggedOut();
}

// ---------------------------------------------------------------- folders

function folder(id) {
  return S.folders.find((f) => f.id === id);
}

function specialFolder(use) {
  return S.folders.find((f) => f.special_use === use);
}

async function loadFolders() {
  const data = await get("/api/folders");
  S.folders = data.folders || [];
  renderFolders();
  if (S.folderId !== null && !folder(S.folderId)) {
    // Deleted or gone elsewhere (another client): back to the inbox.
    const inbox = S.folders.find((f) => f.name.toUpperCase() === "INBOX") || S.folders[0];
    S.folderId = null;
    if (inbox) await openFolder(inbox.id);
  }
}

function renderFolders() {
  const ul = $("folders");
  clear(ul);
  for (const f of S.folders) {
    const parts = f.name.split("/");
    const li = el("li", {
      class: "folder" + (f.id === S.folderId ? " current" : "") + (f.unread ? " has-unread" : ""),
      dataset: { id: String(f.id), name: f.name },
      tabindex: "0",
      role: "button",
    },
    el("span", { class: "folder-name" }, parts[parts.length - 1]),
    f.unread ? el("span", { class: "count" }, String(f.unread)) : null);
    li.style.paddingLeft = 0.75 + (parts.length - 1) * 0.9 + "rem";
    li.title = f.name;
    li.addEventListener("click", () => openFolder(f.id).catch(fail));
    li.addEventListener("keydown", (e) => { if (e.key === "Enter") openFolder(f.id).catch(fail); });
    ul.append(li);
  }
  const move = $("act-move");
  clear(move);
  move.append(el("option", { value: "" }, "Move to…"));
  for (const f of S.folders) {
    if (f.id !== S.folderId) move.append(el("option", { value: String(f.id) }, f.name));
  }
  const cur = folder(S.folderId);
  const fixed = !cur || cur.name.toUpperCase() === "INBOX";
  $("folder-rename").disabled = fixed;
  $("folder-delete").disabled = fixed;
  updateTitle();
}

function updateTitle() {
  const cur = folder(S.folderId);
  let title = "letterbox";
  if (cur) title = (cur.unread ? "(" + cur.unread + ") " : "") + cur.name + " – letterbox";
  if (S.user) document.title = title;
}

async function openFolder(id) {
  if (S.folderId !== id) {
    S.folderId = id;
    S.list.offset = 0;
    S.list.q = "";
    $("search").value = "";
    S.selected.clear();
    S.cursor = null;
    showView(null);
  }
  renderFolders();
  setPane("list");
  await loadList(false);
}

async function createFolder() {
  const name = prompt("Name of the new folder (use / for a subfolder):");
  if (!name) return;
  try {
    await post("/api/folders/create", { name });
    await loadFolders();
  } catch (e) {
    fail(e);
  }
}

async function renameFolder() {
  const cur = folder(S.folderId);
  if (!cur) return;
  const name = prompt("New name for " + cur.name + ":", cur.name);
  if (!name || name === cur.name) return;
  try {
    await post("/api/folders/" + cur.id + "/rename", { name });
    await loadFolders();
  } catch (e) {
    fail(e);
  }
}

async function deleteFolder() {
  const cur = folder(S.folderId);
  if (!cur) return;
  if (!confirm("Delete the folder " + cur.name + " and all its messages?")) return;
  try {
    await post("/api/folders/" + cur.id + "/delete-folder");
    S.folderId = null;
    await loadFolders();
    const inbox = S.folders.find((f) => f.name.toUpperCase() === "INBOX") || S.folders[0];
    if (inbox) await openFolder(inbox.id);
  } catch (e) {
    fail(e);
  }
}

// ---------------------------------------------------------------- message list

function listUrl() {
  const p = new URLSearchParams({ offset: String(S.list.offset), limit: String(PAGE_SIZE) });
  if (S.list.filter) p.set("filter", S.list.filter);
  if (S.list.q) p.set("q", S.list.q);
  if (S.list.thread) p.set("thread", "1");
  return "/api/folders/" + S.folderId + "/messages?" + p;
}

// keep: a live refresh, which keeps the scroll position and selection.
async function loadList(keep) {
  if (S.folderId === null) return;
  const id = S.folderId;
  const url = listUrl();
  const data = await get(url);
  if (S.folderId !== id || listUrl() !== url) return; // the user moved on meanwhile
  S.list.total = data.total || 0;
  S.list.messages = data.messages || [];
  const present = new Set(S.list.messages.map((m) => m.uid));
  for (const uid of [...S.selected]) if (!present.has(uid)) S.selected.delete(uid);
  const box = $("messages");
  const scroll = box.scrollTop;
  renderList();
  box.scrollTop = keep ? scroll : 0;
}

function formatDate(s) {
  const d = new Date(s);
  if (isNaN(d)) return "";
  const now = new Date();
  if (d.toDateString() === now.toDateString()) {
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  if (d.getFullYear() === now.getFullYear()) {
    return d.toLocaleDateString([], { month: "short", day: "numeric" });
  }
  return d.toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" });
}

function formatSize(n) {
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return Math.round(n / 1024) + " KB";
  return (n / 1024 / 1024).toFixed(1) + " MB";
}

// "Alice Example <alice@example.org>" -> "Alice Example"
function displayName(addr) {
  if (!addr) return "";
  const m = /^\s*"?([^"<]*?)"?\s*<[^>]*>/.exec(addr);
  return m && m[1] ? m[1] : addr;
}

function renderList() {
  const ul = $("messages");
  clear(ul);
  const cur = folder(S.folderId);
  const shown = S.list.messages.length;
  const from = shown ? S.list.offset + 1 : 0;
  $("page-info").textContent = from + "–" + (S.list.offset + shown) + " of " + S.list.total;
  $("page-prev").disabled = S.list.offset === 0;
  $("page-next").disabled = S.list.offset + shown >= S.list.total;
  $("list-title").textContent = (cur ? cur.name : "") + (S.list.q ? " · search: " + S.list.q : "");
  for (const m of S.list.messages) {
    const check = el("input", { type: "checkbox", class: "select", "aria-label": "Select" });
    check.checked = S.selected.has(m.uid);
    check.addEventListener("click", (e) => {
      e.stopPropagation();
      if (check.checked) S.selected.add(m.uid);
      else S.selected.delete(m.uid);
      li.classList.toggle("selected", check.checked);
    });
    const star = el("button", { type: "button", class: "star" + (m.flagged ? " on" : ""), title: m.flagged ? "Unflag" : "Flag", "aria-label": m.flagged ? "Unflag" : "Flag" }, m.flagged ? "★" : "☆");
    star.addEventListener("click", (e) => {
      e.stopPropagation();
      setFlags([m.uid], m.flagged ? { remove: "\\Flagged" } : { add: "\\Flagged" }).catch(fail);
    });
    const li = el("li", {
      class: "msg" + (m.seen ? "" : " unread") + (m.flagged ? " flagged" : "") +
        (S.selected.has(m.uid) ? " selected" : "") + (m.uid === S.cursor ? " current" : ""),
      dataset: { uid: String(m.uid) },
      role: "option",
      tabindex: "-1",
    },
    check,
    star,
    el("span", { class: "from" }, displayName(m.from) || "(no sender)"),
    el("span", { class: "subject" }, m.subject || "(no subject)"),
    el("span", { class: "meta" },
      m.attachment ? el("span", { class: "clip", title: "Has attachments", role: "img", "aria-label": "Has attachments" }) : null,
      m.answered ? el("span", { class: "answered", title: "Answered" }, "↩") : null,
      el("time", { datetime: m.date, title: m.date }, formatDate(m.date)),
      el("span", { class: "size" }, formatSize(m.size || 0))));
    if (m.depth) li.querySelector(".subject").style.paddingLeft = Math.min(m.depth, 8) * 1.1 + "rem";
    li.addEventListener("click", () => openMessage(m.uid).catch(fail));
    ul.append(li);
  }
  if (!shown) ul.append(el("li", { class: "empty" }, S.list.q || S.list.filter ? "No matching messages" : "This folder is empty"));
  $("select-all").checked = shown > 0 && S.list.messages.every((m) => S.selected.has(m.uid));
}

function targetUids() {
  if (S.selected.size) return [...S.selected];
  if (S.cursor !== null) return [S.cursor];
  return [];
}

async function setFlags(uids, change) {
  if (!uids.length) return;
  await post("/api/folders/" + S.folderId + "/flags", { uids: uids.join(","), ...change });
  for (const m of S.list.messages) {
    if (!uids.includes(m.uid)) continue;
    if (change.add === "\\Seen") m.seen = true;
    if (change.remove === "\\Seen") m.seen = false;
    if (change.add === "\\Flagged") m.flagged = true;
    if (change.remove === "\\Flagged") m.flagged = false;
  }
  if (S.message && uids.includes(S.message.uid)) {
    const flags = new Set(S.message.flags || []);
    if (change.add) flags.add(change.add);
    if (change.remove) flags.delete(change.remove);
    S.message.flags = [...flags];
    renderViewFlags();
  }
  renderList();
}

async function moveTo(uids, to) {
  if (!uids.length || to === null || to === undefined) return;
  await post("/api/folders/" + S.folderId + "/move", { uids: uids.join(","), to: String(to) });
  afterRemoval(uids);
}

async function deleteUids(uids) {
  if (!uids.length) return;
  const cur = folder(S.folderId);
  if (cur && cur.special_use === "\\Trash" && !confirm("Delete " + uids.length + " message(s) for good?")) return;
  await post("/api/folders/" + S.folderId + "/delete", { uids: uids.join(",") });
  afterRemoval(uids);
}

async function archive(uids) {
  const a = specialFolder("\\Archive");
  if (!a) {
    toast("There is no Archive folder", true);
    return;
  }
  if (a.id === S.folderId) return;
  await moveTo(uids, a.id);
}

// After a move or delete: the next message takes the open one's place.
function afterRemoval(uids) {
  const gone = new Set(uids);
  const list = S.list.messages;
  let next = null;
  if (S.cursor !== null && gone.has(S.cursor)) {
    const i = list.findIndex((m) => m.uid === S.cursor);
    for (let j = i + 1; j < list.length && next === null; j++) if (!gone.has(list[j].uid)) next = list[j].uid;
    for (let j = i - 1; j >= 0 && next === null; j--) if (!gone.has(list[j].uid)) next = list[j].uid;
    S.cursor = null;
    showView(null);
  }
  S.list.messages = list.filter((m) => !gone.has(m.uid));
  S.list.total = Math.max(0, S.list.total - uids.length);
  for (const u of uids) S.selected.delete(u);
  renderList();
  loadList(true).catch(fail);
  loadFolders().catch(fail);
  if (next !== null && !isPhone()) openMessage(next).catch(fail);
  else if (isPhone()) setPane("list");
}

// ---------------------------------------------------------------- message view

function showView(msg) {
  S.message = msg;
  $("view").hidden = !msg;
  $("view-empty").hidden = !!msg;
  if (!msg) {
    const frame = $("v-frame");
    frame.hidden = true;
    frame.removeAttribute("src");
  }
}

async function openMessage(uid) {
  const id = S.folderId;
  S.cursor = uid;
  for (const li of $("messages").children) li.classList.toggle("current", li.dataset.uid === String(uid));
  const msg = await get("/api/folders/" + id + "/messages/" + uid);
  if (S.folderId !== id || S.cursor !== uid) return;
  S.remote = false;
  renderMessage(msg);
  setPane("view");
  const m = S.list.messages.find((x) => x.uid === uid);
  if (m && !m.seen) {
    m.seen = true;
    renderList();
    loadFolders().catch(fail);
  }
  const row = $("messages").querySelector('li[data-uid="' + uid + '"]');
  if (row) row.scrollIntoView({ block: "nearest" });
}

function base() {
  return "/api/folders/" + S.folderId + "/messages/" + S.message.uid;
}

function renderMessage(msg) {
  showView(msg);
  $("v-subject").textContent = msg.subject || "(no subject)";
  const dl = $("v-headers");
  clear(dl);
  const row = (name, value) => {
    if (value) dl.append(el("dt", null, name), el("dd", null, value));
  };
  row("From", msg.from);
  row("To", msg.to);
  row("Cc", msg.cc);
  const d = new Date(msg.date);
  row("Date", isNaN(d) ? msg.date : d.toLocaleString());
  $("v-source").href = base() + "/source";

  const att = $("v-attachments");
  clear(att);
  for (const a of msg.attachments || []) {
    if (a.inline && a.cid && msg.has_html) continue; // shown inside the HTML
    const href = base() + "/part/" + encodeURIComponent(a.part);
    att.append(el("li", null,
      el("a", { href, download: a.name || "attachment", class: "attachment" }, a.name || "(unnamed)"),
      el("span", { class: "att-meta" }, " " + (a.type || "") + ", " + formatSize(a.size || 0))));
  }
  att.hidden = !att.childElementCount;

  renderText(msg.text || "");
  const cur = folder(S.folderId);
  const isDraft = (msg.flags || []).includes("\\Draft") || (cur && cur.special_use === "\\Drafts");
  $("v-edit").hidden = !isDraft;
  $("v-html-bar").hidden = !msg.has_html;
  showHtml(!!msg.has_html);
  renderViewFlags();
}

function renderViewFlags() {
  const flags = (S.message && S.message.flags) || [];
  $("v-flag").textContent = flags.includes("\\Flagged") ? "Unflag" : "Flag";
}

function showHtml(on) {
  const frame = $("v-frame");
  $("v-text").hidden = on;
  frame.hidden = !on;
  $("v-show-html").disabled = on;
  $("v-show-text").disabled = !on;
  $("v-remote").hidden = !on || S.remote;
  if (on) {
    const src = base() + "/html" + (S.remote ? "?remote=1" : "");
    if (frame.getAttribute("src") !== src) {
      frame.style.height = "";
      frame.setAttribute("src", src);
    }
  }
}

// The frame is same-origin (allow-same-origin, no scripts in it), so the
// page can read its height and grow it to fit, without a scrollbar in a
// scrollbar.
function fitFrame() {
  const frame = $("v-frame");
  try {
    const doc = frame.contentDocument;
    if (doc && doc.documentElement) {
      frame.style.height = Math.min(Math.max(doc.documentElement.scrollHeight + 24, 120), 20000) + "px";
    }
  } catch (e) {
    // Not readable: keep the CSS height.
  }
}

const LINK = /\b(?:https?:\/\/|mailto:)[^\s<>"'`]+/gi;

// Text with http, https and mailto links made into <a> elements; every other
// scheme stays text.
function linkify(parent, text) {
  let last = 0;
  for (const m of text.matchAll(LINK)) {
    let url = m[0];
    // Trailing punctuation is usually the sentence's, not the URL's.
    const trail = /[.,;:!?)\]]+$/.exec(url);
    if (trail) url = url.slice(0, url.length - trail[0].length);
    if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
    let ok = false;
    try {
      const u = new URL(url);
      ok = u.protocol === "http:" || u.protocol === "https:" || u.protocol === "mailto:";
    } catch (e) {
      ok = false;
    }
    if (ok) parent.append(el("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, url));
    else parent.append(document.createTextNode(url));
    last = m.index + url.length;
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
}

// Quoted lines (">") are folded behind a toggle, one per quoted block.
function renderText(text) {
  const box = $("v-text");
  clear(box);
  const lines = text.replace(/\r\n/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const quoted = /^\s*>/.test(lines[i]);
    let j = i;
    while (j < lines.length && /^\s*>/.test(lines[j]) === quoted) j++;
    const chunk = lines.slice(i, j).join("\n");
    if (quoted) {
      const pre = el("pre", { class: "quoted" });
      linkify(pre, chunk);
      pre.hidden = true;
      const n = j - i;
      const btn = el("button", { type: "button", class: "quote-toggle" }, "Show quoted text (" + n + (n === 1 ? " line)" : " lines)"));
      btn.addEventListener("click", () => {
        pre.hidden = !pre.hidden;
        btn.textContent = (pre.hidden ? "Show" : "Hide") + " quoted text (" + n + (n === 1 ? " line)" : " lines)");
      });
      box.append(btn, pre);
    } else {
      const pre = el("pre", null);
      linkify(pre, j < lines.length ? chunk + "\n" : chunk);
      box.append(pre);
    }
    i = j;
  }
}

// ---------------------------------------------------------------- compose

function splitAddrs(s) {
  // Commas inside quotes ("Doe, Jane" <jane@x>) do not split.
  const out = [];
  let cur = "";
  let q = false;
  for (const ch of s || "") {
    if (ch === '"') q = !q;
    if (ch === "," && !q) {
      if (cur.trim()) out.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

function bareAddr(a) {
  const m = /<([^>]*)>/.exec(a);
  return (m ? m[1] : a).trim().toLowerCase();
}

function prefixed(prefix, subject) {
  const s = subject || "";
  return new RegExp("^" + prefix + ":", "i").test(s) ? s : prefix + ": " + s;
}

function quote(text) {
  return text.replace(/\r\n/g, "\n").split("\n").map((l) => (l.startsWith(">") ? ">" + l : "> " + l)).join("\n");
}

async function openCompose(init) {
  if (S.compose) {
    await closeCompose();
    if (S.compose) return; // the user kept the open one
  }
  const c = { draftUid: init.draftUid || null, files: [], dirty: false, timer: null, saving: null, back: currentPane() };
  S.compose = c;
  $("c-from").textContent = (S.config && S.config.from) || S.user;
  $("c-to").value = init.to || "";
  $("c-cc").value = init.cc || "";
  $("c-bcc").value = init.bcc || "";
  $("c-subject").value = init.subject || "";
  $("c-body").value = init.body || "";
  c.inReplyTo = init.inReplyTo || "";
  c.references = init.references || "";
  $("c-error").textContent = "";
  $("c-status").textContent = "";
  const canSend = !!(S.config && S.config.can_send);
  $("c-send").hidden = !canSend;
  $("c-nosend").hidden = canSend;
  $("compose-pane").hidden = false;
  document.body.classList.add("composing");
  renderFiles();
  setPane("compose");
  ($("c-to").value ? $("c-body") : $("c-to")).focus();
  if (init.body && $("c-to").value) $("c-body").setSelectionRange(0, 0);
  if (init.files) {
    // A forward's attachments arrive after the form opens.
    const files = await init.files;
    if (S.compose !== c) return;
    c.files.push(...files);
    renderFiles();
  }
}

function renderFiles() {
  const ul = $("c-attachments");
  clear(ul);
  if (!S.compose) return;
  S.compose.files.forEach((f, i) => {
    const rm = el("button", { type: "button", class: "remove", "aria-label": "Remove attachment" }, "×");
    rm.addEventListener("click", () => {
      S.compose.files.splice(i, 1);
      renderFiles();
      changed();
    });
    ul.append(el("li", null, f.name + " (" + formatSize(f.size) + ") ", rm));
  });
}

function composeForm() {
  const c = S.compose;
  const fd = new FormData();
  fd.append("to", $("c-to").value);
  fd.append("cc", $("c-cc").value);
  fd.append("bcc", $("c-bcc").value);
  fd.append("subject", $("c-subject").value);
  fd.append("body", $("c-body").value);
  fd.append("in_reply_to", c.inReplyTo);
  fd.append("references", c.references);
  if (c.draftUid !== null) fd.append("replace", String(c.draftUid));
  for (const f of c.files) fd.append("attachment", f, f.name);
  return fd;
}

function changed() {
  const c = S.compose;
  if (!c) return;
  c.dirty = true;
  $("c-status").textContent = "";
  clearTimeout(c.timer);
  c.timer = setTimeout(() => saveDraft(false).catch(() => {}), AUTOSAVE_MS);
}

// One save at a time: a second one waits for the first, so each replaces
// the draft the one before it wrote.
async function saveDraft(explicit) {
  const c = S.compose;
  if (!c) return;
  clearTimeout(c.timer);
  if (c.saving) await c.saving.catch(() => {});
  if (S.compose !== c || (!c.dirty && !explicit)) return;
  c.dirty = false;
  $("c-status").textContent = "Saving…";
  const run = (async () => {
    const r = await post("/api/drafts", composeForm());
    c.draftUid = r.uid;
  })();
  c.saving = run;
  try {
    await run;
    if (S.compose === c) $("c-status").textContent = "Draft saved " + new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  } catch (e) {
    c.dirty = true;
    if (S.compose === c) $("c-status").textContent = "Draft not saved: " + e.message;
    throw e;
  } finally {
    if (c.saving === run) c.saving = null;
  }
}

async function send() {
  const c = S.compose;
  if (!c) return;
  if (!(S.config && S.config.can_send)) return;
  clearTimeout(c.timer);
  if (c.saving) await c.saving.catch(() => {});
  $("c-error").textContent = "";
  $("c-status").textContent = "Sending…";
  $("c-send").disabled = true;
  try {
    const sent = await post("/api/send", composeForm());
    stopCompose();
    if (sent && sent.warning) toast(sent.warning, true);
    else toast("Message sent");
    loadFolders().catch(fail);
    if (S.folderId !== null) loadList(true).catch(fail);
  } catch (e) {
    if (e.body && e.body.draft_uid !== undefined) c.draftUid = e.body.draft_uid;
    $("c-error").textContent = "Not sent: " + e.message + (c.draftUid !== null ? " (the draft is kept in Drafts)" : "");
    $("c-status").textContent = "";
  } finally {
    $("c-send").disabled = false;
  }
}

function stopCompose() {
  const c = S.compose;
  if (!c) return;
  clearTimeout(c.timer);
  S.compose = null;
  $("compose-pane").hidden = true;
  document.body.classList.remove("composing");
  setPane(c.back && c.back !== "compose" ? c.back : "list");
}

async function closeCompose() {
  const c = S.compose;
  if (!c) return;
  if (c.dirty) {
    try {
      await saveDraft(false);
    } catch (e) {
      if (!confirm("The draft could not be saved (" + e.message + "). Close anyway?")) return;
    }
  }
  stopCompose();
}

function replyInit(msg, all) {
  let to = [msg.from];
  let cc = [];
  if (all) {
    const me = ((S.config && S.config.from) || "").toLowerCase();
    const seen = new Set([bareAddr(msg.from), me]);
    for (const a of splitAddrs(msg.to)) {
      if (!seen.has(bareAddr(a))) {
        seen.add(bareAddr(a));
        to.push(a);
      }
    }
    for (const a of splitAddrs(msg.cc)) {
      if (!seen.has(bareAddr(a))) {
        seen.add(bareAddr(a));
        cc.push(a);
      }
    }
  }
  const refs = [msg.references, msg.message_id].filter(Boolean).join(" ").trim();
  const d = new Date(msg.date);
  const when = isNaN(d) ? msg.date : d.toLocaleString();
  return {
    to: to.filter(Boolean).join(", "),
    cc: cc.join(", "),
    subject: prefixed("Re", msg.subject),
    body: "\n\nOn " + when + ", " + (msg.from || "someone") + " wrote:\n" + quote(msg.text || ""),
    inReplyTo: msg.message_id || "",
    references: refs,
  };
}

async function fetchAttachments(msg, folderId) {
  const files = [];
  for (const a of msg.attachments || []) {
    const r = await fetch("/api/folders/" + folderId + "/messages/" + msg.uid + "/part/" + encodeURIComponent(a.part), { credentials: "same-origin" });
    if (!r.ok) continue;
    const blob = await r.blob();
    files.push(new File([blob], a.name || "attachment", { type: a.type || "application/octet-stream" }));
  }
  return files;
}

function forwardInit(msg) {
  const head = ["", "", "---------- Forwarded message ----------", "From: " + (msg.from || ""), "Date: " + (msg.date || ""), "Subject: " + (msg.subject || ""), "To: " + (msg.to || "")];
  if (msg.cc) head.push("Cc: " + msg.cc);
  return {
    subject: prefixed("Fwd", msg.subject),
    body: head.join("\n") + "\n\n" + (msg.text || ""),
    inReplyTo: "",
    references: [msg.references, msg.message_id].filter(Boolean).join(" ").trim(),
    files: fetchAttachments(msg, S.folderId),
  };
}

async function editDraft(msg) {
  await openCompose({
    to: msg.to, cc: msg.cc, subject: msg.subject, body: msg.text || "",
    inReplyTo: msg.in_reply_to || "", references: msg.references || "",
    draftUid: S.folderId === (specialFolder("\\Drafts") || {}).id ? msg.uid : null,
    files: fetchAttachments(msg, S.folderId),
  });
}

// ---------------------------------------------------------------- live updates

function listen() {
  if (S.events) S.events.close();
  const es = new EventSource("/api/events");
  S.events = es;
  let foldersTimer = null;
  let listTimer = null;
  const refreshFolders = () => {
    clearTimeout(foldersTimer);
    foldersTimer = setTimeout(() => loadFolders().catch(() => {}), 100);
  };
  es.addEventListener("folders", refreshFolders);
  es.addEventListener("folder", (e) => {
    let id = null;
    try {
      id = JSON.parse(e.data).id;
    } catch (err) {
      return;
    }
    refreshFolders();
    if (id === S.folderId) {
      clearTimeout(listTimer);
      listTimer = setTimeout(() => loadList(true).catch(() => {}), 100);
    }
  });
  es.addEventListener("open", () => {
    // After a reconnect something may have been missed.
    if (S.folderId !== null) {
      refreshFolders();
      loadList(true).catch(() => {});
    }
  });
  es.addEventListener("error", () => {
    if (es.readyState === EventSource.CLOSED) {
      // The server refused the stream: probably the session ended.
      get("/session").then(() => setTimeout(() => { if (S.events === es) listen(); }, 5000), () => loggedOut());
    }
  });
}

// ---------------------------------------------------------------- layout

function isPhone() {
  return window.matchMedia("(max-width: 700px)").matches;
}

function currentPane() {
  return document.body.dataset.pane;
}

function setPane(p) {
  document.body.dataset.pane = p;
}

function back() {
  const p = currentPane();
  if (p === "compose") closeCompose().catch(fail);
  else if (p === "view") setPane("list");
  else if (p === "list") setPane("folders");
}

// ---------------------------------------------------------------- keyboard

function toggleHelp(show) {
  $("help").hidden = show === undefined ? !$("help").hidden : !show;
  if (!$("help").hidden) $("help-close").focus();
}

function step(delta) {
  const list = S.list.messages;
  if (!list.length) return;
  let i = list.findIndex((m) => m.uid === S.cursor);
  if (i < 0) i = delta > 0 ? -1 : list.length;
  const j = i + delta;
  if (j >= 0 && j < list.length) {
    openMessage(list[j].uid).catch(fail);
  } else if (j >= list.length && S.list.offset + list.length < S.list.total) {
    S.list.offset += PAGE_SIZE;
    loadList(false).then(() => { if (S.list.messages.length) openMessage(S.list.messages[0].uid); }).catch(fail);
  } else if (j < 0 && S.list.offset > 0) {
    S.list.offset = Math.max(0, S.list.offset - PAGE_SIZE);
    loadList(false).then(() => { const l = S.list.messages; if (l.length) openMessage(l[l.length - 1].uid); }).catch(fail);
  }
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  const typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  if (e.key === "Escape") {
    if (!$("help").hidden) toggleHelp(false);
    else if (typing) t.blur();
    return;
  }
  if (typing || $("app").hidden) return;
  switch (e.key) {
    case "j": step(1); break;
    case "k": step(-1); break;
    case "r": if (S.message) openCompose(replyInit(S.message, false)).catch(fail); break;
    case "a": archive(targetUids()).catch(fail); break;
    case "#":
    case "Delete": deleteUids(targetUids()).catch(fail); break;
    case "c": openCompose({}).catch(fail); break;
    case "/": setPane("list"); $("search").focus(); break;
    case "?": toggleHelp(); break;
    default: return;
  }
  e.preventDefault();
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("back").addEventListener("click", back);
  $("show-folders").addEventListener("click", () => setPane("folders"));
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    S.list.q = $("search").value.trim();
    S.list.offset = 0;
    S.selected.clear();
    setPane("list");
    loadList(false).catch(fail);
  });
  $("search").addEventListener("search", () => {
    // The field's clear button.
    if (!$("search").value && S.list.q) $("search-form").requestSubmit();
  });
  $("compose").addEventListener("click", () => openCompose({}).catch(fail));
  $("help-button").addEventListener("click", () => toggleHelp(true));
  $("help-close").addEventListener("click", () => toggleHelp(false));
  $("help").addEventListener("click", (e) => { if (e.target === $("help")) toggleHelp(false); });

  $("folder-new").addEventListener("click", createFolder);
  $("folder-rename").addEventListener("click", renameFolder);
  $("folder-delete").addEventListener("click", deleteFolder);

  $("select-all").addEventListener("change", () => {
    for (const m of S.list.messages) {
      if ($("select-all").checked) S.selected.add(m.uid);
      else S.selected.delete(m.uid);
    }
    renderList();
  });
  $("act-read").addEventListener("click", () => setFlags(targetUids(), { add: "\\Seen" }).then(() => loadFolders()).catch(fail));
  $("act-unread").addEventListener("click", () => setFlags(targetUids(), { remove: "\\Seen" }).then(() => loadFolders()).catch(fail));
  $("act-flag").addEventListener("click", () => setFlags(targetUids(), { add: "\\Flagged" }).catch(fail));
  $("act-unflag").addEventListener("click", () => setFlags(targetUids(), { remove: "\\Flagged" }).catch(fail));
  $("act-move").addEventListener("change", () => {
    const v = $("act-move").value;
    $("act-move").value = "";
    if (v) moveTo(targetUids(), Number(v)).catch(fail);
  });
  $("act-delete").addEventListener("click", () => deleteUids(targetUids()).catch(fail));
  $("filter").addEventListener("change", () => {
    S.list.filter = $("filter").value;
    S.list.offset = 0;
    loadList(false).catch(fail);
  });
  $("thread").addEventListener("change", () => {
    S.list.thread = $("thread").checked;
    S.list.offset = 0;
    loadList(false).catch(fail);
  });
  $("page-prev").addEventListener("click", () => {
    S.list.offset = Math.max(0, S.list.offset - PAGE_SIZE);
    loadList(false).catch(fail);
  });
  $("page-next").addEventListener("click", () => {
    S.list.offset += PAGE_SIZE;
    loadList(false).catch(fail);
  });

  $("v-reply").addEventListener("click", () => S.message && openCompose(replyInit(S.message, false)).catch(fail));
  $("v-reply-all").addEventListener("click", () => S.message && openCompose(replyInit(S.message, true)).catch(fail));
  $("v-forward").addEventListener("click", () => S.message && openCompose(forwardInit(S.message)).catch(fail));
  $("v-edit").addEventListener("click", () => S.message && editDraft(S.message).catch(fail));
  $("v-flag").addEventListener("click", () => {
    if (!S.message) return;
    const on = (S.message.flags || []).includes("\\Flagged");
    setFlags([S.message.uid], on ? { remove: "\\Flagged" } : { add: "\\Flagged" }).catch(fail);
  });
  $("v-unread").addEventListener("click", () => {
    if (!S.message) return;
    setFlags([S.message.uid], { remove: "\\Seen" }).then(() => loadFolders()).catch(fail);
  });
  $("v-archive").addEventListener("click", () => S.message && archive([S.message.uid]).catch(fail));
  $("v-delete").addEventListener("click", () => S.message && deleteUids([S.message.uid]).catch(fail));
  $("v-show-text").addEventListener("click", () => showHtml(false));
  $("v-show-html").addEventListener("click", () => showHtml(true));
  $("v-remote").addEventListener("click", () => {
    S.remote = true;
    showHtml(true);
  });
  $("v-frame").addEventListener("load", fitFrame);

  // Enter in a field must not send: only the Send button does.
  $("compose-form").addEventListener("submit", (e) => e.preventDefault());
  $("c-send").addEventListener("click", () => send().catch(fail));
  $("compose-form").addEventListener("input", (e) => { if (e.target.id !== "c-files") changed(); });
  $("c-files").addEventListener("change", () => {
    if (!S.compose) return;
    for (const f of $("c-files").files) S.compose.files.push(f);
    $("c-files").value = "";
    renderFiles();
    changed();
  });
  $("c-save").addEventListener("click", () => saveDraft(true).catch(() => {}));
  $("c-close").addEventListener("click", () => closeCompose().catch(fail));

  document.addEventListener("keydown", onKey);
  window.addEventListener("beforeunload", (e) => {
    if (S.compose && S.compose.dirty) {
      e.preventDefault();
      e.returnValue = "";
    }
  });
}

start();
