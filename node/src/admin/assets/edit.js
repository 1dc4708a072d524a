// Meridian dashboard: editing routes, upstreams and keys through the admin
// API (PUT and DELETE /admin/v1/{routes,upstreams,keys}/NAME) with the
// admin token. The node checks every change before proposing it: a refused
// one answers 4xx with the field it names (`error.param`), shown beside
// that field, and nothing is changed. A key is write-only: the node never
// gives it back, so its field is always empty and is cleared once sent.
"use strict";

// What each form holds: the fields by their name in the API's body (the
// label shows that name, so an error naming it is read at once).
const KINDS = {
  route: {
    path: "/admin/v1/routes/", name: "model",
    fields: [
      { name: "model", type: "text", help: "the model name clients send" },
      { name: "tiers", type: "json", rows: 5,
        help: "JSON: a list of tiers, each a list of {\"upstream\", \"model\", \"input_per_mtok\", \"output_per_mtok\"}" },
      { name: "max_attempts", type: "int", help: "attempts across all tiers" },
      { name: "first_byte_timeout_ms", type: "int" },
      { name: "request_timeout_ms", type: "int" },
      { name: "error_threshold", type: "number", help: "0 to 1" },
      { name: "hedge", type: "json", rows: 1, help: "JSON, optional: {\"delay_ms\": …}" },
    ],
  },
  upstream: {
    path: "/admin/v1/upstreams/", name: "id",
    fields: [
      { name: "id", type: "text" },
      { name: "base_url", type: "text" },
      { name: "region", type: "text" },
      { name: "kind", type: "text", help: "openai (default), anthropic, azure…" },
      { name: "api_key_env", type: "text", help: "the environment variable holding the provider key (never the key)" },
      { name: "models", type: "list", help: "comma-separated" },
      { name: "discover_models", type: "bool" },
      { name: "max_concurrency", type: "int" },
      { name: "rpm", type: "int" },
      { name: "more", type: "rest", rows: 2,
        help: "JSON object, the other settings kept as they are (auth, prices, aliases, http2…)" },
    ],
  },
  key: {
    path: "/admin/v1/keys/", name: "name",
    fields: [
      { name: "name", type: "text" },
      { name: "key", type: "secret",
        help: "the key itself, write-only: never shown; type it again to change this key's limits" },
      { name: "models", type: "list", help: "comma-separated; empty for all" },
      { name: "rpm", type: "int" },
      { name: "tpm", type: "int" },
      { name: "credits_usd", type: "number", help: "opening credits, in dollars" },
      { name: "class", type: "text" },
    ],
  },
};

let editing = null; // { kind, name } (name null for a new one)
let deleting = null; // { kind, name }

// A write with the token; the answer's JSON, if any.
async function send(method, path, body) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method, headers, cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  try { json = await res.json(); } catch (_) { /* no body */ }
  return { ok: res.ok, status: res.status, json };
}

function itemPath(kind, name) {
  return KINDS[kind].path + encodeURIComponent(name);
}

function button(text, attrs) {
  return el("button", Object.assign({ type: "button" }, attrs), text);
}

function actions(kind, name) {
  return el("td", { class: "actions" },
    button("Edit", { "data-edit": kind, "data-name": name }),
    button("Delete", { "data-delete": kind, "data-name": name, class: "danger" }));
}

// The lists beside the editor, from this node's applied state.
function drawConfig(routes, health, keys) {
  const tiers = (r) => r.tiers.map((t) => t.map((x) => x.upstream + "/" + x.model).join(" | ")).join(" → ");
  fill("#config-routes", [...routes].sort((a, b) => a.model < b.model ? -1 : 1).map((r) =>
    el("tr", { "data-config-route": r.model }, el("td", {}, r.model), el("td", {}, tiers(r)),
      actions("route", r.model))), 3, "no routes");
  fill("#config-upstreams", health.upstreams.map((u) =>
    el("tr", { "data-config-upstream": u.id }, el("td", {}, u.id), el("td", {}, u.region),
      actions("upstream", u.id))), 3, "no upstreams");
  fill("#config-keys", keys.map((k) =>
    el("tr", { "data-config-key": k.name }, el("td", {}, k.name), el("td", {}, k.class ?? "default"),
      actions("key", k.name))), 3, "no keys");
}

