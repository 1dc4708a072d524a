//! The dashboard's editing and per-route charts, driven in headless
//! Chromium through the DevTools protocol (over `--remote-debugging-pipe`,
//! so no port and no WebSocket): the page's own buttons and forms PUT and
//! DELETE routes, upstreams and keys on a real node, and the node's state
//! is read back through the admin API. A refused edit shows the node's
//! answer beside the field it names and changes nothing (the page sent one
//! write, the node's state is as it was); an accepted one is in the node's state when the page
//! says so. Names with markup and quotes are drawn as text. Screenshots go
//! to `$MERIDIAN_DASHBOARD_DIR` (the committed ones in `docs/`), else
//! beside the build.
//!
//! Skipped, saying so, when `chromium` is not on the PATH (`scripts/test`
//! installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod dashboard_cdp;
mod support;

use std::time::Duration;

use dashboard_cdp::{Browser, chromium};
use serde_json::json;
use support::config::{Config, route_to, upstream};
use support::{Mock, chat_body};

const TOKEN: &str = "admin-secret-0001";
/// A route name an attacker would pick: markup, an event handler, quotes.
const HOSTILE: &str = r#"<img src=x onerror="alert(1)">'<script>alert("x")</script>"#;

/// A JavaScript string literal of `s`.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// An admin API read with the token.
async fn admin(node: &support::Node, path: &str) -> support::Answer {
    node.admin_get(path, &[("authorization", &format!("Bearer {TOKEN}"))])
        .await
}

/// Opens the editor of `kind` `name` (a new one for `None`) with the
/// page's own button.
async fn open(b: &mut Browser, kind: &str, name: Option<&str>) {
    let click = match name {
        Some(name) => format!(
            "document.querySelector('button[data-edit=\"{kind}\"][data-name=' + CSS.escape({}) + ']').click()",
            js(name)
        ),
        None => format!("document.querySelector('button[data-new=\"{kind}\"]').click()"),
    };
    b.wait(&format!(
        "document.querySelector('button[data-{}=\"{kind}\"]')",
        if name.is_some() { "edit" } else { "new" }
    ))
    .await;
    b.eval(&click).await;
    b.wait(&format!(
        "!document.getElementById('editor').hidden && document.getElementById('editor').dataset.kind === '{kind}' && document.getElementById('f-{}')",
        match kind {
            "route" => "model",
            "upstream" => "id",
            _ => "name",
        }
    ))
    .await;
}

