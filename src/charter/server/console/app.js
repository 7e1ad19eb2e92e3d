// Charter console: a small single-page app over the /v1 API. No build step, no libraries.
"use strict";

const KEY = "charter.token";
const $ = (sel) => document.querySelector(sel);
let stopLive = () => {};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status; this.code = e.code; this.hint = e.hint;
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}`, ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { ...options, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  let body = null;
  try { body = await resp.json(); } catch (_) { body = null; }
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

// Server-Sent Events over fetch (EventSource cannot send the Authorization header).
function follow(path, onEvent, onEnd) {
  const ctrl = new AbortController();
  let lastId = null, stopped = false;
  (async () => {
    while (!stopped) {
      try {
        const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` };
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const resp = await fetch(path, { headers, signal: ctrl.signal });
        if (!resp.ok) { onEnd && onEnd(new ApiError(resp.status, await resp.json().catch(() => null))); return; }
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
            const msg = { event: "message", data: "", id: null };
            for (const line of chunk.split("\n")) {
              if (line.startsWith(":")) continue;
              const [k, ...rest] = line.split(":"); const v = rest.join(":").replace(/^ /, "");
              if (k === "data") msg.data += v; else if (k === "event") msg.event = v; else if (k === "id") msg.id = v;
            }
            if (msg.id !== null) lastId = msg.id;
            if (!msg.data) continue;
            if (msg.event === "end") { stopped = true; onEnd && onEnd(null, JSON.parse(msg.data)); return; }
            onEvent(msg.event, JSON.parse(msg.data));
          }
        }
      } catch (err) {
        if (stopped || err.name === "AbortError") return;
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 1000)); // reconnect from lastId
    }
  })();
  return () => { stopped = true; ctrl.abort(); };
}

function debounce(fn, ms) { let t; return () => { clearTimeout(t); t = setTimeout(fn, ms); }; }
function when(at) { return at ? new Date(at * 1000).toLocaleString() : ""; }
function usd(v) { return v === 0 ? "$0" : v >= 0.01 ? `$${v.toFixed(4)}` : `$${v.toPrecision(2)}`; }

function show(node, title) {
  const page = $("#page");
  page.replaceChildren(node);
  page.hidden = false; $("#login").hidden = true; $("#nav").hidden = false;
  document.title = `${title} · Charter console`;
  const hash = location.hash.split("?")[0];
  for (const a of document.querySelectorAll("nav a")) {
    if (hash.startsWith(a.getAttribute("href"))) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
}

function problem(err) {
  if (err.status === 404 && err.code !== "not_found") {
    return el("p", { class: "notice", role: "status" }, "Not available on this server (it does not serve this page's API).");
  }
  if (err.status === 401) { logout(err.message); return el("p"); }
  return el("p", { class: "error", role: "alert" }, `${err.message}${err.hint ? ` (${err.hint})` : ""}`);
}

// -- log in --------------------------------------------------------------------------------------
function showLogin(message) {
  stopLive();
  $("#page").hidden = true; $("#nav").hidden = true; $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  document.title = "Log in · Charter console";
  $("#token").focus();
}
function logout(message) { sessionStorage.removeItem(KEY); showLogin(message); }

async function login(event) {
  event.preventDefault();
  const token = $("#token").value.trim();
  sessionStorage.setItem(KEY, token);
  try {
    await api("/v1/runs?limit=1");
    $("#token").value = "";
    if (!location.hash || location.hash === "#/") location.hash = "#/runs"; else route();
  } catch (err) {
    sessionStorage.removeItem(KEY);
    $("#login-error").textContent = err.status === 401
      ? `That token was refused: ${err.message}. Check it, or make a new one with charter tokens create.`
      : `Could not log in: ${err.message}`;
    $("#token").focus();
  }
}

// -- runs ----------------------------------------------------------------------------------------
const STATUSES = ["", "queued", "running", "waiting", "succeeded", "failed", "escalated", "cancelled"];

async function runsPage(params) {
  const filters = { status: params.get("status") || "", agent: params.get("agent") || "", since: params.get("since") || "" };
  const cursors = (params.get("pages") || "").split(",").filter(Boolean);
  const form = el("form", { class: "filters", "aria-label": "Filter runs", onsubmit: (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const k of ["status", "agent", "since"]) { const v = form.elements[k].value.trim(); if (v) q.set(k, v); }
      location.hash = `#/runs?${q}`;
    } },
    el("div", {}, el("label", { for: "f-status" }, "Status"),
      el("select", { id: "f-status", name: "status" }, STATUSES.map((s) => el("option", { value: s, selected: s === filters.status }, s || "any")))),
    el("div", {}, el("label", { for: "f-agent" }, "Agent"), el("input", { id: "f-agent", name: "agent", value: filters.agent, placeholder: "any" })),
    el("div", {}, el("label", { for: "f-since" }, "Since"), el("input", { id: "f-since", name: "since", value: filters.since, placeholder: "24h, 7d", size: 8 })),
    el("button", { type: "submit" }, "Apply"));
  const holder = el("div", {}, el("p", { class: "hint" }, "Loading…"));
  const live = el("span", { class: "live" }, "live");
  show(el("div", {}, el("h2", {}, "Runs ", live), form, holder), "Runs");

  async function load() {
    const q = new URLSearchParams({ limit: "25" });
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    if (cursors.length) q.set("cursor", cursors[cursors.length - 1]);
    try {
      const page = await api(`/v1/runs?${q}`);
      holder.replaceChildren(runsTable(page.runs), pager(page.next_cursor));
    } catch (err) { holder.replaceChildren(problem(err)); }
  }
  function pager(next) {
    const base = new URLSearchParams(params); base.delete("pages");
    const to = (list) => { const q = new URLSearchParams(base); if (list.length) q.set("pages", list.join(",")); location.hash = `#/runs?${q}`; };
    return el("div", { class: "pager" },
      el("button", { type: "button", class: "secondary", disabled: !cursors.length, onclick: () => to([]) }, "First page"),
      el("button", { type: "button", class: "secondary", disabled: !cursors.length, onclick: () => to(cursors.slice(0, -1)) }, "Previous page"),
      el("button", { type: "button", class: "secondary", disabled: !next, onclick: () => to([...cursors, next]) }, "Next page"));
  }
  await load();
  const refresh = debounce(load, 300);
  stopLive = follow("/v1/events/stream", () => refresh(), () => { live.textContent = "not live"; live.classList.add("ended"); });
}

