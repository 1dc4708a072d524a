// Meridian dashboard: reads the admin API of the node that served it every
// two seconds and redraws. No framework, no build step; every value is
// written with textContent, never as markup.
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

function heatClass(p99) {
  if (p99 < 250) return "h0";
  if (p99 < 1000) return "h1";
  if (p99 < 3000) return "h2";
  if (p99 < 10000) return "h3";
  return "h4";
}

function drawNode(cluster) {
  const node = document.getElementById("node");
  node.replaceChildren(
    "node ", el("b", {}, cluster.id), " · ", el("b", {}, cluster.region), " · ",
    pill(cluster.role), " · term ", el("b", {}, cluster.term),
    " · applied ", el("b", {}, cluster.applied_index ?? "—"),
  );
  document.getElementById("leader").textContent =
    cluster.leader == null ? "no leader known" : "leader: node " + cluster.leader + ", term " + cluster.term;
}

function drawMembers(cluster, health) {
  const reports = (health && health.reports) || {};
  const rows = cluster.members.map((m) => {
    const report = reports[m.id];
    const leader = cluster.leader === m.id;
    return el("tr", { "data-member": m.id },
      el("td", {}, m.id, m.id === cluster.id ? " (this node)" : ""),
      el("td", {}, m.region ?? "—"),
      el("td", {}, leader ? pill("leader") : pill(m.role === "voter" ? "follower" : m.role)),
      el("td", {}, m.raft_addr),
      el("td", {}, m.admin_addr ?? "—"),
      el("td", { class: "num" }, m.matched_index ?? "—"),
      el("td", { class: "num" + (m.lag > 100 ? " bad" : "") }, m.lag ?? "—"),
      el("td", { class: "num" }, ago(m.last_contact_ms)),
      el("td", { class: "num" }, report ? ago(report.age_ms) : "—", report && report.stale ? " " : "",
        report && report.stale ? pill("stale") : null),
    );
  });
  fill("#members", rows, 9, "no members");
}

function drawHeatmap(health, cluster) {
  const regions = new Set();
  for (const m of (cluster && cluster.members) || []) if (m.region) regions.add(m.region);
  for (const u of health.upstreams) for (const r of Object.keys(u.regions || {})) regions.add(r);
  const columns = [...regions].sort();
  const head = document.querySelector("#heatmap thead");
  head.replaceChildren(el("tr", {},
    el("th", {}, "upstream"),
    ...columns.map((r) => el("th", { "data-region": r }, r)),
    el("th", {}, "whole cluster")));
  const cell = (view, label) => {
    if (!view || !view.ttfb_ms || view.ttfb_ms.count === 0) {
      return el("td", { class: "cell none", title: label }, "—");
    }
    const q = view.ttfb_ms;
    return el("td", { class: "cell " + heatClass(q.p99), title: label },
      ms(q.p99),
      el("small", {}, q.count + " samples · " + view.nodes + (view.nodes === 1 ? " node" : " nodes")));
  };
  const rows = health.upstreams.map((u) => el("tr", { "data-upstream": u.id },
    el("th", {}, u.id),
    ...columns.map((r) => cell((u.regions || {})[r], u.id + " from " + r)),
    cell(u.merged, u.id + " from every region")));
  fill("#heatmap", rows, columns.length + 2, "no upstreams");
}

function keyState(key) {
  if (key === "present" || key === "not_needed") return pill(key === "present" ? "present" : "not needed", key);
  if (key && key.missing) return el("span", { title: key.missing }, pill("missing"));
  return "—";
}

