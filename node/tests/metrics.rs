//! What an operator's tools read from a real node: `/metrics` after real
//! traffic (answers, a failover, an opened circuit, hedges), recent
//! failovers at `/admin/v1/events`, `/readyz` before the cluster's
//! configuration is applied, and JSON logs carrying the request id.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use proto::config::HedgeConfig;
use serde_json::{Value, json};
use support::cluster::{free_udp_port, poll, write_certs};
use support::config::{Config, key, route_to, tiers, upstream};
use support::{Mock, Node, chat_body, send};

/// One scrape: series (`name{labels}`) to value.
struct Scrape {
    text: String,
    series: BTreeMap<String, f64>,
}

impl Scrape {
    fn get(&self, series: &str) -> Option<f64> {
        self.series.get(series).copied()
    }

    fn value(&self, series: &str) -> f64 {
        self.get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{}", self.text))
    }
}

async fn scrape(admin: &str) -> Scrape {
    let (status, headers, body) =
        send(Method::GET, &format!("http://{admin}/metrics"), &[], None).await;
    assert_eq!(status, StatusCode::OK);
    let content_type = headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.ends_with("# EOF\n"), "not a whole exposition:\n{text}");
    let mut series = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        assert!(
            series.insert(name.to_owned(), value).is_none(),
            "{name} twice"
        );
    }
    Scrape { text, series }
}

const CLIENT_KEY: &str = "sk-client-9f2c1d";
const PROVIDER_KEY: &str = "sk-provider-77aa01";

