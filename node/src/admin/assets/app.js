// Meridian dashboard: reads the admin API of the node that served it every
// two seconds and redraws. No framework, no build step; every value is
// written with textContent, never as markup. This file holds the token,
// the reads and the refresh; the tables are in tables.js, the charts in
// charts.js and the editing of routes, upstreams and keys in edit.js.
"use strict";

const REFRESH_MS = 2000;
const TOKEN_KEY = "meridian.admin.token";
let timer = null;

// The token lives in this tab's sessionStorage (typed, or taken from the
// URL fragment) or, when the operator ticks "remember here", in
// localStorage, so a wall display survives a restart of its browser.
function token() {
  return sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem(TOKEN_KEY) || "";
}

function keepToken(t, remember) {
  forgetToken();
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  if (remember) localStorage.setItem(TOKEN_KEY, t);
}

function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_KEY);
}

// `/admin/#token=...`: the token is kept for this tab and the fragment is
// taken off the address bar at once, so it is not left on screen (nor in
// the history). The fragment never reaches the server.
function tokenFromFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const t = params.get("token");
  if (t === null) return false;
  keepToken(t.trim(), false);
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  return true;
}

// What the token field says when empty: whether this node wants a token is
// known only from its answer (401 or not), so the page says so then,
// instead of guessing.
function tokenHint(answered401) {
  const input = document.getElementById("token");
  if (answered401) {
    input.placeholder = "required by this node";
    document.body.dataset.token = token() ? "refused" : "required";
  } else {
    input.placeholder = token() ? "" : "not needed on this node";
    document.body.dataset.token = token() ? "accepted" : "not-needed";
  }
}

async function get(path) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  const res = await fetch(path, { headers, cache: "no-store" });
  if (res.status === 401) {
    tokenHint(true);
    throw new Error(t ? "this node refused the admin token: type the right one above"
      : "this node requires the admin token: type it above");
  }
  if (!res.ok) {
    let message = res.status + " " + res.statusText;
    try { message = (await res.json()).error.message || message; } catch (_) { /* not JSON */ }
    throw new Error(path + ": " + message);
  }
  return res.json();
}

// el("td", {class: "num"}, "text", child…)
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function pill(text, kind) {
  return el("span", { class: "pill " + (kind || text) }, text);
}

function ms(v) {
  if (v === undefined || v === null) return "—";
  if (v >= 10000) return (v / 1000).toFixed(1) + " s";
  if (v >= 1000) return (v / 1000).toFixed(2) + " s";
  return Math.round(v) + " ms";
}

function ago(v) {
  if (v === undefined || v === null) return "—";
  return v < 1000 ? Math.round(v) + " ms" : (v / 1000).toFixed(1) + " s";
}

function fill(table, rows, columns, emptyText) {
  const body = document.querySelector(table + " tbody");
  body.replaceChildren(...rows);
  if (rows.length === 0) {
    body.append(el("tr", {}, el("td", { class: "empty", colspan: columns }, emptyText)));
  }
}

function usd(v) {
  if (typeof v !== "number" || !isFinite(v)) return "—";
  const a = Math.abs(v);
  const text = a >= 1 || a === 0 ? a.toFixed(2) : a.toFixed(6).replace(/0+$/, "");
  return (v < 0 ? "-$" : "$") + text;
}

// The usage ledger counts days in UTC.
function todayUtc() {
  return new Date().toISOString().slice(0, 10);
}

function say(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("error", !!isError);
}

async function refresh() {
  try {
    const day = todayUtc();
    const today = "/admin/v1/usage?from=" + day + "&to=" + day;
    const [cluster, health, events, catalogue, keys, usage, byModel, history, routes] = await Promise.all([
      get("/admin/v1/cluster"),
      get("/admin/v1/health"),
      get("/admin/v1/events"),
      get("/admin/v1/catalogue"),
      get("/admin/v1/keys"),
      get(today + "&by=day"),
      get(today + "&by=model"),
      get("/admin/v1/history"),
      // This node's applied table: an acknowledged edit is applied here already.
      get("/admin/v1/routes?stale=true"),
    ]);
    tokenHint(false);
    drawNode(cluster);
    drawMembers(cluster, health);
    drawHeatmap(health, cluster);
    drawHistory(history);
    drawRouteHistory(history);
    drawClasses(health);
    drawUpstreams(health);
    drawFailovers(events);
    drawCatalogue(catalogue);
    drawKeys(keys, usage);
    drawUsageByModel(byModel);
    drawConfig(routes, health, keys);
    document.body.dataset.loaded = "true";
    say("updated " + new Date().toLocaleTimeString(), false);
  } catch (e) {
    say(e.message || String(e), true);
  } finally {
    clearTimeout(timer);
    timer = setTimeout(refresh, REFRESH_MS);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("token");
  const remember = document.getElementById("remember");
  if (tokenFromFragment()) document.body.dataset.tokenFrom = "fragment";
  input.value = token();
  remember.checked = !!localStorage.getItem(TOKEN_KEY);
  document.getElementById("auth").addEventListener("submit", (ev) => {
    ev.preventDefault();
    keepToken(input.value.trim(), remember.checked);
    refresh();
  });
  document.getElementById("forget").addEventListener("click", () => {
    forgetToken();
    input.value = "";
    remember.checked = false;
    refresh();
  });
  setupEditor();
  refresh();
});