function input(name) {
  return document.getElementById("f-" + name);
}

// A field's value as the form shows it.
function shown(field, value) {
  if (value === undefined || value === null) return "";
  if (field.type === "list") return value.join(", ");
  if (field.type === "json") {
    if (field.name === "tiers" && Array.isArray(value)) {
      return "[\n" + value.map((t) => "  " + JSON.stringify(t)).join(",\n") + "\n]";
    }
    return JSON.stringify(value);
  }
  return String(value);
}

function buildFields(spec, item) {
  const known = new Set(spec.fields.map((f) => f.name));
  const rows = spec.fields.map((f) => {
    const id = "f-" + f.name;
    let control;
    if (f.type === "json" || f.type === "rest") {
      control = el("textarea", { id, name: f.name, rows: f.rows || 3, spellcheck: "false" });
    } else {
      control = el("input", {
        id, name: f.name, spellcheck: "false",
        type: f.type === "bool" ? "checkbox" : f.type === "secret" ? "password" : "text",
        inputmode: f.type === "int" ? "numeric" : f.type === "number" ? "decimal" : null,
        autocomplete: f.type === "secret" ? "new-password" : "off",
      });
    }
    // Values go into properties, never into markup.
    if (item) {
      if (f.type === "bool") control.checked = !!item[f.name];
      else if (f.type === "rest") {
        const rest = Object.fromEntries(Object.entries(item).filter(([k]) => !known.has(k)));
        control.value = Object.keys(rest).length ? JSON.stringify(rest, null, 1) : "";
      } else if (f.type !== "secret") control.value = shown(f, item[f.name]);
    }
    if (item && f.name === spec.name) control.readOnly = true;
    return el("div", { class: "field", "data-field": f.name },
      el("label", { for: id }, el("code", {}, f.name), f.help ? " " + f.help : ""),
      control,
      el("span", { class: "field-error", "data-field-error": f.name }));
  });
  document.getElementById("editor-fields").replaceChildren(...rows);
}

function result(text, state) {
  const form = document.getElementById("editor");
  document.getElementById("editor-result").textContent = text;
  if (state) form.dataset.edit = state; else delete form.dataset.edit;
}

function clearErrors() {
  for (const e of document.querySelectorAll("#editor .field-error")) e.textContent = "";
  for (const f of document.querySelectorAll("#editor .field.invalid")) f.classList.remove("invalid");
}

// The form field an error's `param` names: `route.tiers[0][1].model` is
// `tiers`, `key.class` is `class`; an upstream's setting that has no field
// of its own is in `more`.
function fieldFor(spec, param) {
  if (!param) return null;
  const names = new Set(spec.fields.map((f) => f.name));
  const parts = String(param).split(/[.[\]]+/).filter((p) => p);
  if (parts.length > 1 && KINDS[parts[0]] === spec) parts.shift();
  const hit = parts.find((p) => names.has(p));
  if (hit) return hit;
  return names.has("more") ? "more" : null;
}

function fieldError(name, text) {
  const span = document.querySelector("#editor [data-field-error=\"" + CSS.escape(name) + "\"]");
  if (!span) return false;
  span.textContent = text;
  span.closest(".field").classList.add("invalid");
  return true;
}

async function openEditor(kind, name) {
  const spec = KINDS[kind];
  const form = document.getElementById("editor");
  let item = null;
  if (name !== null) {
    const res = await send("GET", itemPath(kind, name) + "?stale=true");
    if (!res.ok) { say(kind + " " + name + ": " + ((res.json && res.json.error && res.json.error.message) || res.status), true); return; }
    item = res.json;
  }
  editing = { kind, name };
  document.getElementById("editor-title").textContent = name === null ? "New " + kind : "Edit " + kind + " " + name;
  buildFields(spec, item);
  result("", null);
  form.dataset.kind = kind;
  form.hidden = false;
  form.scrollIntoView({ block: "nearest" });
}

