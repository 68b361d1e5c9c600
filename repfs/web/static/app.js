// repfs web interface: a client of /api/v1 and nothing more. Every action is an API call;
// the daemon and the kernel decide, the page shows what they answered. Views are chosen by
// the URL fragment (#/files/alice/docs, #/admin/pools, ...). No element is built from HTML
// text: user data only ever becomes text nodes.
"use strict";

const PAGE = 100; // entries of a folder per page
const POLL = 3000; // ms between refreshes of the pools view
const CHUNK = 8 * 1024 * 1024; // bytes of a tus PATCH
const TOKEN = "repfs.token";

// --- small helpers ------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(n < 10 ? 2 : 1) : n} ${units[i]}`;
}
const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "–");
const day = (t) => (t ? new Date(t * 1000).toISOString().slice(0, 10) : "");
const enc = (path) => path.split("/").filter(Boolean).map(encodeURIComponent).join("/");
const parentOf = (path) => path.split("/").filter(Boolean).slice(0, -1).join("/");
const nameOf = (path) => path.split("/").filter(Boolean).pop() || "/";

function say(text, bad = false) {
  const el = $("#said");
  el.textContent = text;
  el.className = bad ? "error" : "";
  el.hidden = !text;
}

class Failure extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

// --- the API ------------------------------------------------------------------------------
const api = {
  token: sessionStorage.getItem(TOKEN),
  headers(extra) {
    return Object.assign(this.token ? { Authorization: `Bearer ${this.token}` } : {}, extra || {});
  },
  async call(method, path, body) {
    const init = { method, headers: this.headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
    if (body !== undefined) init.body = JSON.stringify(body);
    let res;
    try {
      res = await fetch(`/api/v1${path}`, init);
    } catch (err) {
      throw new Failure(0, "unreachable", `repfs web does not answer: ${err.message}`);
    }
    if (res.status === 204) return null;
    const answer = await res.json().catch(() => ({ error: "error", message: `${res.status} ${res.statusText}` }));
    if (!res.ok) {
      if (res.status === 401 && this.token && path !== "/token") { signedOut(answer.message); }
      if (res.status === 403 && answer.error === "password_change_required") { location.hash = "#/password"; }
      throw new Failure(res.status, answer.error, answer.message);
    }
    return answer;
  },
  get(path) { return this.call("GET", path); },
  post(path, body) { return this.call("POST", path, body === undefined ? {} : body); },
};

let me = null; // the signed-in account (GET /api/v1/me)

function signedOut(why) {
  api.token = null;
  me = null;
  sessionStorage.removeItem(TOKEN);
  location.hash = "#/login";
  if (why) say(why, true);
}

async function signIn(login, password) {
  const answer = await api.post("/token", { login, password });
  api.token = answer.token;
  sessionStorage.setItem(TOKEN, answer.token);
  me = null;
  await loadMe();
  location.hash = me.password_temporary ? "#/password" : `#/files/${enc(me.name)}`;
}

async function loadMe() {
  if (!api.token) return null;
  me = await api.get("/me");
  $("#who").textContent = me.name;
  $("#signout").hidden = false;
  $("#nav").hidden = Boolean(me.password_temporary);
  for (const a of document.querySelectorAll("[data-admin]")) a.hidden = !me.admin;
  return me;
}

// --- views --------------------------------------------------------------------------------
const views = [
  [/^#\/login$/, viewLogin, false],
  [/^#\/setup(?:\/(.+))?$/, viewSetup, false],
  [/^#\/password$/, viewPassword, true],
  [/^#\/files(?:\/(.*))?$/, viewFiles, true],
  [/^#\/shared$/, viewShared, true],
  [/^#\/account$/, viewAccount, true],
  [/^#\/admin\/users$/, viewUsers, true],
  [/^#\/admin\/users\/([^/]+)$/, viewUser, true],
  [/^#\/admin\/pools$/, viewPools, true],
];
let leaving = []; // what the current view stops when another is shown (timers)

async function route() {
  for (const stop of leaving) stop();
  leaving = [];
  say("");
  const hash = location.hash || "#/";
  const main = $("#view");
  for (const [pattern, view, needsSignIn] of views) {
    const m = hash.match(pattern);
    if (!m) continue;
    if (needsSignIn && !api.token) { location.hash = "#/login"; return; }
    try {
      if (needsSignIn && !me) await loadMe();
      if (me && me.password_temporary && view !== viewPassword) { location.hash = "#/password"; return; }
      for (const a of document.querySelectorAll("nav a")) a.classList.toggle("here", hash.startsWith(a.getAttribute("href")));
      await view(main, ...m.slice(1).map((x) => (x === undefined ? undefined : decodeURIComponent(x))));
    } catch (err) {
      main.replaceChildren(h("p", { class: "error" }, err.message));
    }
    return;
  }
  if (api.token) { location.hash = "#/files"; return; }
  const setup = await api.get("/setup").catch(() => ({ needed: false }));
  location.hash = setup.needed ? "#/setup" : "#/login";
}

function form(fields, submitText, onSubmit) {
  const said = h("p", { class: "error", role: "alert" });
  const button = h("button", { type: "submit" }, submitText);
  const f = h("form", { class: "stack" }, fields, button, said);
  f.addEventListener("submit", async (event) => {
    event.preventDefault();
    said.textContent = "";
    button.disabled = true;
    try { await onSubmit(f); } catch (err) { said.textContent = err.message; } finally { button.disabled = false; }
  });
  return f;
}
const field = (label, attrs) => [h("label", { for: attrs.id }, label), h("input", attrs)];
const value = (f, id) => f.querySelector(`#${id}`).value;

function samePasswords(f, a, b) {
  if (value(f, a) !== value(f, b)) throw new Error("The two passwords differ: type the same password twice.");
}

async function viewLogin(main) {
  main.replaceChildren(h("div", { class: "card narrow" }, h("h1", {}, "Sign in to repfs"),
    form([field("Account name", { id: "login", autocomplete: "username", required: true, autofocus: true }),
          field("Password", { id: "password", type: "password", autocomplete: "current-password", required: true })],
         "Sign in", (f) => signIn(value(f, "login"), value(f, "password")))));
}

async function viewSetup(main, token) {
  const state = await api.get("/setup");
  if (!state.needed) {
    main.replaceChildren(h("div", { class: "card narrow" }, h("h1", {}, "repfs is set up"),
      h("p", {}, "An administrator exists. ", h("a", { href: "#/login" }, "Sign in"), ".")));
    return;
  }
  const note = state.local || token ? "Make the first administrator of this filesystem."
    : "From another host, open the link with the one-time token that repfs web wrote to its log.";
  main.replaceChildren(h("div", { class: "card narrow" }, h("h1", {}, "Welcome to repfs"), h("p", {}, note),
    form([field("Account name", { id: "name", required: true, pattern: "[a-z_][a-z0-9_\\-]{0,31}", autocomplete: "username" }),
          field("E-mail", { id: "email", type: "email", required: true }),
          field("Password (at least 8 characters)", { id: "p1", type: "password", minlength: 8, required: true, autocomplete: "new-password" }),
          field("The same password again", { id: "p2", type: "password", required: true, autocomplete: "new-password" })],
         "Make administrator", async (f) => {
           samePasswords(f, "p1", "p2");
           const body = { name: value(f, "name"), email: value(f, "email"), password: value(f, "p1") };
           if (token) body.token = token;
           await api.post("/setup", body);
           await signIn(body.name, body.password);
           say(`${body.name} is the first administrator.`);
         })));
}

function passwordForm(after) {
  return form([field("Current password", { id: "old", type: "password", required: true, autocomplete: "current-password" }),
               field("New password (at least 8 characters)", { id: "p1", type: "password", minlength: 8, required: true, autocomplete: "new-password" }),
               field("The new password again", { id: "p2", type: "password", required: true, autocomplete: "new-password" })],
    "Change password", async (f) => {
      samePasswords(f, "p1", "p2");
      const name = me.name;
      await api.call("PUT", "/me/password", { old_password: value(f, "old"), password: value(f, "p1") });
      await signIn(name, value(f, "p1")); // every session ended, this one too
      if (after) after();
      say("Your password is changed.");
    });
}

async function viewPassword(main) {
  main.replaceChildren(h("div", { class: "card narrow" }, h("h1", {}, "Choose your password"),
    h("p", {}, "An administrator set your password. Choose your own before you go on."), passwordForm()));
}

// --- files --------------------------------------------------------------------------------
const files = { path: "", sort: "name", order: "asc", offset: 0, writable: false, selected: new Set(), entries: [] };

async function viewFiles(main, path) {
  if (path === undefined) { location.hash = `#/files/${enc(me.name)}`; return; }
  path = path.split("/").filter(Boolean).join("/");
  if (path !== files.path) Object.assign(files, { path, offset: 0, selected: new Set() });
  const q = `?offset=${files.offset}&limit=${PAGE}&sort=${files.sort}&order=${files.order}`;
  const listing = await api.get(`/list/${enc(path)}${q}`);
  files.writable = listing.writable;
  files.entries = listing.entries;
  files.selected = new Set([...files.selected].filter((p) => listing.entries.some((e) => e.path === p)));
  drawFiles(main, listing);
}

function drawFiles(main, listing) { // again at each change of the selection, without asking the server
  const path = files.path;
  const redraw = () => drawFiles(main, listing);

  const crumbs = h("div", { class: "crumbs" }, h("a", { href: "#/files/" }, "/"));
  let upTo = "";
  for (const part of path.split("/").filter(Boolean)) {
    upTo = upTo ? `${upTo}/${part}` : part;
    crumbs.append(h("span", { class: "sep" }, "›"), h("a", { href: `#/files/${enc(upTo)}` }, part));
  }
  const one = () => files.entries.find((e) => e.path === [...files.selected][0]);
  const some = files.selected.size > 0;
  const tools = h("div", { class: "toolbar" },
    files.writable && h("button", { type: "button", id: "upload", onclick: () => openUploader(true) }, "Upload"),
    files.writable && h("button", { type: "button", class: "quiet", id: "newfolder", onclick: newFolder }, "New folder"),
    h("button", { type: "button", class: "quiet", id: "download", disabled: !some, onclick: downloadSelected }, "Download"),
    files.writable && h("button", { type: "button", class: "quiet", id: "rename", disabled: files.selected.size !== 1, onclick: () => rename(one()) }, "Rename"),
    h("button", { type: "button", class: "quiet", id: "share", onclick: () => shareDialog(files.selected.size === 1 ? one().path : path) },
      files.selected.size === 1 ? "Share…" : "Share folder…"),
    files.writable && h("button", { type: "button", class: "danger", id: "delete", disabled: !some, onclick: deleteSelected }, "Delete"),
    h("span", { class: "grow" }),
    h("span", { class: "muted", id: "count" }, listing.total ? `${listing.offset + 1}–${listing.offset + listing.entries.length} of ${listing.total}` : "empty"));

  const sortBy = (key, label, cls) => h("th", { class: cls }, h("button", { type: "button", class: "sort", onclick: () => {
    files.order = files.sort === key && files.order === "asc" ? "desc" : "asc";
    files.sort = key; files.offset = 0; route();
  } }, label, files.sort === key ? (files.order === "asc" ? " ▲" : " ▼") : ""));
  const all = h("input", { type: "checkbox", "aria-label": "select all", checked: some && files.selected.size === files.entries.length,
    onchange: (e) => { files.selected = new Set(e.target.checked ? files.entries.map((x) => x.path) : []); redraw(); } });
  const rows = files.entries.map((e) => h("tr", { class: files.selected.has(e.path) ? "selected" : "", dataset: { path: e.path } },
    h("td", {}, h("input", { type: "checkbox", "aria-label": `select ${e.name}`, checked: files.selected.has(e.path),
      onchange: (ev) => { ev.target.checked ? files.selected.add(e.path) : files.selected.delete(e.path); redraw(); } })),
    h("td", { class: "name" }, e.kind === "folder" ? h("a", { href: `#/files/${enc(e.path)}` }, `${e.name}/`)
      : e.kind === "file" ? h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); download([e.path]); } }, e.name)
      : h("span", { class: "muted" }, `${e.name} (${e.kind})`)),
    h("td", { class: "num" }, e.kind === "folder" ? "" : bytes(e.size)),
    h("td", { class: "num hide-small" }, when(e.mtime))));
  const table = h("div", { class: "tablewrap drop-hint" }, h("table", { id: "listing" },
    h("thead", {}, h("tr", {}, h("th", {}, all), sortBy("name", "Name"), sortBy("size", "Size", "num"), sortBy("mtime", "Modified", "num hide-small"))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 4, class: "muted" }, files.writable ? "Empty: drop files here to upload them." : "Empty.")))));
  const pager = h("div", { class: "toolbar" },
    h("button", { type: "button", class: "quiet", id: "prev", disabled: files.offset === 0, onclick: () => { files.offset = Math.max(0, files.offset - PAGE); route(); } }, "‹ Previous"),
    h("button", { type: "button", class: "quiet", id: "next", disabled: files.offset + PAGE >= listing.total, onclick: () => { files.offset += PAGE; route(); } }, "Next ›"));
  main.replaceChildren(crumbs, tools, uploaderPanel(), table, listing.total > PAGE ? pager : "");
}

async function newFolder() {
  const name = prompt("Name of the new folder");
  if (!name) return;
  try { await api.post(`/folders/${enc(files.path)}/${encodeURIComponent(name)}`); route(); } catch (err) { say(err.message, true); }
}

async function rename(entry) {
  const name = prompt("New name", entry.name);
  if (!name || name === entry.name) return;
  try {
    await api.post("/move", { from: entry.path, to: `${parentOf(entry.path)}/${name}` });
    files.selected.clear(); route();
  } catch (err) { say(err.message, true); }
}

async function deleteSelected() {
  const paths = [...files.selected];
  if (!confirm(`Delete ${paths.length === 1 ? nameOf(paths[0]) : `${paths.length} items`}?`)) return;
  const failed = [];
  for (const p of paths) {
    try { await api.call("DELETE", `/files/${enc(p)}`); files.selected.delete(p); } catch (err) { failed.push(`${nameOf(p)}: ${err.message}`); }
  }
  await route();
  if (failed.length) say(`Not deleted: ${failed.join("; ")}`, true);
}

function downloadSelected() { download([...files.selected], `${nameOf(files.path)}.zip`); }

async function download(paths, name) {
  try {
    const link = await api.post("/downloads", name ? { paths, name } : { paths });
    const a = h("a", { href: link.url, download: "" });
    document.body.append(a); a.click(); a.remove();
  } catch (err) { say(err.message, true); }
}

// --- uploads (Uppy + tus: pause, resume, retry; after a reload too) ------------------------
let uppy = null;
let uploader = null; // the panel holding Uppy's dashboard: one for the page's life
let refreshSoon = null;

function uploaderPanel() {
  if (!uploader) {
    uploader = h("section", { id: "uploader", hidden: true });
    const U = window.Uppy;
    uppy = new U.Uppy({
      autoProceed: true,
      onBeforeFileAdded: (file) => {
        if (!location.hash.startsWith("#/files") || !files.writable) { say("You may not upload into this folder.", true); return false; }
        file.meta = Object.assign({}, file.meta, { folder: files.path });
        return file;
      },
    });
    uppy.use(U.Dashboard, { target: uploader, inline: true, width: "100%", height: 300, proudlyDisplayPoweredByUppy: false,
                            showProgressDetails: true, note: "Files go into the folder shown; uploads resume after a reload." });
    uppy.use(U.Tus, { endpoint: "/api/v1/uploads", chunkSize: CHUNK, retryDelays: [0, 1000, 3000, 5000, 10000], limit: 3,
                      removeFingerprintOnSuccess: true, allowedMetaFields: ["name", "type", "folder"],
                      headers: () => api.headers() });
    uppy.use(U.GoldenRetriever, { serviceWorker: false });
    uppy.use(U.DropTarget, { target: "#view" });
    uppy.on("file-added", () => openUploader(true));
    uppy.on("restored", () => openUploader(true));
    uppy.on("file-removed", () => { if (!uppy.getFiles().length) openUploader(false); });
    uppy.on("complete", (result) => { // done ones leave the list (and the page's memory) after a moment
      setTimeout(() => { for (const f of result.successful || []) if (uppy.getFile(f.id)) uppy.removeFile(f.id); }, 4000);
    });
    uppy.on("upload-success", () => { clearTimeout(refreshSoon); refreshSoon = setTimeout(() => { if (location.hash.startsWith("#/files")) route(); }, 300); });
    uppy.on("upload-error", (file, err) => say(`${file.name}: ${err.message}`, true));
    window.repfsUppy = uppy; // for the browser tests and the curious
    if (uppy.getFiles().length) uploader.hidden = false;
  }
  return uploader;
}

function openUploader(show) { if (uploader) uploader.hidden = !show; }

// --- sharing ------------------------------------------------------------------------------
async function shareDialog(path) {
  const dialog = $("#dialog");
  const info = await api.get(`/info/${enc(path)}`).catch((err) => { say(err.message, true); return null; });
  if (!info) return;
  const roles = ["reader", "editor", "master"];
  const list = h("datalist", { id: "accounts" });
  const who = h("input", { id: "share-user", list: "accounts", placeholder: "account name", autocomplete: "off", required: true,
    oninput: async (e) => {
      const found = await api.get(`/accounts?q=${encodeURIComponent(e.target.value)}`).catch(() => ({ accounts: [] }));
      list.replaceChildren(...found.accounts.map((a) => h("option", { value: a.name })));
    } });
  const role = h("select", { id: "share-role" }, roles.map((r) => h("option", { value: r }, r)));
  const said = h("p", { class: "error", role: "alert" });
  const act = async (fn) => { said.textContent = ""; try { await fn(); dialog.close(); shareDialog(path); } catch (err) { said.textContent = err.message; } };
  const rows = Object.entries(info.shared_with).map(([user, r]) => h("tr", { dataset: { user } }, h("td", {}, user),
    !info.may_share ? h("td", {}, r) : h("td", {}, h("select", { "aria-label": `role of ${user}`, onchange: (e) => act(() => api.post("/shares", { path: info.path, user, role: e.target.value })) },
      roles.map((x) => h("option", { value: x, selected: x === r }, x)))),
    info.may_share && h("td", {}, h("button", { type: "button", class: "danger", onclick: () => act(() => api.call("DELETE", `/shares?path=${encodeURIComponent(info.path)}&user=${encodeURIComponent(user)}`)) }, "Remove"))));
  const add = h("form", { class: "row", id: "share-form" }, h("div", {}, h("label", { for: "share-user" }, "Share with"), who, list),
    h("div", {}, h("label", { for: "share-role" }, "Role"), role), h("button", { type: "submit" }, "Share"));
  add.addEventListener("submit", (e) => { e.preventDefault(); act(() => api.post("/shares", { path: info.path, user: who.value, role: role.value })); });
  dialog.replaceChildren(h("h2", {}, `Share ${info.path}`),
    h("p", { class: "muted" }, `Owner: ${info.owner || "–"}. A reader may read, an editor change, a master also share.`),
    h("table", { id: "share-list" }, h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { class: "muted" }, "Not shared with anyone.")))),
    info.may_share ? add : h("p", { class: "muted", id: "share-readonly" }, "Only the owner or a master of it may change who has access."),
    said, h("div", { class: "toolbar" }, h("span", { class: "grow" }), h("button", { type: "button", class: "quiet", onclick: () => dialog.close() }, "Close")));
  if (!dialog.open) dialog.showModal();
}

