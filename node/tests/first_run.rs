//! A new user's first steps, over real `meridian` processes: `serve` on the
//! embedded default with no provider key, then with one after a restart (no
//! trap); `serve --mock` answering with no provider account; the few lines a
//! node prints at start; and the CLI's papercuts (a closed pipe, a port in
//! use, a demo too short to play, deleted routes in `/metrics`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::{chat_body, send};

/// Every provider variable of the embedded default: none may leak in from
/// the machine running the tests.
const PROVIDER_VARS: [&str; 7] = [
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "DEEPSEEK_API_KEY",
    "MISTRAL_API_KEY",
    "GROQ_API_KEY",
    "DASHSCOPE_API_KEY",
    "GEMINI_API_KEY",
];

/// A `meridian serve` run in a directory of the test's (its `./data` is
/// there), on ephemeral ports, with the default log filter (no `RUST_LOG`).
struct Serve {
    child: tokio::process::Child,
    api: String,
    admin: String,
    log: PathBuf,
}

fn command(dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_meridian"));
    command.current_dir(dir).env_remove("RUST_LOG");
    for var in PROVIDER_VARS.iter().chain(&[
        "MERIDIAN_ADMIN_TOKEN",
        "MERIDIAN_LOG_FORMAT",
        "MERIDIAN_ADMIN",
    ]) {
        command.env_remove(var);
    }
    command
}

async fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
    let runs = std::fs::read_dir(dir).unwrap().count();
    let log = dir.join(format!("serve-{runs}.log"));
    let mut child = command(dir)
        .arg("serve")
        .args([
            "--listen-api",
            "127.0.0.1:0",
            "--listen-admin",
            "127.0.0.1:0",
        ])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let line = harness::process::read_line(&mut child, Duration::from_secs(60)).await;
    let ready = line
        .as_deref()
        .and_then(harness::process::Ready::parse)
        .unwrap_or_else(|| {
            panic!(
                "no ready line but {line:?}; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    Serve {
        child,
        api: ready.api.to_string(),
        admin: ready.admin.to_string(),
        log,
    }
}

impl Serve {
    /// SIGTERMs it, waits for it, and returns its log.
    async fn stop(mut self) -> String {
        let (status, by_itself) =
            harness::process::terminate(&mut self.child, Duration::from_secs(40))
                .await
                .unwrap();
        assert!(by_itself, "the node did not stop after SIGTERM");
        let log = std::fs::read_to_string(&self.log).unwrap();
        assert!(status.success(), "{status}; log:\n{log}");
        log
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, _, body) = send(
            Method::GET,
            &format!("http://{}{path}", self.api),
            &[],
            None,
        )
        .await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        let (status, _, body) = send(
            Method::POST,
            &format!("http://{}{path}", self.api),
            headers,
            Some(body.to_string()),
        )
        .await;
        let text = String::from_utf8_lossy(&body).into_owned();
        let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}"));
        (status, json)
    }

    async fn admin(&self, method: Method, path: &str) -> (StatusCode, String) {
        let (status, _, body) =
            send(method, &format!("http://{}{path}", self.admin), &[], None).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// The quickstart that trapped users: the first run without a key seeds
/// `./data` with nothing; setting a key and restarting must serve its
/// routes (and the warning says so), while a state changed through the
/// admin API is left alone, saying how to start over.
#[tokio::test]
async fn set_a_key_and_restart_serves_its_routes() {
    let dir = tempfile::tempdir().unwrap();
    let first = serve(dir.path(), &[], &[]).await;
    assert_eq!(first.get("/v1/models/fast").await.0, StatusCode::NOT_FOUND);
    let log = first.stop().await;
    assert!(
        log.contains("no provider key set")
            && log.contains("OPENAI_API_KEY (openai)")
            && log.contains("restart `meridian serve`")
            && log.contains("meridian serve --mock"),
        "{log}"
    );
    assert!(dir.path().join("data").is_dir());

    // The same ./data, with a key now.
    let key = [("OPENAI_API_KEY", "sk-test-not-a-real-key")];
    let second = serve(dir.path(), &[], &key).await;
    for route in ["fast", "smart", "gpt-4o-mini"] {
        let (status, model) = second.get(&format!("/v1/models/{route}")).await;
        assert_eq!(status, StatusCode::OK, "{route}: {model}");
    }
    let (status, route) = second.admin(Method::GET, "/admin/v1/routes/fast").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        route.contains("openai") && !route.contains("deepseek"),
        "{route}"
    );
    // The operator changes the cluster through the admin API.
    let (status, body) = second
        .admin(Method::DELETE, "/admin/v1/routes/gpt-4o")
        .await;
    assert!(status.is_success(), "{status}: {body}");
    let log = second.stop().await;
    assert!(
        log.contains("now serves the providers whose key is set: OPENAI_API_KEY (openai)"),
        "{log}"
    );

    // Another key: the state is the operator's now, so it stays, and the
    // node says what to do.
    let keys = [key[0], ("DEEPSEEK_API_KEY", "sk-test-not-a-real-key")];
    let third = serve(dir.path(), &[], &keys).await;
    assert_eq!(
        third.get("/v1/models/gpt-4o").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        third.get("/v1/models/deepseek-chat").await.0,
        StatusCode::NOT_FOUND
    );
    let log = third.stop().await;
    assert!(
        log.contains("changed through the admin API") && log.contains("rm -rf data"),
        "{log}"
    );
}

