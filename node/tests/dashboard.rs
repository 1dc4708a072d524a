//! The dashboard at `/admin/`, loaded in headless Chromium from a real
//! three-node cluster after real traffic and a failover: the page must show
//! every member, every upstream, every region of the heat map, the
//! failover, and a key's limits, balance and usage, drawn by its own script
//! from the admin API, and the last minutes of every upstream as charts
//! (SVG lines drawn by the page from `/admin/v1/history`). It also leaves a
//! screenshot (`target/dashboard.png`, or `$MERIDIAN_DASHBOARD_PNG`).
//!
//! Skipped, saying so, when `chromium` is not on the PATH (`scripts/test`
//! installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use http::Method;
use serde_json::json;
use support::cluster::{Cluster, Options, UPSTREAM, poll};
use support::config::{Config, route_to, upstream};
use support::{Mock, chat_body, send};

/// `chromium` on the PATH, if any.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// Where the screenshot goes: `target/dashboard.png` beside the build.
fn screenshot_path() -> PathBuf {
    if let Some(path) = std::env::var_os("MERIDIAN_DASHBOARD_PNG") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/dashboard-HASH → target/
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().join("dashboard.png")
}

/// Runs headless Chromium on `url` with `args`, letting the page's script
/// run for a few seconds of virtual time first; returns its stdout.
async fn headless(chromium: &Path, profile: &Path, url: &str, args: &[&str]) -> String {
    let run = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("chromium did not finish in 90 s")
        .expect("chromium could not start");
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn dashboard_shows_members_upstreams_and_failovers_in_chromium() {
    let Some(chromium) = chromium() else {
        eprintln!(
            "SKIPPED dashboard_shows_members_upstreams_and_failovers_in_chromium: no `chromium` on the PATH \
             (apt-get install chromium; scripts/test installs it)"
        );
        return;
    };
    let cluster = Cluster::start(3, Options::fast()).await;
    let backup = Mock::start(&[]).await;
    let put = cluster
        .put(
            1,
            "/admin/v1/upstreams/backup",
            &json!({"base_url": backup.base_url(), "region": "r2", "models": ["b", "b-large"]}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    cluster
        .put_route(
            1,
            "dash",
            &json!({"tiers": [[{"upstream": UPSTREAM, "model": "m"}], [{"upstream": "backup", "model": "b"}]]}),
        )
        .await;

    // Traffic through every node, so every region reports both upstreams.
    let chat = |api: String, model: &'static str| async move {
        let (status, headers, _) = send(
            Method::POST,
            &format!("http://{api}/v1/chat/completions"),
            &[],
            Some(chat_body(model).to_string()),
        )
        .await;
        (status, headers)
    };
    for node in &cluster.nodes {
        // Until the route is applied there.
        let served = poll(Duration::from_secs(10), Duration::from_millis(20), || {
            let api = node.api.clone();
            async move { (chat(api, "dash").await.0 == 200).then_some(()) }
        })
        .await;
        assert!(served.is_some(), "node {} never served dash", node.id);
        for _ in 0..10 {
            assert_eq!(chat(node.api.clone(), "dash").await.0, 200);
        }
    }
    // The page is loaded from the leader, which knows every member's lag.
    let leader = cluster
        .leader_within(Duration::from_secs(10))
        .await
        .expect("no leader");
    let shown = cluster.node(leader);
    // The first tier breaks: the leader's node fails over to the backup.
    cluster
        .mock
        .behave(json!({"error_rate": 1.0, "error_status": 503}))
        .await;
    for _ in 0..3 {
        let (status, headers) = chat(shown.api.clone(), "dash").await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-meridian-upstream"], "backup");
    }
    // Reports go out every second; wait until its board has every
    // member's, so the heat map has all three regions.
    let admin = shown.admin.clone();
    let reported = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let admin = admin.clone();
        async move {
            let (_, _, body) = send(
                Method::GET,
                &format!("http://{admin}/admin/v1/health"),
                &[],
                None,
            )
            .await;
            let v: proto::api::admin::HealthAnswer = serde_json::from_slice(&body).ok()?;
            let upstream = v.upstreams.iter().find(|u| u.id == UPSTREAM)?;
            (v.reports.len() == 3 && upstream.shared.regions.len() == 3).then_some(())
        }
    })
    .await;
    assert!(
        reported.is_some(),
        "node {leader} never had every member's report"
    );

    // A key with limits and a balance, and usage reported for it (after
    // the traffic above: a key closes the open data plane).
    let put = cluster
        .put(
            leader,
            "/admin/v1/keys/acme",
            &json!({"key": "sk-acme-dashboard-0001", "rpm": 600, "credits_usd": 25.0}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let day = support::tenancy::today();
    let usage = vec![(
        support::tenancy::cell("acme", day, "dash", UPSTREAM),
        support::tenancy::counters(12, 4800, 1200, 1_250_000_000),
    )];
    cluster
        .report_as(2, support::tenancy::report(4_000_000_000_000, 1, usage))
        .await;

    // The history samples every 10 s: wait for one taken after the traffic.
    let sampled = poll(Duration::from_secs(30), Duration::from_millis(500), || {
        let admin = admin.clone();
        async move {
            let (_, _, body) = send(
                Method::GET,
                &format!("http://{admin}/admin/v1/history"),
                &[],
                None,
            )
            .await;
            let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            let series = v["series"].as_array()?;
            series
                .iter()
                .any(|s| {
                    s["upstream"] == UPSTREAM
                        && s["scope"] == "region"
                        && s["points"]
                            .as_array()
                            .and_then(|p| p.last())
                            .is_some_and(|p| p["rate"].as_f64() > Some(0.0))
                })
                .then_some(())
        }
    })
    .await;
    assert!(sampled.is_some(), "no history sample after the traffic");

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{admin}/admin/");
    let dom = headless(&chromium, profile.path(), &url, &["--dump-dom"]).await;
    for upstream in [UPSTREAM, "backup"] {
        assert!(
            dom.contains(&format!(r#"data-history="{upstream}""#)),
            "no history for {upstream}:\n{dom}"
        );
    }
    assert!(
        dom.contains(&format!(r#"data-chart="{UPSTREAM} rate""#)) && dom.contains("<path d=\"M"),
        "the history charts drew no line:\n{dom}"
    );
    assert!(
        dom.contains(r#"data-loaded="true""#),
        "the page never drew the admin API's answers:\n{dom}"
    );
    for node in &cluster.nodes {
        assert!(
            dom.contains(&format!(r#"data-member="{}""#, node.id)),
            "member {} not on the page:\n{dom}",
            node.id
        );
        assert!(
            dom.contains(&node.admin),
            "member {}'s address not on the page",
            node.id
        );
    }
    for upstream in [UPSTREAM, "backup"] {
        assert!(
            dom.contains(&format!(r#"data-upstream="{upstream}""#)),
            "upstream {upstream} not on the page:\n{dom}"
        );
    }
    for region in ["r1", "r2", "r3"] {
        assert!(
            dom.contains(&format!(r#"data-region="{region}""#)),
            "region {region} not in the heat map:\n{dom}"
        );
    }
    for model in ["backup/b", "backup/b-large"] {
        assert!(
            dom.contains(&format!(r#"data-catalogue="{model}""#)),
            "catalogue model {model} not on the page:\n{dom}"
        );
    }
    assert!(
        dom.contains(r#"data-key="acme""#) && dom.contains(r#"data-usage-model="dash""#),
        "the key or its usage is not on the page:\n{dom}"
    );
    assert!(dom.contains("$23.75"), "the balance is not on the page");
    assert!(dom.contains("$1.25"), "today's cost is not on the page");
    assert!(dom.contains("leader"), "no leader on the page");
    assert!(
        dom.contains("data-failover="),
        "no failover on the page:\n{dom}"
    );
    assert!(dom.contains("HTTP 503"), "the failover's reason is missing");
    assert!(
        !dom.contains(&backup.base_url()),
        "the page shows an upstream's URL"
    );

    let png = screenshot_path();
    let _ = std::fs::remove_file(&png);
    headless(
        &chromium,
        profile.path(),
        &url,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1400,900",
        ],
    )
    .await;
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {png:?}: {e}"));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 10_000,
        "a blank screenshot? {} bytes",
        bytes.len()
    );
    eprintln!("dashboard screenshot: {}", png.display());
}

/// The page and its assets are served without a token, with a policy that
/// allows nothing from elsewhere; the data behind it needs the token.
#[tokio::test]
async fn dashboard_assets_are_embedded_and_its_data_needs_the_token() {
    let mock = Mock::start(&[]).await;
    let node = support::Node::start_with(
        |c: &mut Config| {
            c.admin.token_env = "TEST_ADMIN_TOKEN".to_owned();
            c.upstreams.push(upstream("u", &mock));
            c.routes.push(route_to("m", "u", "x"));
        },
        &[("TEST_ADMIN_TOKEN", "admin-secret-0001")],
    )
    .await;
    for (path, kind) in [
        ("/admin/", "text/html"),
        ("/admin", "text/html"),
        ("/admin/app.js", "text/javascript"),
        ("/admin/tables.js", "text/javascript"),
        ("/admin/charts.js", "text/javascript"),
        ("/admin/edit.js", "text/javascript"),
        ("/admin/style.css", "text/css"),
    ] {
        let answer = node.admin_get(path, &[]).await;
        assert_eq!(answer.status, 200, "{path}");
        assert!(answer.header("content-type").starts_with(kind), "{path}");
        let csp = answer.header("content-security-policy");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        // The SVG namespace is a name, not an address anything is loaded from.
        let text = String::from_utf8_lossy(&answer.body).replace("http://www.w3.org/2000/svg", "");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path} loads from elsewhere"
        );
    }
    for path in ["/admin/v1/events", "/admin/v1/health", "/admin/v1/cluster"] {
        assert_eq!(node.admin_get(path, &[]).await.status, 401, "{path}");
        let answer = node
            .admin_get(path, &[("authorization", "Bearer admin-secret-0001")])
            .await;
        assert_eq!(answer.status, 200, "{path}");
    }
    // Scrapers need no token.
    assert_eq!(node.admin_get("/metrics", &[]).await.status, 200);
}

/// A wall display: the token comes in the URL fragment, the page uses it
/// and takes it off the address bar; without one, on a node that requires
/// it, the token field says so (it said "none on loopback" everywhere).
#[tokio::test]
async fn dashboard_takes_the_token_from_the_fragment_and_says_when_one_is_required() {
    let Some(chromium) = chromium() else {
        eprintln!(
            "SKIPPED dashboard_takes_the_token_from_the_fragment_and_says_when_one_is_required: \
             no `chromium` on the PATH (apt-get install chromium; scripts/test installs it)"
        );
        return;
    };
    let mock = Mock::start(&[]).await;
    let node = support::Node::start_with(
        |c: &mut Config| {
            c.admin.token_env = "TEST_ADMIN_TOKEN".to_owned();
            c.upstreams.push(upstream("u", &mock));
            c.routes.push(route_to("m", "u", "x"));
        },
        &[("TEST_ADMIN_TOKEN", "admin-secret-0001")],
    )
    .await;
    let page = format!("http://{}/admin/", node.admin);

    let profile = tempfile::tempdir().unwrap();
    let url = format!("{page}#token=admin-secret-0001");
    let dom = headless(&chromium, profile.path(), &url, &["--dump-dom"]).await;
    assert!(
        dom.contains(r#"data-loaded="true""#) && dom.contains(r#"data-token="accepted""#),
        "the page did not use the fragment's token:\n{dom}"
    );
    assert!(dom.contains(r#"data-token-from="fragment""#), "{dom}");
    assert!(
        !dom.contains("admin-secret-0001"),
        "the token is left on the page:\n{dom}"
    );

    let profile = tempfile::tempdir().unwrap();
    let dom = headless(&chromium, profile.path(), &page, &["--dump-dom"]).await;
    assert!(
        dom.contains(r#"data-token="required""#) && dom.contains("required by this node"),
        "the page does not say a token is required:\n{dom}"
    );
    assert!(!dom.contains("none on loopback"), "{dom}");
    assert!(!dom.contains(r#"data-loaded="true""#), "{dom}");
}