async function viewShared(main) {
  const shares = await api.get("/shares");
  const row = (s) => h("tr", {}, h("td", { class: "name" }, h("a", { href: `#/files/${enc(s.path)}` }, s.path)), h("td", {}, s.role), h("td", {}, s.by), h("td", { class: "hide-small" }, when(s.since)));
  main.replaceChildren(h("h1", {}, "Shared with me"),
    h("div", { class: "tablewrap" }, h("table", { id: "shared" }, h("thead", {}, h("tr", {}, h("th", {}, "Path"), h("th", {}, "My role"), h("th", {}, "By"), h("th", { class: "hide-small" }, "Since"))),
      h("tbody", {}, shares.given.length ? shares.given.map(row) : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "Nothing is shared with you."))))),
    h("h2", {}, "What I share"),
    h("div", { class: "tablewrap" }, h("table", { id: "mine" }, h("thead", {}, h("tr", {}, h("th", {}, "Path"), h("th", {}, "With"), h("th", {}, "Role"))),
      h("tbody", {}, shares.mine.length ? shares.mine.map((s) => h("tr", {}, h("td", { class: "name" }, h("a", { href: `#/files/${enc(s.path)}` }, s.path)), h("td", {}, s.user), h("td", {}, s.role)))
        : h("tr", {}, h("td", { colspan: 3, class: "muted" }, "You share nothing."))))));
}

