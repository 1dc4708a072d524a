// Meridian dashboard: the last 15 minutes as SVG lines, per upstream
// (this node's window and the health board's regions) and per route (this
// node's answers), from `/admin/v1/history`.
"use strict";

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

// One row per route: its requests per second, the share of them that got
// a 5xx or 429 (from an upstream or from Meridian), and the p99 time to an
// answer, as this node answered them (each point is what its counters
// counted in the ten seconds before it).
function drawRouteHistory(history) {
  const box = document.getElementById("route-history");
  const routes = history.routes || [];
  let now = 0;
  for (const r of routes) for (const p of r.points) now = Math.max(now, p.at_unix_ms);
  const span = history.interval_ms * history.points;
  const cells = [el("div", {}), el("div", { class: "chart-head" }, "requests / s"),
    el("div", { class: "chart-head" }, "error share (5xx, 429)"), el("div", { class: "chart-head" }, "p99 to answer")];
  for (const r of routes) {
    const lines = [{ points: r.points, cls: "s-route" }];
    cells.push(el("div", { class: "upstream", "data-route-history": r.route }, r.route),
      chart(lines, (p) => p.rate, now, span, (v) => v.toFixed(v < 10 ? 2 : 0), r.route + " rate"),
      chart(lines, (p) => p.error_share, now, span, (v) => (v * 100).toFixed(1) + " %", r.route + " errors"),
      chart(lines, (p) => p.p99_ms, now, span, ms, r.route + " p99"));
  }
  if (routes.length === 0) {
    cells.push(el("div", { class: "empty" }, "no samples yet (a route's first point comes 10 s after it is first seen)"));
  }
  box.replaceChildren(...cells);
}