#[tokio::test]
async fn metrics_count_answers_failovers_circuits_and_hedges() {
    let (a, b, c) = (
        Mock::start(&[]).await,
        Mock::start(&[]).await,
        Mock::start(&[]).await,
    );
    c.behave(json!({
        "first_byte": {"fixed_ms": 2},
        "tail_rate": 0.4,
        "tail_first_byte": {"fixed_ms": 300},
    }))
    .await;
    let node = Node::start_with(
        |config: &mut Config| {
            config.health.min_samples = 5;
            config.keys.push(key("holder-name-x", "TEST_CLIENT_KEY"));
            let mut keyed = upstream("b", &b);
            keyed.api_key_env = Some("TEST_PROVIDER_KEY".to_owned());
            config.upstreams = vec![upstream("a", &a), keyed, upstream("c", &c)];
            config.routes.push(tiers("m", &[("a", "x"), ("b", "y")]));
            let mut h = route_to("h", "c", "z");
            h.hedge = Some(HedgeConfig {
                quantile: 0.5,
                budget: 1.0,
                ..HedgeConfig::default()
            });
            config.routes.push(h);
        },
        &[
            ("TEST_CLIENT_KEY", CLIENT_KEY),
            ("TEST_PROVIDER_KEY", PROVIDER_KEY),
        ],
    )
    .await;
    let auth = format!("Bearer {CLIENT_KEY}");
    let auth = [("authorization", auth.as_str())];

    // Healthy: tier 0 answers.
    for _ in 0..3 {
        let answer = node.chat(chat_body("m"), &auth).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-meridian-upstream"), "a");
    }
    // `a` breaks: every request fails over to `b` until `a` is avoided.
    a.behave(json!({"error_rate": 1.0, "error_status": 500}))
        .await;
    for _ in 0..8 {
        let answer = node.chat(chat_body("m"), &auth).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-meridian-upstream"), "b");
    }
    // Answered by the node itself, before any route.
    assert_eq!(node.chat(chat_body("nope"), &auth).await.status, 404);
    assert_eq!(node.chat(chat_body("m"), &[]).await.status, 401);
    // Hedged route: a slow tail gets a second attempt.
    for _ in 0..40 {
        assert_eq!(node.chat(chat_body("h"), &auth).await.status, 200);
    }

    let m = scrape(&node.admin).await;
    assert_eq!(
        m.value(r#"meridian_requests_total{route="m",upstream="a",status="200"}"#),
        3.0
    );
    assert_eq!(
        m.value(r#"meridian_requests_total{route="m",upstream="b",status="200"}"#),
        8.0
    );
    assert_eq!(
        m.value(r#"meridian_requests_total{route="",upstream="",status="404"}"#),
        1.0
    );
    assert_eq!(
        m.value(r#"meridian_requests_total{route="",upstream="",status="401"}"#),
        1.0
    );
    assert_eq!(
        m.value(r#"meridian_request_duration_seconds_count{route="m"}"#),
        11.0
    );
    assert_eq!(
        m.value(r#"meridian_request_duration_seconds_bucket{le="+Inf",route="m"}"#),
        11.0
    );
    let failovers = m.value(r#"meridian_failovers_total{route="m",upstream="a"}"#);
    assert!((1.0..=8.0).contains(&failovers), "{failovers}");
    // Every failed attempt at `a` was followed by one at `b`.
    assert_eq!(
        m.value(r#"meridian_upstream_attempts_total{upstream="a",outcome="error"}"#),
        failovers
    );
    assert_eq!(
        m.value(r#"meridian_upstream_attempts_total{upstream="a",outcome="success"}"#),
        3.0
    );
    assert_eq!(
        m.value(r#"meridian_upstream_ttfb_seconds_count{upstream="b"}"#),
        8.0
    );
    assert_eq!(
        m.value(r#"meridian_failovers_total{route="m",upstream="b"}"#),
        0.0
    );
    let sent = m.value(r#"meridian_hedges_sent_total{route="h"}"#);
    let won = m.value(r#"meridian_hedges_won_total{route="h"}"#);
    assert!(
        sent >= 1.0 && won >= 1.0 && won <= sent,
        "sent {sent}, won {won}"
    );
    assert_eq!(
        m.value(r#"meridian_requests_total{route="h",upstream="c",status="200"}"#),
        40.0
    );
    assert_eq!(m.value("meridian_requests_in_flight"), 0.0);
    assert_eq!(m.value(r#"meridian_upstream_in_flight{upstream="b"}"#), 0.0);
    assert_eq!(m.value(r#"meridian_upstream_usable{upstream="b"}"#), 1.0);

    // The node's own state.
    assert_eq!(m.value("meridian_ready"), 1.0);
    assert_eq!(m.value("meridian_config_applied"), 1.0);
    assert_eq!(m.value(r#"meridian_raft_role{role="leader"}"#), 1.0);
    assert_eq!(m.value(r#"meridian_raft_role{role="follower"}"#), 0.0);
    assert_eq!(m.value("meridian_raft_leader"), 1.0);
    assert!(m.value("meridian_raft_term") >= 1.0);
    assert!(m.value("meridian_raft_applied_index") >= 1.0);
    assert!(m.value("meridian_raft_last_log_index") >= m.value("meridian_raft_applied_index"));
    assert_eq!(
        m.value(r#"meridian_raft_member{member="1",role="voter"}"#),
        1.0
    );
    assert_eq!(m.value(r#"meridian_raft_replication_lag{member="1"}"#), 0.0);

    // Nothing secret: not a key, not a URL. A key holder's name is only
    // the `key` label of the per-key series (`meridian_key_*`: keys are
    // configured, so their number is bounded).
    for secret in [CLIENT_KEY, PROVIDER_KEY, "127.0.0.1"] {
        assert!(!m.text.contains(secret), "/metrics shows {secret}");
    }
    for line in m.text.lines().filter(|l| l.contains("holder-name-x")) {
        assert!(
            line.starts_with("meridian_key_") && line.contains("key=\"holder-name-x\""),
            "{line}"
        );
    }

    // Five failures in a row opened `a`'s circuit (the recorder sees them
    // within its 100 ms tick), unless its error rate kept it from being
    // tried five times: then it is still closed and had no transition.
    let opened = poll(
        Duration::from_secs(3),
        Duration::from_millis(50),
        || async {
            let m = scrape(&node.admin).await;
            let open = m.value(r#"meridian_upstream_circuit{upstream="a",state="open"}"#)
                + m.value(r#"meridian_upstream_circuit{upstream="a",state="half_open"}"#);
            (open == 1.0).then_some(m)
        },
    )
    .await;
    if failovers >= 5.0 {
        let m = opened.expect("a's circuit never opened");
        assert!(
            m.value(r#"meridian_upstream_circuit_transitions_total{upstream="a",to="open"}"#)
                >= 1.0
        );
        assert_eq!(
            m.value(r#"meridian_upstream_circuit{upstream="b",state="closed"}"#),
            1.0
        );
    }

    // The health board's reports and their age, once the first is applied.
    let reported = poll(
        Duration::from_secs(5),
        Duration::from_millis(100),
        || async {
            let m = scrape(&node.admin).await;
            let age =
                m.get(r#"meridian_health_report_age_seconds{member="1",region="test-region"}"#)?;
            let p99 =
                m.get(r#"meridian_upstream_p99_ttfb_seconds{upstream="b",region="test-region"}"#);
            Some((age, p99, m))
        },
    )
    .await;
    let (age, _, m) = reported.expect("no health report age in /metrics");
    assert!((0.0..30.0).contains(&age), "{age}");
    assert_eq!(
        m.value(r#"meridian_health_report_stale{member="1",region="test-region"}"#),
        0.0
    );

    // The failovers, for the dashboard.
    let (status, _, body) = send(
        Method::GET,
        &format!("http://{}/admin/v1/events", node.admin),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let events: Value = serde_json::from_slice(&body).unwrap();
    let list = events["failovers"].as_array().unwrap();
    assert_eq!(list.len() as f64, failovers, "{events}");
    let newest = &list[0];
    assert_eq!(newest["route"], "m");
    assert_eq!(newest["from"], "a");
    assert_eq!(newest["to"], "b");
    assert!(
        newest["reason"].as_str().unwrap().contains("HTTP 500"),
        "{newest}"
    );
    assert_eq!(newest["request_id"].as_str().unwrap().len(), 32);
    assert!(!String::from_utf8_lossy(&body).contains(PROVIDER_KEY));
}

/// `/readyz` answers 503 while the cluster's configuration has not been
/// applied: here, a node whose two peers never start cannot elect a leader,
/// so nothing is seeded, although its file lists a route and an upstream.
#[tokio::test]
async fn not_ready_until_the_cluster_config_is_applied() {
    let mock = Mock::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let names: Vec<String> = (1..=3).map(|i| format!("n{i}")).collect();
    write_certs(&certs, &names);
    let ports: Vec<u16> = (0..3).map(|_| free_udp_port()).collect();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let local = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut config = harness::config::node(1, "alone", &dir.path().join("data"));
    config.listen.admin = local(admin_port);
    config.listen.raft = local(ports[0]);
    config.cluster.members = (1..)
        .zip(&ports)
        .map(|(id, port)| harness::config::member(id, local(*port)))
        .collect();
    config.cluster.heartbeat_ms = 100;
    config.cluster.election_timeout_ms = 1000;
    config.tls = Some(harness::certs::tls_config(&certs, "n1"));
    config.upstreams.push(upstream("u", &mock));
    config.routes.push(route_to("m", "u", "x"));
    let path = dir.path().join("meridian.toml");
    harness::config::write(&path, &config).unwrap();
    let log = std::fs::File::create(dir.path().join("meridian.log")).unwrap();
    let _child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let admin = format!("127.0.0.1:{admin_port}");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let readyz = poll(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            let response = client
                .get(format!("http://{admin}/readyz").parse().unwrap())
                .await
                .ok()?;
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .ok()?
                .to_bytes();
            Some((status, serde_json::from_slice::<Value>(&body).unwrap()))
        },
    )
    .await;
    let (status, body) = readyz.unwrap_or_else(|| {
        panic!(
            "the admin listener never answered; log: {}",
            std::fs::read_to_string(dir.path().join("meridian.log")).unwrap_or_default()
        )
    });
    // It stays unready: give it a few election timeouts.
    let started = Instant::now();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["config_applied"], false);
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(started.elapsed())).await;
    let (status, _, body) = send(Method::GET, &format!("http://{admin}/readyz"), &[], None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["config_applied"], false, "{body}");
    let (status, _, _) = send(Method::GET, &format!("http://{admin}/healthz"), &[], None).await;
    assert_eq!(status, StatusCode::OK, "alive, though not ready");

    let m = scrape(&admin).await;
    assert_eq!(m.value("meridian_ready"), 0.0);
    assert_eq!(m.value("meridian_config_applied"), 0.0);
    assert_eq!(m.value(r#"meridian_raft_role{role="leader"}"#), 0.0);
    assert!(m.get("meridian_raft_leader").is_none(), "{}", m.text);
}

/// With `--log-format json` (here `MERIDIAN_LOG_FORMAT=json`) every line is
/// one JSON object, and every line the data plane writes about a request,
/// its failed attempts and its end included, carries the request's id.
#[tokio::test]
async fn json_logs_carry_the_request_id_on_every_data_plane_line() {
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    a.behave(json!({"error_rate": 1.0, "error_status": 503}))
        .await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.upstreams = vec![upstream("a", &a), upstream("b", &b)];
            c.routes.push(tiers("m", &[("a", "x"), ("b", "y")]));
        },
        &[("MERIDIAN_LOG_FORMAT", "json")],
    )
    .await;
    let ids = ["req-json-1", "req-json-2", "req-json-3"];
    let answer = node.chat(chat_body("m"), &[("x-request-id", ids[0])]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-request-id"), ids[0]);
    let mut stream = chat_body("m");
    stream["stream"] = json!(true);
    let answer = node
        .post(
            "/v1/chat/completions",
            stream.to_string(),
            &[("x-request-id", ids[1])],
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        node.chat(chat_body("nope"), &[("x-request-id", ids[2])])
            .await
            .status,
        404
    );

    // The stream's last line is written as it ends, a moment after the client read it.
    let log = poll(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            let log = node.log();
            (log.matches("request done").count() >= 2 && log.contains("request refused"))
                .then_some(log)
        },
    )
    .await
    .unwrap_or_else(|| panic!("the request lines never came:\n{}", node.log()));

    let mut seen: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let timestamp = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$").unwrap();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["level"].is_string() && timestamp.is_match(v["timestamp"].as_str().unwrap_or("")),
            "{line}"
        );
        let target = v["target"].as_str().unwrap_or_default();
        if !(target.starts_with("meridian::proxy") || target.starts_with("meridian::relay")) {
            continue;
        }
        let id = v["span"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a data-plane line without the request id: {line}"));
        let id = ids
            .iter()
            .find(|known| **known == id)
            .unwrap_or_else(|| panic!("unknown request id {id}: {line}"));
        let message = v["fields"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        seen.entry(id).or_default().push(message);
    }
    let has =
        |id: &str, message: &str| seen.get(id).is_some_and(|m| m.iter().any(|x| x == message));
    assert!(has(ids[0], "attempt failed"), "{seen:?}");
    assert!(has(ids[0], "request done"), "{seen:?}");
    assert!(has(ids[1], "request done"), "{seen:?}");
    assert!(has(ids[2], "request refused"), "{seen:?}");
    // The text format says the same, for people.
    assert!(!log.contains("Bearer"));
}