// --- my account ---------------------------------------------------------------------------
function meter(used, limit, label) {
  const ratio = limit ? Math.min(1, used / limit) : 0;
  return h("div", {}, h("div", {}, label),
    h("div", { class: `meter ${ratio > 0.95 ? "bad" : ratio > 0.8 ? "warn" : ""}` }, h("div", { style: null, dataset: { ratio: ratio.toFixed(3) } })));
}

function fillMeters(root) {
  for (const bar of root.querySelectorAll(".meter > div")) bar.style.width = `${Number(bar.dataset.ratio) * 100}%`;
}

async function viewAccount(main) {
  const acc = await loadMe();
  const q = acc.quota;
  main.replaceChildren(h("h1", {}, "My account"),
    h("div", { class: "card", id: "usage" },
      h("p", {}, `${acc.name} · ${acc.email}`, acc.valid_until ? ` · valid until ${day(acc.valid_until)}` : ""),
      meter(acc.usage.bytes, q.max_bytes, `Space: ${bytes(acc.usage.bytes)} of ${q.max_bytes ? bytes(q.max_bytes) : "no limit"}`),
      meter(acc.usage.files, q.max_files, `Files: ${acc.usage.files} of ${q.max_files || "no limit"}`)),
    h("div", { class: "card narrow" }, h("h2", {}, "Change my password"), passwordForm(() => route())));
  fillMeters(main);
}