/// `serve --mock`: the README's calls answer with no provider account and
/// no key, through both APIs, and nothing is left in `./data`.
#[tokio::test]
async fn serve_mock_answers_without_a_provider_account() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(dir.path(), &["--mock"], &[]).await;
    let auth = [("authorization", "Bearer unused-without-keys")];
    let (status, answer) = node
        .post("/v1/chat/completions", chat_body("fast"), &auth)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        answer["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{answer}"
    );
    let messages = json!({
        "model": "claude-sonnet-4-0",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "hi"}],
    });
    let headers = [
        ("x-api-key", "unused-without-keys"),
        ("anthropic-version", "2023-06-01"),
    ];
    let (status, answer) = node.post("/v1/messages", messages, &headers).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["type"], "message", "{answer}");
    let log = node.stop().await;
    assert!(log.contains("--mock: every upstream"), "{log}");
    assert!(!dir.path().join("data").exists(), "--mock wrote ./data");
}

/// At start a node prints one line per thing the operator needs and
/// nothing of its libraries' internals (openraft printed 18 of 22 lines).
#[tokio::test]
async fn a_node_says_what_it_serves_in_a_few_lines() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(dir.path(), &["--mock"], &[]).await;
    let (status, _) = node.admin(Method::GET, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let log = node.stop().await;
    let lines: Vec<&str> = log.lines().collect();
    for expected in [
        "node 1 in region local, data in ",
        &format!("listening: api http://{}", node_api(&log)),
        "cluster: 1 member, leader node 1, term ",
        "serving 18 routes over 7 upstreams (7 usable here)",
    ] {
        assert_eq!(
            lines.iter().filter(|l| l.contains(expected)).count(),
            1,
            "{expected:?} not once in:\n{log}"
        );
    }
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("openraft") || l.contains("sled") || l.contains("quinn")),
        "{log}"
    );
    // Start-up to shutdown: the mock line, the routing table, the four
    // lines above, and the shutdown line.
    assert!(lines.len() <= 8, "{} lines:\n{log}", lines.len());
}

/// The API address in a start-up log's `listening:` line.
fn node_api(log: &str) -> String {
    let after = log.split("listening: api http://").nth(1).unwrap();
    after.split_whitespace().next().unwrap().to_owned()
}

/// A command whose stdout is closed before it writes (`| head` that has
/// read enough) exits normally instead of panicking on the broken pipe.
#[tokio::test]
async fn a_closed_stdout_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(dir.path(), &["--mock"], &[]).await;
    let admin = format!("http://{}", node.admin);
    for args in [
        vec!["status", "--admin", &admin, "--output", "json"],
        vec!["routes", "list", "--admin", &admin],
        vec!["config", "default"],
    ] {
        let mut child = command(dir.path())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
    node.stop().await;
}

/// A port in use stops `serve` with one line naming the address and the
/// field to change.
#[tokio::test]
async fn a_port_in_use_is_named_once_with_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = command(dir.path())
        .args([
            "serve",
            "--mock",
            "--listen-api",
            &addr,
            "--listen-admin",
            "127.0.0.1:0",
        ])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen for the API on {addr} (listen.api)")),
        "{stderr}"
    );
    assert_eq!(stderr.matches("already in use").count(), 1, "{stderr}");
    assert!(!stderr.contains("os error"), "{stderr}");
}

/// `demo --duration 5` is refused, saying why, instead of running 20 s.
#[tokio::test]
async fn a_demo_too_short_to_play_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .args(["demo", "--duration", "5"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("--duration 5 is too short") && stderr.contains("at least 20 s"),
        "{stderr}"
    );
}

/// `/metrics` has the `process_*` figures, and a deleted route leaves it.
#[tokio::test]
async fn metrics_forget_deleted_routes_and_show_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(dir.path(), &["--mock"], &[]).await;
    let (status, _) = node
        .post("/v1/chat/completions", chat_body("gpt-4o"), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, text) = node.admin(Method::GET, "/metrics").await;
    for series in [
        "route=\"gpt-4o\"",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_start_time_seconds ",
        // The binary's log writer is bounded; what it drops shows here.
        "meridian_log_lines_dropped_total 0",
    ] {
        assert!(text.contains(series), "{series} not in\n{text}");
    }
    let (status, body) = node.admin(Method::DELETE, "/admin/v1/routes/gpt-4o").await;
    assert!(status.is_success(), "{status}: {body}");
    // The write is acknowledged once committed; the routing table follows
    // the applied state a moment later.
    let gone = support::cluster::poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let (_, text) = node.admin(Method::GET, "/metrics").await;
            (!text.contains("route=\"gpt-4o\"")).then_some(())
        },
    )
    .await;
    assert!(gone.is_some(), "route gpt-4o still in /metrics");
    node.stop().await;
}
