//! The replicated catalogue on a real three-node cluster: the leader fetches
//! the model list of every upstream with `discover_models = true` (OpenAI's
//! shape and Anthropic's, from one `meridian-mock --model-list m1,m2`) and
//! commits it, every node lists the same, and when the provider's list
//! endpoint fails the catalogue stays as it was.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use support::Mock;
use support::cluster::{Cluster, Options, poll};

/// The discovered models of `upstream` in a `GET /admin/v1/catalogue` answer.
fn discovered(answer: &Value, upstream: &str) -> Option<Vec<String>> {
    let entry = answer["upstreams"]
        .as_array()?
        .iter()
        .find(|u| u["id"] == upstream)?;
    let models = entry["discovered"].as_array()?;
    Some(
        models
            .iter()
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect(),
    )
}

/// Whether every node lists `models` for each of `upstreams`.
async fn everywhere(cluster: &Cluster, upstreams: &[&str], models: &[&str]) -> bool {
    for id in 1..=3 {
        let answer = cluster.get(id, "/admin/v1/catalogue").await.json();
        for upstream in upstreams {
            let listed = discovered(&answer, upstream).unwrap_or_default();
            if listed != models {
                return false;
            }
        }
    }
    true
}

/// Runs `meridian ARGS` (no admin token: the test nodes' admin listeners
/// are on loopback); its stdout, asserting success.
fn models_cli(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .env_remove("MERIDIAN_ADMIN_TOKEN")
        .env_remove("MERIDIAN_ADMIN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "meridian {args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn every_node_lists_the_discovered_models_and_keeps_them_when_the_provider_fails() {
    let cluster = Cluster::start(3, Options::fast()).await;
    let lister = Mock::start(&["--model-list", "m1,m2"]).await;
    let upstreams = [
        (
            "openai-list",
            json!({ "base_url": lister.base_url(), "discover_models": true }),
        ),
        (
            "claude-list",
            json!({ "base_url": lister.base_url(), "kind": "anthropic", "discover_models": true }),
        ),
    ];
    for (id, body) in &upstreams {
        let reply = cluster
            .put(1, &format!("/admin/v1/upstreams/{id}"), body)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }

    // A new discovering upstream is fetched at once, not a refresh later.
    let listed = poll(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            everywhere(&cluster, &["openai-list", "claude-list"], &["m1", "m2"])
                .await
                .then_some(())
        },
    )
    .await;
    assert!(
        listed.is_some(),
        "not every node lists m1, m2: {}",
        cluster.get(1, "/admin/v1/catalogue").await.text()
    );
    let answer = cluster.get(2, "/admin/v1/catalogue").await.json();
    let entry = answer["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == "openai-list")
        .unwrap();
    assert_eq!(entry["discover"], true);
    assert!(entry["applied_unix_ms"].as_u64().is_some(), "{entry}");
    // The seeded upstream does not discover and holds no list.
    assert_eq!(discovered(&answer, "mock").unwrap(), Vec::<String>::new());

    // `meridian models` lists them as clients address them, and as JSON.
    let admin = format!("http://{}", cluster.node(3).admin);
    let table = models_cli(&["models", "--admin", &admin]);
    for addressed in ["openai-list/m1", "openai-list/m2", "claude-list/m1"] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(addressed) && l.ends_with("discovered")),
            "{table}"
        );
    }
    let json: Value = serde_json::from_str(&models_cli(&[
        "models", "--admin", &admin, "--output", "json",
    ]))
    .unwrap();
    assert_eq!(json["node"], 3);
    assert_eq!(discovered(&json, "claude-list").unwrap(), ["m1", "m2"]);

    // The provider goes away; a changed upstream is fetched again at once,
    // and that fetch fails.
    drop(lister);
    let moved = json!({ "base_url": upstreams[0].1["base_url"], "discover_models": true, "region": "elsewhere" });
    let reply = cluster
        .put(1, "/admin/v1/upstreams/openai-list", &moved)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let failed = poll(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            for id in 1..=3 {
                let answer = cluster.get(id, "/admin/v1/catalogue").await.json();
                let entry = answer["upstreams"]
                    .as_array()?
                    .iter()
                    .find(|u| u["id"] == "openai-list")?
                    .clone();
                if entry["last_fetch"]["ok"] == false {
                    return Some((id, entry));
                }
            }
            None
        },
    )
    .await;
    let (fetcher, entry) = failed.expect("the leader never tried the failing list");
    assert!(entry["last_fetch"]["error"].is_string(), "{entry}");
    assert!(
        everywhere(&cluster, &["openai-list", "claude-list"], &["m1", "m2"]).await,
        "a failed fetch changed the catalogue: {}",
        cluster.get(1, "/admin/v1/catalogue").await.text()
    );
    let log = cluster.log(fetcher);
    assert!(
        log.lines()
            .any(|l| l.contains("fetching the model list failed") && l.contains("openai-list")),
        "no warning naming the upstream in node {fetcher}'s log"
    );
}