// --- administrators: users ----------------------------------------------------------------
function sizeText(text) { // "10G" → bytes, "" → 0 (no limit), as repfs-admin takes it
  const m = String(text).trim().match(/^(\d+(?:\.\d+)?)\s*([KMGTP]?)i?B?$/i);
  if (!String(text).trim()) return 0;
  if (!m) throw new Error(`${text}: give a size such as 500M or 10G`);
  return Math.round(Number(m[1]) * 1024 ** " KMGTP".indexOf(m[2].toUpperCase() || " "));
}

async function viewUsers(main) {
  const { users } = await api.get("/users");
  const row = (u) => h("tr", { dataset: { user: u.name } },
    h("td", { class: "name" }, h("a", { href: `#/admin/users/${encodeURIComponent(u.name)}` }, u.name)),
    h("td", { class: "hide-small" }, u.email),
    h("td", { class: "num" }, u.usage.files), h("td", { class: "num" }, bytes(u.usage.bytes)),
    h("td", { class: "num hide-small" }, u.quota.max_bytes ? bytes(u.quota.max_bytes) : "–"),
    h("td", { class: "hide-small" }, u.valid_until ? day(u.valid_until) : "no end"),
    h("td", {}, u.disabled ? h("span", { class: "badge down" }, "disabled") : h("span", { class: "badge up" }, "active")),
    h("td", {}, h("button", { type: "button", class: u.disabled ? "quiet" : "danger",
      onclick: async () => { try { await api.post(`/users/${encodeURIComponent(u.name)}/${u.disabled ? "enable" : "disable"}`); route(); } catch (err) { say(err.message, true); } } },
      u.disabled ? "Enable" : "Disable")));
  const total = users.reduce((a, u) => a + u.usage.bytes, 0);
  main.replaceChildren(h("h1", {}, "Users"),
    h("p", { class: "muted", id: "users-total" }, `${users.length} accounts · ${bytes(total)} in all`),
    h("div", { class: "tablewrap" }, h("table", { id: "users" }, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", { class: "hide-small" }, "E-mail"),
      h("th", { class: "num" }, "Files"), h("th", { class: "num" }, "Volume"), h("th", { class: "num hide-small" }, "Quota"), h("th", { class: "hide-small" }, "Valid until"),
      h("th", {}, "State"), h("th", {}, ""))), h("tbody", {}, users.map(row)))),
    h("div", { class: "card narrow" }, h("h2", {}, "Add a user"),
      h("p", { class: "muted" }, "Leave the password empty to e-mail a link that sets it (when mail is set up)."),
      form([field("Account name", { id: "new-name", required: true, pattern: "[a-z_][a-z0-9_\\-]{0,31}" }),
            field("E-mail", { id: "new-email", type: "email", required: true }),
            field("Valid until (empty: no end)", { id: "new-until", type: "date" }),
            field("Password", { id: "new-p1", type: "password", minlength: 8, autocomplete: "new-password" }),
            field("The same password again", { id: "new-p2", type: "password", autocomplete: "new-password" }),
            h("label", { class: "inline" }, h("input", { type: "checkbox", id: "new-temporary", checked: true }), "must change it at the first sign-in")],
           "Add user", async (f) => {
             samePasswords(f, "new-p1", "new-p2");
             const body = { name: value(f, "new-name"), email: value(f, "new-email"), create_system_user: true };
             if (value(f, "new-until")) body.valid_until = value(f, "new-until");
             if (value(f, "new-p1")) { body.password = value(f, "new-p1"); body.password_temporary = f.querySelector("#new-temporary").checked; }
             const made = await api.post("/users", body);
             await route();
             say(`Account ${made.name} added.${made.mail && made.mail.sent ? ` A link to set the password was mailed to ${made.mail.to}.` : ""}`);
           })));
}