function drawUpstreams(health) {
  const rows = health.upstreams.map((u) => {
    const w = u.window || {};
    const q = w.ttfb_ms || {};
    return el("tr", { "data-upstream": u.id },
      el("td", {}, u.id),
      el("td", {}, u.region),
      el("td", { "data-circuit": u.circuit }, pill(u.circuit.replace("_", "-"), u.circuit)),
      el("td", {}, keyState(u.key)),
      el("td", { class: "num" }, u.in_flight),
      el("td", { class: "num" }, w.attempts ?? 0),
      el("td", { class: "num" + (w.error_rate > 0.05 ? " bad" : "") },
        ((w.error_rate || 0) * 100).toFixed(1) + " %"),
      el("td", { class: "num" }, q.count ? ms(q.p50) : "—"),
      el("td", { class: "num" }, q.count ? ms(q.p99) : "—"),
    );
  });
  fill("#upstreams", rows, 9, "no upstreams");
}

function drawFailovers(events) {
  const rows = events.failovers.map((e) => el("tr", { "data-failover": e.seq },
    el("td", {}, new Date(e.at_unix_ms).toLocaleTimeString()),
    el("td", {}, e.route),
    el("td", {}, e.from),
    el("td", {}, e.to),
    el("td", { class: "reason" }, e.reason),
    el("td", {}, e.request_id),
  ));
  fill("#failovers", rows, 6, "no failover since this node started");
}

