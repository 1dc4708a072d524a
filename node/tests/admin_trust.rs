//! What an admin token can and cannot do to a node, and what a node does
//! with a committed change it cannot use, over real `meridian` processes:
//! the admin API cannot point an upstream at the node's own secrets or at
//! files outside its `[secrets] dir` (400, nothing proposed); a reference
//! one node cannot use disables that upstream on that node only and the
//! rest keeps being served; the last client key and the last voter stay;
//! unknown deletes propose nothing; and the smaller edges (413 as JSON, the
//! bearer scheme in any case, short secrets and credentials in URLs refused).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::cluster::{Cluster, Options, UPSTREAM, poll, read_ready, route};
use support::config::{Config, key, route_to, tiers, upstream};
use support::{Mock, Node, chat_body, send};
use tokio::io::AsyncReadExt;

const ADMIN_TOKEN: &str = "trust-admin-token-0001";
const CLIENT_KEY: &str = "sk-trust-client-0001";
const PROVIDER_KEY: &str = "sk-trust-provider-0001";

/// A TCP listener that would take whatever an upstream request carries; it
/// counts the connections it gets and keeps their bytes.
struct Echo {
    addr: String,
    connections: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Echo {
    async fn start() -> Echo {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, bytes) = (connections.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let bytes = bytes.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        bytes.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Echo {
            addr,
            connections,
            seen,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

/// An admin call with the node's token.
async fn admin(
    node: &Node,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (status, _, bytes) = send(
        method,
        &format!("http://{}{path}", node.admin),
        &[("authorization", &auth)],
        body.map(|b| b.to_string()),
    )
    .await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn applied_index(node: &Node) -> u64 {
    let (status, view) = admin(node, Method::GET, "/admin/v1/cluster", None).await;
    assert_eq!(status, 200, "{view}");
    view["applied_index"].as_u64().unwrap()
}

/// The applied index once it has stood still for a second and a half: a
/// node announces itself shortly after start, and that entry must not be
/// taken for a proposal of the test's.
async fn settled_index(node: &Node) -> u64 {
    let mut last = applied_index(node).await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let now = applied_index(node).await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the applied index never settled")
}

/// A node's log once it holds `needle` (the log is written by a background
/// thread), or all of it after 10 s.
async fn log_with(read: impl Fn() -> String, needle: &str) -> String {
    let found = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        let log = read();
        async move { log.contains(needle).then_some(log) }
    })
    .await;
    found.unwrap_or_else(read)
}

/// Sends a request whose body is over the limit as curl does (`Expect:
/// 100-continue`, the body only after a 100), and returns the answer's
/// status line and body.
async fn oversized_put(admin: &str, path: &str, auth: &str, bytes: usize) -> (String, Value) {
    use tokio::io::AsyncWriteExt;
    let mut socket = tokio::net::TcpStream::connect(admin).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nhost: {admin}\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ncontent-length: {bytes}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
        .await
        .expect("no answer in 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.display().to_string()
}

const WITH_KEY: &[(&str, &str)] = &[("authorization", "Bearer sk-trust-client-0001")];

/// The attack: an admin token holder points an upstream at the
/// node's client key, its admin token or any file, with the base URL at a
/// server of theirs. Every attempt is a 400 naming the field, nothing is
/// proposed, and nothing reaches that server; what `[secrets]` allows works.
#[tokio::test]
async fn the_admin_api_cannot_point_an_upstream_at_node_secrets() {
    let echo = Echo::start().await;
    let mock = Mock::start(&[]).await;
    let keyed = Mock::start(&["--api-key", PROVIDER_KEY]).await;
    let home = tempfile::tempdir().unwrap();
    let keys = home.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let good = write(&keys.join("provider"), &format!("{PROVIDER_KEY}\n"));
    let newline = write(&keys.join("two-lines"), "sk-line-one\nsk-line-two\n");
    let outside = write(&home.path().join("outside"), "sk-outside-the-dir");
    std::os::unix::fs::symlink(&outside, keys.join("link-out")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", keys.join("passwd")).unwrap();
    let not_pem = write(&keys.join("not.pem"), "not a certificate");

    // The prefix matches the client key's and the admin token's variables:
    // they must be refused all the same.
    let node = Node::start_with(
        |c: &mut Config| {
            c.admin.token_env = "TRUST_ADMIN_TOKEN".to_owned();
            c.secrets.env = vec!["TRUST_SPARE".to_owned()];
            c.secrets.env_prefix = Some("TRUST_".to_owned());
            c.secrets.dir = Some(keys.clone());
            c.keys.push(key("app", "TRUST_CLIENT_KEY"));
            c.upstreams.push(upstream("a", &mock));
            c.routes.push(route_to("m", "a", "x"));
        },
        &[
            ("TRUST_ADMIN_TOKEN", ADMIN_TOKEN),
            ("TRUST_CLIENT_KEY", CLIENT_KEY),
            ("TRUST_UPSTREAM_KEY", PROVIDER_KEY),
            ("TRUST_BROKEN", "sk-broken\u{7f}key"),
        ],
    )
    .await;

    let before = settled_index(&node).await;
    let evil = |extra: Value| {
        let mut body = json!({ "base_url": echo.base_url() });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let cases = [
        (
            json!({"api_key_env": "TRUST_CLIENT_KEY"}),
            "upstream.api_key_env",
        ),
        (
            json!({"api_key_env": "TRUST_ADMIN_TOKEN"}),
            "upstream.api_key_env",
        ),
        (
            json!({"api_key_env": "MERIDIAN_ADMIN_TOKEN"}),
            "upstream.api_key_env",
        ),
        (json!({"api_key_env": "HOME"}), "upstream.api_key_env"),
        (json!({"api_key_env": "PATH"}), "upstream.api_key_env"),
        (
            json!({"api_key_env": "TRUST_BROKEN"}),
            "upstream.api_key_env",
        ),
        (json!({"api_key_env": "A=B"}), "upstream.api_key_env"),
        (
            json!({"api_key_file": "/etc/passwd"}),
            "upstream.api_key_file",
        ),
        (json!({"api_key_file": outside}), "upstream.api_key_file"),
        (
            json!({"api_key_file": format!("{}/../outside", keys.display())}),
            "upstream.api_key_file",
        ),
        (
            json!({"api_key_file": keys.join("link-out")}),
            "upstream.api_key_file",
        ),
        (
            json!({"api_key_file": keys.join("passwd")}),
            "upstream.api_key_file",
        ),
        (json!({"api_key_file": newline}), "upstream.api_key_file"),
        (
            json!({"api_key_file": keys.join("absent")}),
            "upstream.api_key_file",
        ),
        (json!({"api_key_file": keys}), "upstream.api_key_file"),
        (
            json!({"api_key_file": "keys/provider"}),
            "upstream.api_key_file",
        ),
        (
            json!({"ca_file": "/surely/not/here.pem"}),
            "upstream.ca_file",
        ),
        (json!({"ca_file": not_pem}), "upstream.ca_file"),
        (json!({"ca_file": "/dev/zero"}), "upstream.ca_file"),
        (json!({"ca_file": "/etc/passwd"}), "upstream.ca_file"),
        (json!({"ca_file": outside}), "upstream.ca_file"),
        (json!({"ca_file": keys.join("passwd")}), "upstream.ca_file"),
        (
            json!({"ca_file": keys.join("link-out")}),
            "upstream.ca_file",
        ),
    ];
    for (extra, field) in cases {
        let body = evil(extra.clone());
        let (status, answer) =
            admin(&node, Method::PUT, "/admin/v1/upstreams/evil", Some(body)).await;
        assert_eq!(status, 400, "{extra}: {answer}");
        assert_eq!(answer["error"]["param"], field, "{extra}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        // A path outside the dir is refused as such, unopened: the answer
        // does not tell whether it exists or what it holds.
        if let Some(ca) = extra["ca_file"].as_str()
            && !ca.starts_with(keys.to_str().unwrap())
        {
            assert!(message.contains("[secrets] dir"), "{extra}: {message}");
        }
        for secret in [
            CLIENT_KEY,
            ADMIN_TOKEN,
            "sk-line-one",
            "sk-outside",
            "root:",
        ] {
            assert!(!message.contains(secret), "{extra}: {message}");
        }
    }
    // Credentials in the URL: refused, never stored, never logged.
    let with_password = format!("http://user:hunter2-password@{}/v1", echo.addr);
    let (status, answer) = admin(
        &node,
        Method::PUT,
        "/admin/v1/upstreams/evil",
        Some(json!({ "base_url": with_password })),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["param"], "upstream.base_url");
    assert!(!answer.to_string().contains("hunter2"), "{answer}");

    // Nothing was proposed, nothing exists, nothing reached the echo server.
    assert_eq!(applied_index(&node).await, before, "nothing was proposed");
    assert_eq!(
        admin(&node, Method::GET, "/admin/v1/upstreams/evil", None)
            .await
            .0,
        404
    );
    let (status, _) = admin(
        &node,
        Method::PUT,
        "/admin/v1/routes/steal",
        Some(json!({"tiers": [[{"upstream": "evil", "model": "x"}]]})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(node.chat(chat_body("steal"), WITH_KEY).await.status, 404);
    assert_eq!(echo.connections.load(Ordering::SeqCst), 0);
    assert!(echo.seen.lock().unwrap().is_empty());

    // What [secrets] allows is read and sent to the provider.
    for (id, extra) in [
        ("by-file", json!({"api_key_file": good})),
        ("by-env", json!({"api_key_env": "TRUST_UPSTREAM_KEY"})),
    ] {
        let mut body = json!({ "base_url": keyed.base_url() });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, answer) = admin(
            &node,
            Method::PUT,
            &format!("/admin/v1/upstreams/{id}"),
            Some(body),
        )
        .await;
        assert_eq!(status, 200, "{id}: {answer}");
        let route = json!({"tiers": [[{"upstream": id, "model": "x"}]]});
        let (status, answer) = admin(
            &node,
            Method::PUT,
            &format!("/admin/v1/routes/{id}"),
            Some(route),
        )
        .await;
        assert_eq!(status, 200, "{id}: {answer}");
        let answer = node.chat(chat_body(id), WITH_KEY).await;
        assert_eq!(
            answer.status,
            200,
            "{id}: {}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    let log = node.log();
    for secret in [
        CLIENT_KEY,
        ADMIN_TOKEN,
        PROVIDER_KEY,
        "hunter2",
        "sk-line-one",
    ] {
        assert!(!log.contains(secret), "{secret} reached the log");
    }
}

/// The silent freeze: upstreams whose key file has an inner newline, or
/// whose CA file is missing or not PEM, are committed (here by the seed,
/// which the admin API's checks do not stand in front of). Each is disabled
/// on this node, named with its field in the log, `/admin/v1/health` and
/// `/readyz`; everything else is served, and so is a later write.
#[tokio::test]
async fn a_committed_upstream_this_node_cannot_use_is_disabled_and_the_rest_serves() {
    let mock = Mock::start(&[]).await;
    let home = tempfile::tempdir().unwrap();
    let newline = write(&home.path().join("two-lines"), "sk-line-one\nsk-line-two\n");
    let not_pem = write(&home.path().join("not.pem"), "not a certificate");
    let node = Node::start_with(
        |c: &mut Config| {
            let mut bad_key = upstream("bad-key", &mock);
            bad_key.api_key_file = Some(newline.into());
            let mut bad_ca = upstream("bad-ca", &mock);
            bad_ca.ca_file = Some("/surely/not/here.pem".into());
            let mut bad_pem = upstream("bad-pem", &mock);
            bad_pem.ca_file = Some(not_pem.into());
            c.upstreams = vec![upstream("good", &mock), bad_key, bad_ca, bad_pem];
            c.routes = vec![
                route_to("m", "good", "x"),
                route_to("k", "bad-key", "x"),
                route_to("c", "bad-ca", "x"),
                tiers("p", &[("bad-pem", "x"), ("good", "y")]),
            ];
        },
        &[],
    )
    .await;

    let ready = node.admin_get("/readyz", &[]).await;
    assert_eq!(ready.status, 200, "other upstreams serve");
    let disabled = ready.json()["disabled_upstreams"].clone();
    assert_eq!(
        disabled,
        json!([
            {"id": "bad-ca", "field": "ca_file"},
            {"id": "bad-key", "field": "api_key_file"},
            {"id": "bad-pem", "field": "ca_file"},
        ]),
    );
    let health = node.admin_get("/admin/v1/health", &[]).await.json();
    for u in health["upstreams"].as_array().unwrap() {
        let expected = match u["id"].as_str().unwrap() {
            "good" => Value::Null,
            "bad-key" => json!("api_key_file"),
            _ => json!("ca_file"),
        };
        assert_eq!(u["disabled"]["field"], expected, "{u}");
    }
    assert!(
        !health.to_string().contains("sk-line"),
        "the key's content is never shown"
    );

    assert_eq!(node.chat(chat_body("m"), &[]).await.status, 200);
    assert_eq!(node.chat(chat_body("k"), &[]).await.status, 503);
    assert_eq!(node.chat(chat_body("c"), &[]).await.status, 503);
    let fallback = node.chat(chat_body("p"), &[]).await;
    assert_eq!(fallback.status, 200);
    assert_eq!(fallback.header("x-meridian-upstream"), "good");

    // The table is not frozen: the next acknowledged write serves at once.
    let (status, answer) = admin(
        &node,
        Method::PUT,
        "/admin/v1/routes/later",
        Some(json!({"tiers": [[{"upstream": "good", "model": "z"}]]})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(node.chat(chat_body("later"), &[]).await.status, 200);

    let log = log_with(|| node.log(), "bad-pem").await;
    for (id, field) in [
        ("bad-key", "api_key_file"),
        ("bad-ca", "ca_file"),
        ("bad-pem", "ca_file"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("upstream skipped") && l.contains(id) && l.contains(field)),
            "{id} / {field} not named in the log:\n{log}"
        );
    }
    assert!(
        !log.contains("sk-line"),
        "the key's content reached the log"
    );
}

/// Deletes: an unknown name is a 404 and proposes nothing; the last client
/// key stays (409), whichever key is last.
#[tokio::test]
async fn unknown_deletes_propose_nothing_and_the_last_key_stays() {
    let mock = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.admin.token_env = "TRUST_ADMIN_TOKEN".to_owned();
            c.keys.push(key("app", "TRUST_CLIENT_KEY"));
            c.upstreams.push(upstream("a", &mock));
            c.routes.push(route_to("m", "a", "x"));
        },
        &[
            ("TRUST_ADMIN_TOKEN", ADMIN_TOKEN),
            ("TRUST_CLIENT_KEY", CLIENT_KEY),
        ],
    )
    .await;
    let before = settled_index(&node).await;
    for path in [
        "/admin/v1/upstreams/nope",
        "/admin/v1/routes/nope",
        "/admin/v1/routes/org/nope",
        "/admin/v1/keys/nope",
    ] {
        let (status, answer) = admin(&node, Method::DELETE, path, None).await;
        assert_eq!(status, 404, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found", "{answer}");
    }
    assert_eq!(applied_index(&node).await, before, "nothing was proposed");

    let (status, answer) = admin(&node, Method::DELETE, "/admin/v1/keys/app", None).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "last_key");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("last client key")
    );
    assert_eq!(applied_index(&node).await, before, "nothing was proposed");
    assert_eq!(node.chat(chat_body("m"), &[]).await.status, 401);
    assert_eq!(node.chat(chat_body("m"), WITH_KEY).await.status, 200);

    // With a second key, either may go, but not both.
    let (status, _) = admin(
        &node,
        Method::PUT,
        "/admin/v1/keys/second",
        Some(json!({"key": "sk-trust-second-0001"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        admin(&node, Method::DELETE, "/admin/v1/keys/app", None)
            .await
            .0,
        200
    );
    assert_eq!(
        admin(&node, Method::DELETE, "/admin/v1/keys/second", None)
            .await
            .0,
        409
    );
    let second = [("authorization", "Bearer sk-trust-second-0001")];
    assert_eq!(node.chat(chat_body("m"), &second).await.status, 200);
    assert_eq!(node.chat(chat_body("m"), &[]).await.status, 401);
}

/// The admin plane's edges: the bearer scheme in any case, a JSON 413, the
/// last voter kept with a 409, and a 15-character key refused.
#[tokio::test]
async fn admin_edges_answer_what_a_user_expects() {
    let mock = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.admin.token_env = "TRUST_ADMIN_TOKEN".to_owned();
            c.upstreams.push(upstream("a", &mock));
        },
        &[("TRUST_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    let url = format!("http://{}/admin/v1/cluster", node.admin);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {ADMIN_TOKEN}");
        let (status, _, _) = send(Method::GET, &url, &[("authorization", &auth)], None).await;
        assert_eq!(status, 200, "{scheme}");
    }
    for auth in [
        format!("Basic {ADMIN_TOKEN}"),
        format!("Bearer{ADMIN_TOKEN}"),
        "Bearer wrong-token-0000000".to_owned(),
    ] {
        let (status, _, _) = send(Method::GET, &url, &[("authorization", &auth)], None).await;
        assert_eq!(status, 401, "{auth}");
    }

    // 3 MB: 413 in the admin API's JSON shape.
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (status, answer) =
        oversized_put(&node.admin, "/admin/v1/upstreams/big", &auth, 3 << 20).await;
    assert!(status.contains(" 413 "), "{status}");
    assert_eq!(answer["error"]["code"], "request_too_large", "{answer}");
    // A large body under the limit is read, and judged on what it says.
    let (status, _, body) = send(
        Method::PUT,
        &format!("http://{}/admin/v1/routes/big", node.admin),
        &[("authorization", &auth)],
        Some(format!(
            "{{\"tiers\": [], \"pad\": \"{}\"}}",
            "x".repeat(1 << 19)
        )),
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));

    // The only voter cannot be removed.
    let (status, answer) = admin(&node, Method::DELETE, "/admin/v1/members/1", None).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "last_voter");
    assert_eq!(
        admin(&node, Method::GET, "/admin/v1/cluster", None).await.0,
        200
    );

    let (status, answer) = admin(
        &node,
        Method::PUT,
        "/admin/v1/keys/short",
        Some(json!({"key": "fifteen-chars-x"})),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["param"], "key");
}

/// Runs `meridian` to its exit, or kills it after 20 s (a node that should
/// have refused to start and serves instead), with its status and stderr.
fn meridian(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .env_remove("MERIDIAN_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(stderr.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, std::fs::read_to_string(stderr.path()).unwrap())
}

/// Short secrets stop the node at start (exit 64, naming the field, never
/// the value); so does a base URL with credentials.
#[test]
fn short_secrets_and_credentials_in_urls_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // A lone node on ephemeral loopback ports, with what `configure` sets.
    let file = |name: &str, configure: &dyn Fn(&mut Config)| {
        let mut config = harness::config::node(1, "eu", &dir.path().join("data"));
        configure(&mut config);
        let path = dir.path().join(name);
        harness::config::write(&path, &config).unwrap();
        path.display().to_string()
    };
    let token = file("token.toml", &|c| {
        c.admin.token_env = "TRUST_ADMIN_TOKEN".to_owned();
    });
    for short in ["x", "fifteen-chars-x"] {
        let (code, stderr) = meridian(
            &["serve", "--config", &token],
            &[("TRUST_ADMIN_TOKEN", short)],
        );
        assert_eq!(code, 64, "{stderr}");
        assert!(
            stderr.contains("admin.token_env") && stderr.contains("TRUST_ADMIN_TOKEN"),
            "{stderr}"
        );
        assert!(
            !stderr.contains(short) || short == "x",
            "the token was printed: {stderr}"
        );
    }
    let key = file("key.toml", &|c| c.keys.push(key("app", "TRUST_CLIENT_KEY")));
    let (code, stderr) = meridian(&["serve", "--config", &key], &[("TRUST_CLIENT_KEY", "k")]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("keys[0].key_env"), "{stderr}");

    let url = file("url.toml", &|c| {
        c.upstreams.push(harness::config::upstream(
            "a",
            "https://user:hunter2-password@api.example/v1",
        ));
    });
    for args in [
        vec!["serve", "--config", &url],
        vec!["config", "check", &url],
    ] {
        let (code, stderr) = meridian(&args, &[]);
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert!(stderr.contains("upstreams[0].base_url"), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

/// A node process on a data directory that outlives it.
async fn serve(
    dir: &Path,
    config: &Config,
    env: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let path = dir.join("meridian.toml");
    harness::config::write(&path, config).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("meridian.log"))
        .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("MERIDIAN_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let Some((api, _)) = read_ready(&mut child, Duration::from_secs(30)).await else {
        panic!(
            "the node did not get ready: {}",
            std::fs::read_to_string(dir.join("meridian.log")).unwrap_or_default()
        );
    };
    // Its API may listen on 0.0.0.0: reach it on loopback.
    let port = api.rsplit(':').next().unwrap().to_owned();
    (child, format!("127.0.0.1:{port}"))
}

/// "No key, accept all" is for a node started without keys on loopback. A
/// cluster created that way keeps no key; the same node restarted on a
/// public address with a key in its file (a seed only seeds a new cluster,
/// so the key is not in the cluster's state) refuses every request rather
/// than accepting them all.
#[tokio::test]
async fn a_node_without_keys_beyond_loopback_refuses_every_request() {
    let mock = Mock::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut loopback = harness::config::node(1, "eu", &dir.path().join("data"));
    loopback.upstreams.push(upstream("a", &mock));
    loopback.routes.push(route_to("m", "a", "x"));
    let (mut first, api) = serve(dir.path(), &loopback, &[]).await;
    let http = support::cluster::Http::new();
    let open = http.chat(&api, "m", Duration::from_secs(10)).await.unwrap();
    assert_eq!(open.status, 200, "loopback without keys: open");
    first.kill().await.unwrap();
    first.wait().await.unwrap();

    let mut public = loopback.clone();
    public.listen.api = "0.0.0.0:0".parse().unwrap();
    public.keys.push(key("app", "TRUST_CLIENT_KEY"));
    let (_second, api) = serve(dir.path(), &public, &[("TRUST_CLIENT_KEY", CLIENT_KEY)]).await;
    let refused = http.chat(&api, "m", Duration::from_secs(10)).await.unwrap();
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "invalid_api_key");
    let log = log_with(
        || std::fs::read_to_string(dir.path().join("meridian.log")).unwrap_or_default(),
        "every request is refused",
    )
    .await;
    assert!(log.contains("every request is refused"), "{log}");
}

/// In a cluster, the check is made on the node the operator calls (a
/// follower too, before it forwards), against that node's `[secrets]`; and
/// a node whose own file does not allow a committed reference disables that
/// upstream alone, naming it, while everything else (and every later
/// write) is served there.
#[tokio::test]
async fn secret_references_are_checked_where_called_and_again_where_applied() {
    let mut cluster = Cluster::start(3, Options::fast()).await;
    // Node 3 alone has a secrets directory.
    let keys = cluster.dir.path().join("n3-keys");
    std::fs::create_dir(&keys).unwrap();
    let key_file = write(&keys.join("provider"), "sk-node-three-0001\n");
    cluster.terminate(3).await;
    let path: PathBuf = cluster.node(3).config.clone();
    let mut config = Config::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config.secrets.dir = Some(keys.clone());
    harness::config::write(&path, &config).unwrap();
    cluster.restart(3).await;
    let leader = cluster.leader().await;
    let index = |view: Value| view["applied_index"].as_u64().unwrap();
    // Node 3 announces itself again after its restart: wait for the log to
    // stand still.
    let mut before = index(cluster.view(leader).await);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let now = index(cluster.view(leader).await);
        if now == before {
            break;
        }
        before = now;
    }
    for id in 1..=3 {
        assert!(
            cluster
                .wait_applied(id, before, Duration::from_secs(10))
                .await
        );
    }

    // Refused wherever it is sent: by a follower (before it forwards) and
    // by the leader; node 3 refuses files outside its dir too.
    for via in [1, 2, 3] {
        for (extra, field) in [
            (
                json!({"api_key_file": "/etc/passwd"}),
                "upstream.api_key_file",
            ),
            (json!({"api_key_env": "HOME"}), "upstream.api_key_env"),
        ] {
            let mut body = json!({"base_url": cluster.mock.base_url()});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let reply = cluster.put(via, "/admin/v1/upstreams/evil", &body).await;
            assert_eq!(reply.status, 400, "via {via} {extra}: {}", reply.text());
            assert_eq!(reply.json()["error"]["param"], field);
        }
    }
    // Node 3's key file is not allowed through nodes 1 and 2.
    let filed = json!({"base_url": cluster.mock.base_url(), "api_key_file": key_file});
    for via in [1, 2] {
        let reply = cluster.put(via, "/admin/v1/upstreams/filed", &filed).await;
        assert_eq!(reply.status, 400, "via {via}: {}", reply.text());
    }
    for id in 1..=3 {
        assert_eq!(
            index(cluster.view(id).await),
            before,
            "node {id}: nothing proposed"
        );
    }

    // Through node 3 it is allowed and committed everywhere.
    let reply = cluster.put(3, "/admin/v1/upstreams/filed", &filed).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let filed_route = json!({"tiers": [[{"upstream": "filed", "model": "f"}]]});
    cluster.put_route(3, "filed-route", &filed_route).await;
    cluster.put_route(1, "after", &route("after-model")).await;
    let last = index(cluster.view(leader).await);
    for id in 1..=3 {
        assert!(
            cluster
                .wait_applied(id, last, Duration::from_secs(10))
                .await
        );
    }
    let served = |id: u64, model: &'static str| {
        let cluster = &cluster;
        async move {
            poll(
                Duration::from_secs(5),
                Duration::from_millis(20),
                || async {
                    let reply = cluster.chat(id, model, Duration::from_secs(5)).await.ok()?;
                    Some(reply.status)
                },
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(served(3, "filed-route").await, 200);
    for id in [1, 2] {
        assert_eq!(
            served(id, "filed-route").await,
            503,
            "node {id} disables it"
        );
        assert_eq!(
            served(id, "after").await,
            200,
            "node {id} serves the later write"
        );
        assert_eq!(served(id, support::cluster::SEED_ROUTE).await, 200);
        let ready = cluster.get(id, "/readyz").await;
        assert_eq!(ready.status, 200);
        assert_eq!(
            ready.json()["disabled_upstreams"],
            json!([{"id": "filed", "field": "api_key_file"}]),
            "node {id}"
        );
        let health = cluster.get(id, "/admin/v1/health").await.json();
        let entry = health["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["id"] == "filed")
            .unwrap()
            .clone();
        assert_eq!(entry["disabled"]["field"], "api_key_file", "{entry}");
        let log = log_with(|| cluster.log(id), "api_key_file").await;
        assert!(
            log.lines().any(|l| l.contains("upstream skipped")
                && l.contains("filed")
                && l.contains("api_key_file")),
            "node {id}'s log does not name the upstream"
        );
        let other = health["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["id"] == UPSTREAM)
            .unwrap()
            .clone();
        assert!(other["disabled"].is_null(), "{other}");
    }
    assert!(cluster.get(3, "/readyz").await.json()["disabled_upstreams"] == json!([]));
}
