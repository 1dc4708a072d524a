//! The operator CLI against real nodes: `meridian status`, `routes`,
//! `upstreams` and `keys` as an operator runs them (tables and JSON), and
//! the errors for an unreachable node and a missing or wrong admin token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::cluster::{Cluster, Options};
use support::config::{Config, route_to, upstream};
use support::{Mock, Node, chat_body};

/// Runs `meridian ARGS` with `env` (and no admin token unless given),
/// feeding `stdin`; returns (exit code, stdout, stderr).
fn meridian(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .env_remove("MERIDIAN_ADMIN_TOKEN")
        .env_remove("MERIDIAN_ADMIN")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `meridian ARGS --admin URL` that must succeed; its stdout.
fn ok(admin: &str, args: &[&str], stdin: Option<&str>) -> String {
    let url = format!("http://{admin}");
    let mut all = args.to_vec();
    all.extend(["--admin", url.as_str()]);
    let (code, stdout, stderr) = meridian(&all, &[], stdin);
    assert_eq!(code, 0, "meridian {all:?}: {stderr}");
    stdout
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_the_cluster_and_the_health_board() {
    let cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    // Traffic on every node, so the board has figures from every region.
    for id in 1..=3 {
        for _ in 0..25 {
            let reply = cluster
                .chat(id, "seed", Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(reply.status, 200, "{}", reply.text());
        }
    }
    let admin = cluster.node(2).admin.clone();
    // Reports reach the board within a couple of report intervals.
    let status =
        support::cluster::poll(Duration::from_secs(10), Duration::from_millis(200), || {
            let admin = admin.clone();
            async move {
                let v = json(&ok(&admin, &["status", "--output", "json"], None));
                let regions = v["health"]["upstreams"][0]["regions"].as_object()?.len();
                (regions == 3).then_some(v)
            }
        })
        .await
        .expect("the board never showed the three regions");
    assert_eq!(status["cluster"]["members"].as_array().unwrap().len(), 3);
    assert_eq!(status["cluster"]["leader"], leader);
    assert_eq!(status["health"]["upstreams"][0]["id"], "mock");

    let table = ok(&admin, &["status"], None);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("node 2 (r2) is")
            && lines[0].contains(&format!("leader: {leader} (r{leader})")),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{leader}* ")) && l.contains("voter")),
        "the leader is marked: {table}"
    );
    let header = lines
        .iter()
        .find(|l| l.starts_with("UPSTREAM"))
        .expect(&table);
    for column in [
        "CIRCUIT",
        "IN-FLIGHT",
        "ERRORS",
        "P99 HERE",
        "P99 r1",
        "P99 r2",
        "P99 r3",
        "P99 ALL",
    ] {
        assert!(header.contains(column), "no {column}: {table}");
    }
    let row = lines.iter().find(|l| l.starts_with("mock ")).expect(&table);
    assert!(
        row.contains("closed") && row.contains("0.0%") && row.contains(" ms"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_upstreams_and_keys_are_listed_put_and_deleted() {
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    let node = Node::start_with(
        |c: &mut Config| {
            c.upstreams.push(upstream("a", &a));
            c.routes.push(route_to("fast", "a", "x"));
        },
        &[],
    )
    .await;
    let admin = node.admin.as_str();

    // Upstreams: a JSON file, then the list and one of them.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!(r#"{{"base_url": "{}", "region": "eu-west"}}"#, b.base_url()),
    )
    .unwrap();
    let out = ok(
        admin,
        &[
            "upstreams",
            "put",
            "b",
            "--file",
            file.path().to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.starts_with("upstream `b` put: done, applied at index"),
        "{out}"
    );
    let list = ok(admin, &["upstreams", "list"], None);
    assert!(
        list.starts_with("ID") && list.contains("BASE URL"),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("b ") && l.contains("eu-west")),
        "{list}"
    );
    let one = json(&ok(
        admin,
        &["upstreams", "get", "b", "--output", "json"],
        None,
    ));
    assert_eq!(one["region"], "eu-west");

    // Routes: flags, then TOML on stdin (a block pasted from a file), with a `/` in the name.
    ok(
        admin,
        &[
            "routes",
            "put",
            "org/smart",
            "--tier",
            "b:big,a:x",
            "--tier",
            "a:y",
        ],
        None,
    );
    let route = json(&ok(
        admin,
        &["routes", "get", "org/smart", "--output", "json"],
        None,
    ));
    assert_eq!(route["tiers"][0][0]["upstream"], "b");
    assert_eq!(route["tiers"][1][0]["model"], "y");
    let toml =
        "[[routes]]\nmodel = \"cheap\"\ntiers = [[{ upstream = \"a\", model = \"mini\" }]]\n";
    ok(admin, &["routes", "put", "cheap"], Some(toml));
    let list = ok(admin, &["routes", "list"], None);
    assert!(
        list.lines()
            .any(|l| l.starts_with("org/smart") && l.contains("b:big, a:x | a:y")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("cheap") && l.contains("a:mini")),
        "{list}"
    );
    let all = json(&ok(admin, &["routes", "list", "--output", "json"], None));
    assert_eq!(all.as_array().unwrap().len(), 3);

    // A change the node refuses: exit 64 naming the field; nothing changed.
    let url = format!("http://{admin}");
    let (code, _, stderr) = meridian(
        &["routes", "put", "bad", "--tier", "nope:x", "--admin", &url],
        &[],
        None,
    );
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("tiers[0][0].upstream"), "{stderr}");
    let (code, _, stderr) = meridian(
        &["routes", "put", "bad", "--admin", &url],
        &[],
        Some("{\"tiers\": 3}"),
    );
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("tiers"), "{stderr}");
    let (code, _, stderr) = meridian(
        &["routes", "put", "bad", "--admin", &url],
        &[],
        Some("tiers = ["),
    );
    assert_eq!(code, 64, "a body that is neither JSON nor TOML: {stderr}");
    let (code, _, stderr) = meridian(&["upstreams", "delete", "b", "--admin", &url], &[], None);
    assert_eq!(code, 64, "an upstream in use is not deleted: {stderr}");
    let (code, _, stderr) = meridian(&["routes", "get", "nope", "--admin", &url], &[], None);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("404"), "{stderr}");

    ok(admin, &["routes", "delete", "org/smart"], None);
    let out = ok(admin, &["upstreams", "delete", "b"], None);
    assert!(out.contains("deleted: done"), "{out}");

    // Keys: from an environment variable or stdin, never printed.
    let secret = "sk-demo-0123456789abcdef";
    let url = format!("http://{admin}");
    let (code, stdout, stderr) = meridian(
        &[
            "keys",
            "put",
            "app",
            "--key-env",
            "TEST_CLI_KEY",
            "--admin",
            &url,
        ],
        &[("TEST_CLI_KEY", secret)],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
    let out = ok(admin, &["keys", "put", "ci"], Some("sk-another-key-0000\n"));
    assert!(out.starts_with("key `ci` put: done"), "{out}");
    let list = ok(admin, &["keys", "list"], None);
    assert_eq!(list, "NAME\napp\nci\n");
    let keys = json(&ok(admin, &["keys", "list", "--output", "json"], None));
    assert_eq!(keys, serde_json::json!([{"name": "app"}, {"name": "ci"}]));
    // The key now guards the data plane.
    let answer = node
        .chat(
            chat_body("fast"),
            &[("authorization", &format!("Bearer {secret}"))],
        )
        .await;
    assert_eq!(answer.status, 200);
    let answer = node.chat(chat_body("fast"), &[]).await;
    assert_eq!(answer.status, 401);
    let (code, _, stderr) = meridian(&["keys", "put", "x", "--admin", &url], &[], Some("short\n"));
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("key"), "{stderr}");
    ok(admin, &["keys", "delete", "ci"], None);
    assert_eq!(ok(admin, &["keys", "list"], None), "NAME\napp\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_node_or_a_wrong_token_is_said_plainly() {
    // Nothing listens on port 1.
    let (code, stdout, stderr) = meridian(&["status", "--admin", "http://127.0.0.1:1"], &[], None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("cannot reach the node at http://127.0.0.1:1")
            && stderr.contains("refused"),
        "{stderr}"
    );
    let (code, _, stderr) = meridian(&["routes", "list", "--admin", "127.0.0.1:1"], &[], None);
    assert_eq!(code, 64, "not a URL: {stderr}");

    let mock = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.admin.token_env = "TEST_ADMIN_TOKEN".to_owned();
            c.upstreams.push(upstream("a", &mock));
            c.routes.push(route_to("m", "a", "x"));
        },
        &[("TEST_ADMIN_TOKEN", "right-token-0123")],
    )
    .await;
    let url = format!("http://{}", node.admin);
    let (code, _, stderr) = meridian(&["status", "--admin", &url], &[], None);
    assert_eq!(code, 77, "{stderr}");
    assert!(
        stderr.contains("requires an admin token")
            && stderr.contains("MERIDIAN_ADMIN_TOKEN is not set"),
        "{stderr}"
    );
    let (code, _, stderr) = meridian(
        &[
            "upstreams",
            "list",
            "--admin",
            &url,
            "--token-env",
            "MY_TOKEN",
        ],
        &[("MY_TOKEN", "wrong")],
        None,
    );
    assert_eq!(code, 77, "{stderr}");
    assert!(
        stderr.contains("refused the admin token in MY_TOKEN"),
        "{stderr}"
    );
    let (code, stdout, stderr) = meridian(
        &["status", "--admin", &url, "--output", "json"],
        &[("MERIDIAN_ADMIN_TOKEN", "right-token-0123")],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json(&stdout)["health"]["upstreams"][0]["id"], "a");
}