function drawCatalogue(catalogue) {
  const rows = [];
  for (const u of catalogue.upstreams) {
    const declared = new Set(u.declared);
    const discovered = new Set(u.discovered);
    const models = [...new Set([...u.declared, ...u.discovered])].sort();
    const list = !u.discover ? "—"
      : u.applied_unix_ms ? "applied " + new Date(u.applied_unix_ms).toLocaleTimeString()
      : "none yet";
    for (const m of models) {
      const source = declared.has(m) && discovered.has(m) ? "both"
        : declared.has(m) ? "declared" : "discovered";
      rows.push(el("tr", { "data-catalogue": u.id + "/" + m },
        el("td", {}, u.id + "/" + m),
        el("td", {}, source),
        el("td", {}, list),
      ));
    }
  }
  fill("#catalogue", rows, 3, "no upstream declares or discovers its models: any upstream/model is accepted");
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

function drawKeys(keys, today) {
  const used = new Map(today.rows.map((r) => [r.key, r]));
  const rows = keys.map((k) => {
    const u = used.get(k.name) || {};
    const c = k.credits;
    return el("tr", { "data-key": k.name },
      el("td", {}, k.name),
      el("td", {}, k.models ? k.models.join(", ") : "all"),
      el("td", { class: "num" }, k.rpm ?? "—"),
      el("td", { class: "num" }, k.tpm ?? "—"),
      el("td", {}, k.class ?? "default"),
      el("td", { class: "num" }, u.requests ?? 0),
      el("td", { class: "num" }, (u.input_tokens ?? 0) + (u.output_tokens ?? 0)),
      el("td", { class: "num" }, usd(u.cost_usd ?? 0)),
      el("td", { class: "num" + (c && c.balance_usd <= 0 ? " bad" : ""), "data-balance": k.name,
        title: c ? "added " + usd(c.added_usd) + ", spent " + usd(c.spent_usd) : "no balance is checked" },
        c ? usd(c.balance_usd) : "—"),
    );
  });
  fill("#keys", rows, 9, "no client keys: the data plane is open on loopback");
}

function drawUsageByModel(byModel) {
  const rows = byModel.rows.map((r) => el("tr", { "data-usage-model": r.model },
    el("td", {}, r.model),
    el("td", {}, r.key),
    el("td", { class: "num" }, r.requests),
    el("td", { class: "num" }, r.input_tokens),
    el("td", { class: "num" }, r.output_tokens),
    el("td", { class: "num" }, usd(r.cost_usd)),
  ));
  fill("#usage-models", rows, 6, "no usage today");
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

// One chart: a line per series over the last `span` ms before `now`; a
// gap where a point has no value (no samples for a p99).
function chart(lines, value, now, span, format, label) {
  const W = 300, H = 72, top = 12, bottom = 4;
  let max = 0;
  for (const l of lines) for (const p of l.points) {
    const v = value(p);
    if (v !== null && v !== undefined && v > max) max = v;
  }
  const scale = max > 0 ? max : 1;
  // The newest point sits a little inside the right edge, so a dot shows whole.
  const x = (t) => ((t - (now - span)) / span * (W - 4)).toFixed(1);
  const y = (v) => (H - bottom - (v / scale) * (H - top - bottom)).toFixed(1);
  const paths = lines.map((l) => {
    const runs = [[]];
    for (const p of l.points) {
      const v = value(p);
      if (v === null || v === undefined) { if (runs[runs.length - 1].length) runs.push([]); continue; }
      runs[runs.length - 1].push(x(p.at_unix_ms) + " " + y(v));
    }
    // A lone point is drawn as a dot (a round cap on a zero-length line).
    const d = runs.filter((r) => r.length)
      .map((r) => "M" + r.join(" L") + (r.length === 1 ? " l0.01 0" : "")).join(" ");
    return d ? svg("path", { d, class: l.cls }) : null;
  }).filter((p) => p);
  return svg("svg", { class: "chart", viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none",
    role: "img", "aria-label": label, "data-chart": label },
    svg("line", { class: "axis", x1: 0, y1: H - bottom, x2: W, y2: H - bottom }),
    svg("text", { x: 4, y: 10 }, "max " + format(max)),
    ...paths);
}

function scopeName(s) {
  return s.scope === "region" ? s.region : s.scope === "node" ? "this node" : "whole cluster";
}

function drawHistory(history) {
  const box = document.getElementById("history");
  let now = 0;
  for (const s of history.series) for (const p of s.points) now = Math.max(now, p.at_unix_ms);
  const span = history.interval_ms * history.points;
  const regions = [...new Set(history.series.filter((s) => s.scope === "region").map((s) => s.region))].sort();
  const cls = (s) => s.scope === "region" ? "s-r" + (regions.indexOf(s.region) % 6) : "s-" + s.scope;
  const byUpstream = new Map();
  for (const s of history.series) {
    if (!byUpstream.has(s.upstream)) byUpstream.set(s.upstream, []);
    byUpstream.get(s.upstream).push({ points: s.points, cls: cls(s) });
  }
  const cells = [el("div", {}), el("div", { class: "chart-head" }, "attempts / s"),
    el("div", { class: "chart-head" }, "error share"), el("div", { class: "chart-head" }, "p99 to first byte")];
  for (const [id, lines] of byUpstream) {
    cells.push(el("div", { class: "upstream", "data-history": id }, id),
      chart(lines, (p) => p.rate, now, span, (v) => v.toFixed(v < 10 ? 2 : 0), id + " rate"),
      chart(lines, (p) => p.error_share, now, span, (v) => (v * 100).toFixed(1) + " %", id + " errors"),
      chart(lines, (p) => p.p99_ms, now, span, ms, id + " p99"));
  }
  if (byUpstream.size === 0) cells.push(el("div", { class: "empty" }, "no samples yet (one every 10 s)"));
  box.replaceChildren(...cells);
  const seen = [...new Set(history.series.map((s) => JSON.stringify([cls(s), scopeName(s)])))].sort();
  document.getElementById("history-legend").replaceChildren(
    ...seen.map((j) => { const [c, name] = JSON.parse(j); return el("span", {}, el("span", { class: "line " + c }), name); }));
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
    const [cluster, health, events, catalogue, keys, usage, byModel, history] = await Promise.all([
      get("/admin/v1/cluster"),
      get("/admin/v1/health"),
      get("/admin/v1/events"),
      get("/admin/v1/catalogue"),
      get("/admin/v1/keys"),
      get(today + "&by=day"),
      get(today + "&by=model"),
      get("/admin/v1/history"),
    ]);
    tokenHint(false);
    drawNode(cluster);
    drawMembers(cluster, health);
    drawHeatmap(health, cluster);
    drawHistory(history);
    drawUpstreams(health);
    drawFailovers(events);
    drawCatalogue(catalogue);
    drawKeys(keys, usage);
    drawUsageByModel(byModel);
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
  refresh();
});