/// Fills the editor's fields (by their API name) and saves; the outcome
/// the page shows (`accepted` or `refused`).
async fn save(b: &mut Browser, fields: &[(&str, &str)]) -> String {
    let mut script = String::from(
        "(() => { const f = document.getElementById('editor'); delete f.dataset.edit;",
    );
    for (name, value) in fields {
        script.push_str(&format!(
            "document.getElementById('f-{name}').value = {};",
            js(value)
        ));
    }
    script.push_str("f.requestSubmit(); })()");
    b.eval(&script).await;
    b.wait("['accepted', 'refused'].includes(document.getElementById('editor').dataset.edit)")
        .await;
    b.eval("document.getElementById('editor').dataset.edit")
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// What the page shows beside field `name`.
async fn field_error(b: &mut Browser, name: &str) -> String {
    b.eval(&format!(
        "document.querySelector('[data-field-error=\"{name}\"]').textContent"
    ))
    .await
    .as_str()
    .unwrap()
    .to_owned()
}

#[tokio::test]
async fn dashboard_edits_routes_upstreams_and_keys_and_charts_each_route_in_chromium() {
    let Some(chromium) = chromium() else {
        eprintln!(
            "SKIPPED dashboard_edits_routes_upstreams_and_keys_and_charts_each_route_in_chromium: \
             no `chromium` on the PATH (apt-get install chromium; scripts/test installs it)"
        );
        return;
    };
    let mock = Mock::start(&[]).await;
    let backup = Mock::start(&[]).await;
    let node = support::Node::start_with(
        |c: &mut Config| {
            c.admin.token_env = "TEST_ADMIN_TOKEN".to_owned();
            c.upstreams.push(upstream("u", &mock));
            c.routes.push(route_to("fast", "u", "x"));
            c.routes.push(route_to(HOSTILE, "u", "x"));
        },
        &[("TEST_ADMIN_TOKEN", TOKEN)],
    )
    .await;

    // Traffic on both routes, varied, until four history samples have
    // counted some (a route's first sample is only its baseline); during
    // the third the upstream is slower and fails a quarter of the time, so
    // the charts have a shape.
    let mut seen = 0;
    for i in 0..240 {
        let history = admin(&node, "/admin/v1/history").await.json();
        let points = history["routes"]
            .as_array()
            .and_then(|routes| routes.iter().find(|r| r["route"] == "fast"))
            .and_then(|r| r["points"].as_array().cloned())
            .unwrap_or_default();
        if points.len() != seen {
            seen = points.len();
            let behavior = if seen == 2 {
                json!({"first_byte": {"fixed_ms": 60}, "error_rate": 0.25, "error_status": 503})
            } else {
                json!({"first_byte": {"fixed_ms": 2}, "error_rate": 0.0})
            };
            mock.behave(behavior).await;
        }
        if seen >= 4 && points.iter().any(|p| p["rate"].as_f64() > Some(0.0)) {
            break;
        }
        for _ in 0..(1 + i % 4) {
            node.chat(chat_body("fast"), &[]).await;
        }
        node.chat(chat_body(HOSTILE), &[]).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(seen >= 4, "no per-route points after the traffic");

    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::launch(&chromium, profile.path()).await;
    let page = format!("http://{}/admin/#token={TOKEN}", node.admin);
    b.call("Page.navigate", json!({"url": page})).await;
    b.wait("document.body.dataset.loaded === 'true' && document.querySelector('[data-route-history=\"fast\"]')")
        .await;

    // Per-route charts, a line drawn for each route; the hostile name is text.
    b.wait("document.querySelector('svg[data-chart=\"fast rate\"] path')")
        .await;
    let names = b
        .eval("[...document.querySelectorAll('[data-route-history]')].map(e => e.textContent)")
        .await;
    assert_eq!(names, json!([HOSTILE, "fast"]));
    let html = b.eval("document.documentElement.outerHTML").await;
    let html = html.as_str().unwrap();
    assert!(
        html.contains("&lt;img src=x"),
        "the hostile name is not escaped"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('img').length").await,
        json!(0)
    );
    assert_eq!(b.eval("document.scripts.length").await, json!(4));
    b.eval("document.getElementById('route-history').parentElement.scrollIntoView()")
        .await;
    b.screenshot("dashboard-routes.png").await;

    // No [[classes]]: no classes table. With them (the health answer's
    // `classes`), one row each, names as text.
    assert_eq!(
        b.eval("document.getElementById('classes-section').hidden")
            .await,
        json!(true)
    );
    let drawn = b
        .eval(
            r#"(() => { drawClasses({ classes: [{ name: "<b>pro</b>", requests: 1234, success_ratio: 0.9993,
                 p99_ms: 812.0, slo: { success: 0.999, p99_ms: 2000 }, error_budget_left: 0.3 }] });
               const s = document.getElementById('classes-section');
               return [s.hidden, s.querySelector('[data-class]').textContent, s.querySelectorAll('tbody b').length]; })()"#,
        )
        .await;
    assert_eq!(
        drawn,
        json!([false, "<b>pro</b>123499.93 %99.90 %812 ms2.00 s30 %", 0])
    );

    // Writes the page sends, counted (the page calls the global `fetch`).
    b.eval(
        "window.writes = []; const f = window.fetch; \
         window.fetch = (u, o) => { if (o && o.method && o.method !== 'GET') window.writes.push(o.method + ' ' + u); return f(u, o); }",
    )
    .await;

    // A refused edit: the field the node names is marked, and the node's
    // state is as it was (the node checks before it proposes).
    b.wait("document.getElementById('classes-section').hidden")
        .await;
    b.eval("document.getElementById('config').scrollIntoView()")
        .await;
    let route_before = admin(&node, "/admin/v1/routes/fast").await.json();
    open(&mut b, "route", Some("fast")).await;
    let outcome = save(
        &mut b,
        &[("tiers", r#"[[{"upstream": "nope", "model": "x"}]]"#)],
    )
    .await;
    assert_eq!(outcome, "refused");
    let shown = field_error(&mut b, "tiers").await;
    assert!(
        shown.contains("tiers[0][0].upstream") && shown.contains("nope"),
        "{shown}"
    );
    b.screenshot("dashboard-edit-refused.png").await;
    assert_eq!(
        admin(&node, "/admin/v1/routes/fast").await.json(),
        route_before
    );
    assert_eq!(
        b.eval("window.writes").await,
        json!(["PUT /admin/v1/routes/fast"])
    );

    // A field the page cannot even send (not JSON): refused before sending.
    assert_eq!(save(&mut b, &[("tiers", "[[{")]).await, "refused");
    assert!(field_error(&mut b, "tiers").await.starts_with("not JSON"));
    assert_eq!(b.eval("window.writes.length").await, json!(1));

    // Accepted: the node's state changes.
    let outcome = save(
        &mut b,
        &[
            ("tiers", r#"[[{"upstream": "u", "model": "y"}]]"#),
            ("max_attempts", "2"),
        ],
    )
    .await;
    assert_eq!(outcome, "accepted");
    assert_eq!(field_error(&mut b, "tiers").await, "");
    let route = admin(&node, "/admin/v1/routes/fast").await.json();
    assert_eq!(route["tiers"][0][0]["model"], "y", "{route}");
    assert_eq!(route["max_attempts"], 2, "{route}");
    b.wait("document.querySelector('[data-config-route=\"fast\"]').textContent.includes('u/y')")
        .await;
    b.screenshot("dashboard-edit-accepted.png").await;

    // A new upstream, then an edit of it the node refuses.
    open(&mut b, "upstream", None).await;
    let outcome = save(
        &mut b,
        &[
            ("id", "backup"),
            ("base_url", &backup.base_url()),
            ("region", "r2"),
            ("models", "b, b-large"),
        ],
    )
    .await;
    assert_eq!(outcome, "accepted");
    let added = admin(&node, "/admin/v1/upstreams/backup").await.json();
    assert_eq!(added["models"], json!(["b", "b-large"]), "{added}");
    b.wait("document.querySelector('[data-config-upstream=\"backup\"]')")
        .await;
    open(&mut b, "upstream", Some("backup")).await;
    assert_eq!(
        save(&mut b, &[("base_url", "ftp://nowhere")]).await,
        "refused"
    );
    assert!(!field_error(&mut b, "base_url").await.is_empty());
    assert_eq!(
        admin(&node, "/admin/v1/upstreams/backup").await.json(),
        added
    );
    // Fixed, the edit goes through, and what the form does not show (in
    // `more`) is kept as it was.
    let outcome = save(
        &mut b,
        &[("base_url", &backup.base_url()), ("region", "r3")],
    )
    .await;
    assert_eq!(outcome, "accepted");
    let mut expected = added.clone();
    expected["region"] = json!("r3");
    assert_eq!(
        admin(&node, "/admin/v1/upstreams/backup").await.json(),
        expected
    );

    // A key: refused while its rpm is not a number, then accepted; the key
    // itself is never on the page, not even in its field once sent.
    let secret = "sk-ops-dashboard-0000000001";
    open(&mut b, "key", None).await;
    let outcome = save(&mut b, &[("name", "ops"), ("key", secret), ("rpm", "lots")]).await;
    assert_eq!(outcome, "refused");
    assert!(field_error(&mut b, "rpm").await.contains("rpm"));
    assert_eq!(admin(&node, "/admin/v1/keys/ops").await.status, 404);
    assert_eq!(save(&mut b, &[("rpm", "60")]).await, "accepted");
    let key = admin(&node, "/admin/v1/keys/ops").await.json();
    assert_eq!(key["rpm"], 60, "{key}");
    assert_eq!(
        b.eval("document.getElementById('f-key').value").await,
        json!("")
    );
    b.wait("document.querySelector('[data-config-key=\"ops\"]')")
        .await;
    let html = b.eval("document.documentElement.outerHTML").await;
    assert!(
        !html.as_str().unwrap().contains(secret),
        "the key is on the page"
    );
    assert!(
        !html.as_str().unwrap().contains(TOKEN),
        "the token is on the page"
    );
    // The key works on the data plane.
    let answer = node
        .chat(
            chat_body("fast"),
            &[("authorization", &format!("Bearer {secret}"))],
        )
        .await;
    assert_eq!(answer.status, 200);

    // Deletes ask first; the node's refusal (the last key) is shown.
    let delete = |kind: &str, name: &str| {
        format!(
            "document.querySelector('button[data-delete=\"{kind}\"][data-name=' + CSS.escape({}) + ']').click()",
            js(name)
        )
    };
    b.eval(&delete("route", HOSTILE)).await;
    b.wait("!document.getElementById('confirm').hidden").await;
    let asked = b
        .eval("document.getElementById('confirm-text').textContent")
        .await;
    assert!(asked.as_str().unwrap().contains(HOSTILE), "{asked}");
    assert!(
        admin(&node, &format!("/admin/v1/routes/{}", urlencode(HOSTILE)))
            .await
            .status
            == 200,
        "deleted before the confirmation"
    );
    b.eval("document.getElementById('confirm-yes').click()")
        .await;
    b.wait("document.getElementById('confirm').dataset.state === 'deleted'")
        .await;
    assert_eq!(
        admin(&node, &format!("/admin/v1/routes/{}", urlencode(HOSTILE)))
            .await
            .status,
        404
    );
    b.eval(&delete("key", "ops")).await;
    b.wait("!document.getElementById('confirm').hidden").await;
    b.eval("document.getElementById('confirm-yes').click()")
        .await;
    b.wait("document.getElementById('confirm').dataset.state === 'refused'")
        .await;
    assert_eq!(admin(&node, "/admin/v1/keys/ops").await.status, 200);
}

/// Percent-encodes everything but unreserved characters.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}
