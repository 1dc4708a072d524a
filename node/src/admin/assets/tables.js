// Meridian dashboard: the tables, each drawn whole from one admin API
// answer on every refresh, every value as text (`el` in app.js).
"use strict";

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

function percent(v, digits) {
  return typeof v === "number" && isFinite(v) ? (v * 100).toFixed(digits) + " %" : "—";
}

// The classes' SLA (`classes` in /admin/v1/health, when the node has
// [[classes]]): drawn only when there are some, the section hidden else.
function drawClasses(health) {
  const classes = Array.isArray(health.classes) ? health.classes : [];
  document.getElementById("classes-section").hidden = classes.length === 0;
  const rows = classes.map((c) => {
    const slo = c.slo || null;
    const missed = slo && typeof c.success_ratio === "number" && c.success_ratio < slo.success;
    const slow = slo && slo.p99_ms != null && typeof c.p99_ms === "number" && c.p99_ms > slo.p99_ms;
    const budget = typeof c.error_budget_left === "number" ? c.error_budget_left : null;
    return el("tr", { "data-class": c.name },
      el("td", {}, c.name),
      el("td", { class: "num" }, c.requests ?? 0),
      el("td", { class: "num" + (missed ? " bad" : "") }, percent(c.success_ratio, 2)),
      el("td", { class: "num" }, slo ? percent(slo.success, 2) : "—"),
      el("td", { class: "num" + (slow ? " bad" : "") }, typeof c.p99_ms === "number" ? ms(c.p99_ms) : "—"),
      el("td", { class: "num" }, slo && slo.p99_ms != null ? ms(slo.p99_ms) : "—"),
      el("td", { class: "num" + (budget !== null && budget <= 0 ? " bad" : "") },
        budget === null ? "—" : percent(budget, 0)),
    );
  });
  fill("#classes", rows, 7, "no classes");
}