async function viewUser(main, name) {
  const u = await api.get(`/users/${encodeURIComponent(name)}`);
  const state = { offset: 0 };
  const list = h("div", { class: "tablewrap" });
  const pager = h("div", { class: "toolbar" });
  async function page() {
    const got = await api.get(`/users/${encodeURIComponent(name)}/files?offset=${state.offset}&limit=${PAGE}`);
    list.replaceChildren(h("table", { id: "user-files" }, h("thead", {}, h("tr", {}, h("th", {}, "File"), h("th", { class: "num" }, "Size"), h("th", { class: "num hide-small" }, "Modified"))),
      h("tbody", {}, got.files.length ? got.files.map((f) => h("tr", {}, h("td", { class: "name" }, f.path), h("td", { class: "num" }, bytes(f.size)), h("td", { class: "num hide-small" }, when(f.mtime))))
        : h("tr", {}, h("td", { colspan: 3, class: "muted" }, "No files.")))));
    pager.replaceChildren(h("button", { type: "button", class: "quiet", disabled: state.offset === 0, onclick: () => { state.offset -= PAGE; page(); } }, "‹ Previous"),
      h("button", { type: "button", class: "quiet", disabled: !got.more, onclick: () => { state.offset += PAGE; page(); } }, "Next ›"));
  }
  main.replaceChildren(h("h1", {}, `User ${u.name}`),
    h("div", { class: "card" }, h("p", {}, `${u.email} · uid ${u.uid} · ${u.usage.files} files · ${bytes(u.usage.bytes)}`, u.disabled ? " · disabled" : ""),
      form([h("div", { class: "row" },
        h("div", {}, ...field("Quota (empty: none)", { id: "quota", value: u.quota.max_bytes ? bytes(u.quota.max_bytes).replace(/ |iB|B/g, "") : "" })),
        h("div", {}, ...field("Most files (0: none)", { id: "quota-files", type: "number", min: 0, value: u.quota.max_files })),
        h("div", {}, ...field("Valid until", { id: "until", type: "date", value: day(u.valid_until) })))],
      "Save", async (f) => {
        await api.call("PATCH", `/users/${encodeURIComponent(name)}`, { quota: String(sizeText(value(f, "quota"))),
          quota_files: String(Number(value(f, "quota-files")) || 0), valid_until: value(f, "until") });
        say(`Account ${name} saved.`);
      })),
    h("h2", {}, "Files"), list, pager);
  await page();
}