function runsTable(runs) {
  if (!runs.length) return el("p", { class: "hint" }, "No runs match.");
  return el("table", {},
    el("thead", {}, el("tr", {}, ["Run", "Agent", "Status", "Principal", "Events", "Created", "Updated"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, runs.map((r) => el("tr", { "data-run": r.run_id },
      el("td", {}, el("a", { href: `#/runs/${r.run_id}`, class: "mono" }, r.run_id)),
      el("td", {}, `${r.agent_name} v${r.agent_version}`),
      el("td", {}, el("span", { class: `status status-${r.status}` }, r.status)),
      el("td", {}, r.principal), el("td", {}, r.last_seq), el("td", {}, when(r.created_at)), el("td", {}, when(r.updated_at))))));
}

// -- one run -------------------------------------------------------------------------------------
async function runPage(runId) {
  const live = el("span", { class: "live", role: "status" }, "live");
  const facts = el("dl", { class: "facts" });
  const lines = el("ol", { class: "timeline", "aria-label": "Timeline" });
  const totals = el("p", { class: "bold", id: "totals" });
  const err = el("div");
  show(el("div", {}, el("p", {}, el("a", { href: "#/runs" }, "← Runs")),
    el("h2", {}, el("span", { class: "mono" }, runId), " ", live), el("div", { class: "card" }, facts), err, lines, totals), "Run");

  async function load() {
    try {
      const t = await api(`/v1/runs/${encodeURIComponent(runId)}/timeline`);
      const r = t.run;
      facts.replaceChildren(...[["Status", el("span", { class: `status status-${r.status}`, id: "run-status" }, r.status)],
        ["Agent", `${r.agent_name} v${r.agent_version}`], ["Tenant", r.tenant], ["Principal", r.principal],
        ["Cost", usd(t.totals.cost_usd)], ["Tokens", t.totals.tokens], ["Created", when(r.created_at)]]
        .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
      lines.replaceChildren(...t.lines.map((l) => el("li", { "data-seq": l.seq ?? "" },
        el("span", { class: "off" }, l.seq === null ? "" : `+${l.offset_s.toFixed(3)}s`),
        el("span", { class: [l.tone ? `tone-${l.tone}` : "", l.bold ? "bold" : "", l.seq === null ? "dim" : ""].join(" "),
          style: `padding-left:${l.depth * 2}em` }, l.text))));
      totals.textContent = t.totals.text;
      return r;
    } catch (e) { err.replaceChildren(problem(e)); return null; }
  }
  const run = await load();
  if (!run) return;
  const refresh = debounce(load, 100);
  stopLive = follow(`/v1/runs/${encodeURIComponent(runId)}/events/stream`, () => refresh(), (e, end) => {
    live.textContent = end ? `finished: ${end.status}` : "not live"; live.classList.add("ended"); load();
  });
}

// -- approvals, kill switch, stats (endpoints another part of the server provides) ----------------
async function approvalsPage() {
  const holder = el("div", {}, el("p", { class: "hint" }, "Loading…"));
  show(el("div", {}, el("h2", {}, "Approvals"), holder), "Approvals");
  const load = async () => {
    try {
      const { approvals } = await api("/v1/approvals?status=pending");
      if (!approvals.length) { holder.replaceChildren(el("p", { class: "hint" }, "Nothing is waiting for a decision.")); return; }
      holder.replaceChildren(...approvals.map((a) => approvalCard(a, load)));
    } catch (e) { holder.replaceChildren(problem(e)); }
  };
  await load();
}

function approvalCard(a, reload) {
  const id = a.approval_id;
  const note = el("input", { id: `note-${id}`, size: 40 });
  const msg = el("p", { role: "status" });
  const act = async (verb, body) => {
    try { await api(`/v1/approvals/${encodeURIComponent(id)}/${verb}`, { method: "POST", body }); await reload(); }
    catch (e) { msg.replaceChildren(problem(e)); }
  };
  return el("div", { class: "card" },
    el("h3", {}, `${a.tool || "call"} · ${id}`),
    el("dl", { class: "facts" }, ["run_id", "requested_by", "role", "tier", "risk", "reason", "arguments_hash", "expires_at"]
      .filter((k) => a[k] !== undefined).flatMap((k) => [el("dt", {}, k), el("dd", { class: "mono" }, k === "expires_at" ? when(a[k]) : a[k])])),
    el("pre", { class: "mono" }, JSON.stringify(a.arguments ?? {}, null, 2)),
    a.changes && a.changes.length ? el("pre", { class: "mono" }, a.changes.map((c) => `${c.field}: ${JSON.stringify(c.old)} → ${JSON.stringify(c.new)}`).join("\n")) : "",
    el("label", { for: `note-${id}` }, "Note or reason"), note, " ",
    el("button", { type: "button", onclick: () => act("grant", { note: note.value, arguments_hash: a.arguments_hash }) }, "Grant"), " ",
    el("button", { type: "button", class: "secondary", onclick: () => act("deny", { reason: note.value || "denied in the console" }) }, "Deny"),
    msg);
}

async function killswitchPage() {
  const holder = el("div", {}, el("p", { class: "hint" }, "Loading…"));
  show(el("div", {}, el("h2", {}, "Kill switch"), holder), "Kill switch");
  const load = async () => {
    try {
      const state = await api("/v1/killswitch");
      const reason = el("input", { id: "ks-reason", size: 40, required: true });
      const scope = el("input", { id: "ks-scope", size: 20, placeholder: "*" });
      const msg = el("p", { role: "status" });
      const flip = async (on) => {
        try { await api("/v1/killswitch", { method: "POST", body: { on, reason: reason.value, agent: scope.value || "*" } }); await load(); }
        catch (e) { msg.replaceChildren(problem(e)); }
      };
      holder.replaceChildren(el("pre", { class: "card mono" }, JSON.stringify(state, null, 2)),
        el("div", { class: "filters" },
          el("div", {}, el("label", { for: "ks-scope" }, "Agent (* for every agent)"), scope),
          el("div", {}, el("label", { for: "ks-reason" }, "Reason"), reason),
          el("button", { type: "button", onclick: () => flip(true) }, "Switch writes off"),
          el("button", { type: "button", class: "secondary", onclick: () => flip(false) }, "Switch writes on")), msg);
    } catch (e) { holder.replaceChildren(problem(e)); }
  };
  await load();
}

async function statsPage(params) {
  const since = params.get("since") || "7d";
  const holder = el("div", {}, el("p", { class: "hint" }, "Loading…"));
  const form = el("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); location.hash = `#/stats?since=${encodeURIComponent(form.elements.since.value)}`; } },
    el("div", {}, el("label", { for: "s-since" }, "Since"), el("input", { id: "s-since", name: "since", value: since, size: 8 })),
    el("button", { type: "submit" }, "Show"));
  show(el("div", {}, el("h2", {}, "Costs & stats"), form, holder), "Costs & stats");
  try {
    const s = await api(`/v1/stats?since=${encodeURIComponent(since)}`);
    const rows = Object.entries(s).filter(([, v]) => typeof v !== "object" || v === null);
    holder.replaceChildren(el("table", {}, el("tbody", {}, rows.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, String(v)))))),
      el("details", {}, el("summary", {}, "Everything (JSON)"), el("pre", { class: "mono" }, JSON.stringify(s, null, 2))));
  } catch (e) { holder.replaceChildren(problem(e)); }
}

// -- routing -------------------------------------------------------------------------------------
function route() {
  stopLive(); stopLive = () => {};
  if (!sessionStorage.getItem(KEY)) { showLogin(); return; }
  const [path, query] = (location.hash.slice(1) || "/runs").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  $("#who").textContent = "";
  if (parts[0] === "runs" && parts[1]) runPage(decodeURIComponent(parts[1]));
  else if (parts[0] === "approvals") approvalsPage();
  else if (parts[0] === "killswitch") killswitchPage();
  else if (parts[0] === "stats") statsPage(params);
  else runsPage(params);
  $("#main").focus();
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", () => logout("Logged out."));
  route();
});