// The body from the form; fields left empty are left out (the node's
// default), and a field that is not JSON is refused here, sending nothing.
function collect(spec) {
  const body = {};
  const bad = [];
  for (const f of spec.fields) {
    if (f.name === spec.name) continue;
    const control = input(f.name);
    if (f.type === "bool") { body[f.name] = control.checked; continue; }
    const raw = control.value.trim();
    if (raw === "") continue;
    if (f.type === "int" || f.type === "number") {
      // Not a number: sent as it is, for the node to name the field.
      body[f.name] = /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(raw) ? Number(raw) : raw;
    } else if (f.type === "list") {
      body[f.name] = raw.split(",").map((s) => s.trim()).filter((s) => s);
    } else if (f.type === "json" || f.type === "rest") {
      let v;
      try { v = JSON.parse(raw); } catch (e) { bad.push([f.name, "not JSON: " + e.message]); continue; }
      if (f.type === "json") body[f.name] = v;
      else if (v && typeof v === "object" && !Array.isArray(v)) Object.assign(body, v);
      else bad.push([f.name, "must be a JSON object"]);
    } else {
      body[f.name] = raw;
    }
  }
  return { body, bad };
}

async function save(ev) {
  ev.preventDefault();
  if (!editing) return;
  const spec = KINDS[editing.kind];
  clearErrors();
  const name = editing.name ?? input(spec.name).value.trim();
  if (!name) {
    fieldError(spec.name, "needs a name");
    result("not sent: the marked field is empty", "refused");
    return;
  }
  const { body, bad } = collect(spec);
  if (bad.length) {
    for (const [field, text] of bad) fieldError(field, text);
    result("not sent: fix the marked field", "refused");
    return;
  }
  result("saving…", "pending");
  let res;
  try { res = await send("PUT", itemPath(editing.kind, name), body); } catch (e) {
    result("not sent: " + (e.message || e), "refused");
    return;
  }
  if (res.ok) {
    for (const f of spec.fields) if (f.type === "secret") input(f.name).value = "";
    const ack = res.json || {};
    result(ack.changed === false ? "saved: nothing to change"
      : "saved: applied" + (ack.applied_index != null ? " at index " + ack.applied_index : ""), "accepted");
    editing = { kind: editing.kind, name };
    document.getElementById("editor-title").textContent = "Edit " + editing.kind + " " + name;
    input(spec.name).readOnly = true;
    refresh();
    return;
  }
  const err = (res.json && res.json.error) || {};
  const param = err.param || null;
  let text = err.message || res.status + " refused";
  if (param && !text.startsWith(param)) text = param + ": " + text;
  const field = fieldFor(spec, param);
  const placed = field && fieldError(field, text);
  result("refused by the node (" + res.status + "): nothing was changed" + (placed ? "" : ": " + text), "refused");
}

function askDelete(kind, name) {
  deleting = { kind, name };
  const box = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent =
    "Delete " + kind + " “" + name + "”? It is removed from every node at once.";
  document.getElementById("confirm-yes").textContent = "Delete " + kind;
  document.getElementById("confirm-error").textContent = "";
  box.dataset.kind = kind;
  box.hidden = false;
}

async function confirmDelete() {
  if (!deleting) return;
  const { kind, name } = deleting;
  const box = document.getElementById("confirm");
  const res = await send("DELETE", itemPath(kind, name));
  if (!res.ok) {
    const err = (res.json && res.json.error) || {};
    document.getElementById("confirm-error").textContent =
      "refused by the node (" + res.status + "): " + (err.message || "");
    box.dataset.state = "refused";
    return;
  }
  deleting = null;
  box.hidden = true;
  box.dataset.state = "deleted";
  if (editing && editing.kind === kind && editing.name === name) closeEditor();
  refresh();
}

function closeEditor() {
  editing = null;
  document.getElementById("editor").hidden = true;
  document.getElementById("editor-fields").replaceChildren();
}

function setupEditor() {
  document.getElementById("config").addEventListener("click", (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    if (b.dataset.new) openEditor(b.dataset.new, null);
    else if (b.dataset.edit) openEditor(b.dataset.edit, b.dataset.name);
    else if (b.dataset.delete) askDelete(b.dataset.delete, b.dataset.name);
  });
  document.getElementById("editor").addEventListener("submit", save);
  document.getElementById("editor-cancel").addEventListener("click", closeEditor);
  document.getElementById("confirm-yes").addEventListener("click", confirmDelete);
  document.getElementById("confirm-no").addEventListener("click", () => {
    deleting = null;
    document.getElementById("confirm").hidden = true;
  });
}