// --- administrators: pools ----------------------------------------------------------------
const RANGES = { "1 hour": 3600, "1 day": 86400, "30 days": 30 * 86400 };

async function viewPools(main) {
  let span = 3600;
  const plots = new Map(); // pool → {plot, data: [times, used, free], last}
  const grid = h("div", { class: "pools", id: "pools" });
  const alerts = h("ul", { class: "alerts", id: "alerts" });
  const work = h("p", { class: "muted", id: "work" });
  const ranges = h("div", { class: "toolbar" }, Object.entries(RANGES).map(([label, s]) =>
    h("button", { type: "button", class: "quiet", onclick: () => { span = s; plots.clear(); grid.replaceChildren(); refresh(); } }, label)));
  main.replaceChildren(h("h1", {}, "Pools"), ranges, alerts, work, grid);
  let timer = null;
  let stopped = false;
  const fit = () => { for (const p of plots.values()) p.plot.setSize({ width: $(".plot", p.card).clientWidth, height: 180 }); };
  window.addEventListener("resize", fit);
  leaving.push(() => { stopped = true; clearTimeout(timer); window.removeEventListener("resize", fit); });

  async function refresh() {
    try {
      const [pools, status] = await Promise.all([api.get("/pools"), api.get("/status")]);
      const since = Math.min(...[...plots.values()].map((p) => p.last), Date.now() / 1000 - span);
      const history = await api.get(`/pools/history?since=${since.toFixed(3)}&limit=100000`);
      if (stopped) return;
      alerts.replaceChildren(...status.alerts.map((a) => h("li", {}, a)));
      const r = status.repair;
      const scrub = status.scrub_finished_ns ? when(status.scrub_finished_ns / 1e9) : "–";
      work.textContent = `Repair: ${r.deficit} blocks short of copies, ${r.repaired} repaired, ${r.unrecoverable} unrecoverable. Last full scrub: ${scrub}.`;
      for (const p of pools.pools) drawPool(p, history, status);
    } catch (err) {
      say(err.message, true);
    }
    if (!stopped) timer = setTimeout(refresh, POLL);
  }

  function drawPool(p, history, status) {
    let entry = plots.get(p.name);
    if (!entry) {
      const box = h("div", { class: "plot" });
      const card = h("div", { class: "card pool", dataset: { pool: p.name } },
        h("h3", {}, h("span", {}, p.name), h("span", { class: "badge", "data-role": "state" })),
        h("div", { class: "muted", "data-role": "space" }), box, h("ul", { "data-role": "states" }));
      grid.append(card);
      const width = box.clientWidth || 300;
      // used and available on scales of their own: a few MiB used beside TiB free still shows moving
      const sized = (u, vals) => vals.map((v) => bytes(v));
      const plot = new window.uPlot({ width, height: 180,
        scales: { used: { auto: true }, free: { auto: true } },
        series: [{}, { label: "used", scale: "used", stroke: "#1f4e8c", fill: "rgba(31,78,140,.12)", value: (u, v) => bytes(v) },
                 { label: "available", scale: "free", stroke: "#1d7a46", value: (u, v) => bytes(v) }],
        axes: [{}, { scale: "used", values: sized, size: 70, stroke: "#1f4e8c" },
               { scale: "free", side: 1, values: sized, size: 70, stroke: "#1d7a46", grid: { show: false } }] },
        [[], [], []], box);
      entry = { card, plot, data: [[], [], []], last: 0 };
      plots.set(p.name, entry);
    }
    for (const s of history.usage) {
      if (s.pool !== p.name || s.at <= entry.last || s.used === null) continue;
      entry.data[0].push(s.at); entry.data[1].push(s.used); entry.data[2].push(s.free);
      entry.last = s.at;
    }
    const cut = Date.now() / 1000 - span;
    while (entry.data[0].length && entry.data[0][0] < cut) for (const col of entry.data) col.shift();
    entry.plot.setData(entry.data);
    const n = entry.data[0].length;
    Object.assign(entry.card.dataset, { state: p.state, samples: String(n), used: n ? String(entry.data[1][n - 1]) : "" });
    const badge = $("[data-role=state]", entry.card);
    badge.textContent = p.draining && p.state === "up" ? "draining" : p.state;
    badge.className = `badge ${badge.textContent}`;
    $("[data-role=space]", entry.card).textContent = p.total ? `${p.kind} · used ${bytes(p.used)} of ${bytes(p.total)} · ${bytes(p.free)} available`
      : `${p.kind} · used ${bytes(p.used)} · its capacity is not known (set one with repfs-admin pools set)`;
    const changes = history.states.filter((s) => s.pool === p.name).slice(-5).reverse();
    if (changes.length) $("[data-role=states]", entry.card).replaceChildren(...changes.map((s) => h("li", {}, `${when(s.at)}: ${s.state}${s.reason ? ` (${s.reason})` : ""}`)));
  }
  await refresh();
}

// --- start --------------------------------------------------------------------------------
window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  $("#signout").addEventListener("click", async () => {
    await api.call("DELETE", "/token").catch(() => null);
    $("#signout").hidden = true; $("#nav").hidden = true; $("#who").textContent = "";
    signedOut("You are signed out.");
  });
  route();
});
