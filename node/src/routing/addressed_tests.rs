//! Provider-addressed lookups: what wins over what, what a catalogue
//! admits, and the `/v1/models` entries, from a file and from the
//! cluster's state with a discovered catalogue.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use proto::config::Config;
use proto::state::{ClusterState, Command};

use super::super::fixtures::FakeEnv;
use super::super::{LocalTrust, NodeSettings, RoutingSnapshot};
use super::{Miss, decode_model_id};

const CONFIG: &str = r#"
[node]
id = 1
region = "us-east"

[proxy]
first_byte_timeout_ms = 1234
request_timeout_ms = 5678
max_attempts = 3

[[upstreams]]
id = "a"
base_url = "http://127.0.0.1:1/v1"
aliases = ["a-alias"]
models = ["m1", "m2"]
prices = { m1 = { input_per_mtok = 1.5, output_per_mtok = 2.5 } }

[[upstreams]]
id = "b"
base_url = "http://127.0.0.1:2/v1"
kind = "anthropic"
discover_models = true

[[routes]]
model = "fast"
tiers = [[{ upstream = "a", model = "m1" }]]

[[routes]]
model = "a/m1"
tiers = [[{ upstream = "b", model = "claude-x" }]]
hedge = { quantile = 0.9 }
"#;

fn config() -> Config {
    Config::from_toml(CONFIG).unwrap()
}

fn build() -> RoutingSnapshot {
    let _ = rustls::crypto::ring::default_provider().install_default();
    RoutingSnapshot::build(&config(), &FakeEnv(Default::default()), None).unwrap()
}

/// The fixture's state with `discovered` committed for upstream `b`.
fn from_state(discovered: &[&str]) -> RoutingSnapshot {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = config();
    let mut state = ClusterState::default();
    state.apply(&Command::Seed {
        upstreams: config.upstreams.clone(),
        routes: config.routes.clone(),
        keys: Vec::new(),
    });
    state.apply(&Command::PutCatalogue {
        upstream: "b".into(),
        models: discovered.iter().map(|m| m.to_string()).collect(),
    });
    assert_eq!(state.catalogue["b"].len(), discovered.len());
    RoutingSnapshot::from_state(
        &state,
        &NodeSettings::new(&config),
        &FakeEnv(Default::default()),
        None,
        &LocalTrust::new(&config),
    )
    .unwrap()
}

fn target_of(snap: &RoutingSnapshot, model: &str) -> (Arc<str>, String, String) {
    let route = snap.lookup(model).unwrap();
    assert_eq!(route.tiers.len(), 1);
    assert_eq!(route.tiers[0].len(), 1);
    let t = &route.tiers[0][0];
    (
        route.name.clone(),
        t.upstream.id.to_string(),
        t.model.to_string(),
    )
}

#[tokio::test]
async fn routes_win_then_prefixes_then_catalogues() {
    let snap = build();
    // A route is used by its name, even one that reads like an address.
    assert!(Arc::ptr_eq(
        &snap.lookup("fast").unwrap(),
        snap.route("fast").unwrap()
    ));
    let literal = snap.lookup("a/m1").unwrap();
    assert_eq!(literal.tiers[0][0].upstream.id.as_ref(), "b");
    assert!(literal.hedge.is_some());

    // An addressed name: one tier, one target, the [proxy] defaults, no hedge.
    let m2 = snap.lookup("a/m2").unwrap();
    assert_eq!(&*m2.name, "a/m2");
    assert_eq!(&*m2.tiers[0][0].model, "m2");
    assert_eq!(m2.tiers[0][0].model_json, "\"m2\"");
    assert_eq!(m2.first_byte_timeout.as_millis(), 1234);
    assert_eq!(m2.request_timeout.as_millis(), 5678);
    assert_eq!(m2.max_attempts, 3);
    assert!(m2.hedge.is_none());
    assert_eq!(m2.tiers[0][0].price.input_per_mtok, 0.0, "no price: none");

    // An alias reaches the same pre-built route; the route named `a/m1`
    // does not shadow `a-alias/m1`, which carries the declared price.
    assert!(Arc::ptr_eq(&snap.lookup("a-alias/m2").unwrap(), &m2));
    let priced = snap.lookup("a-alias/m1").unwrap();
    assert_eq!(priced.tiers[0][0].upstream.id.as_ref(), "a");
    assert_eq!(priced.tiers[0][0].price.input_per_mtok, 1.5);
    assert_eq!(priced.tiers[0][0].price.output_per_mtok, 2.5);

    // Outside a non-empty catalogue: the upstream and its count.
    assert_eq!(
        snap.lookup("a/m3").err(),
        Some(Miss::NotInCatalogue {
            upstream: Arc::from("a"),
            count: 2
        })
    );
    // An empty catalogue takes any model, slashes and all after the first.
    assert_eq!(
        target_of(&snap, "b/ft:gpt-4o:org/x"),
        (
            Arc::from("b/ft:gpt-4o:org/x"),
            "b".into(),
            "ft:gpt-4o:org/x".into()
        )
    );
    assert_eq!(target_of(&snap, "b/模型-ü").2, "模型-ü");
}

#[tokio::test]
async fn addressed_metrics_are_one_label_per_upstream() {
    let snap = build();
    let one = snap.lookup("b/x").unwrap();
    let two = snap.lookup("b/y").unwrap();
    assert!(Arc::ptr_eq(&one.metrics, &two.metrics));
    assert!(Arc::ptr_eq(
        &one.tiers[0][0].metrics,
        &two.tiers[0][0].metrics
    ));
    let m2 = snap.lookup("a/m2").unwrap();
    assert!(Arc::ptr_eq(
        &m2.metrics,
        &snap.metrics.route(&Arc::from("a/*"))
    ));
    let routes = snap.metrics.routes.lock().unwrap();
    let names: Vec<&str> = routes.keys().map(|k| &**k).collect();
    assert_eq!(names, ["a/*", "a/m1", "b/*", "fast"]);
}

#[tokio::test]
async fn hostile_names_miss_without_a_panic() {
    let snap = build();
    let long = format!("b/{}", "x".repeat(10_000));
    for (model, miss) in [
        ("", Miss::Unknown),
        ("/", Miss::Unknown),
        ("/b", Miss::Unknown),
        ("..", Miss::Unknown),
        ("../b", Miss::Unknown),
        ("c/x", Miss::Unknown),
        ("nomodel", Miss::Unknown),
        ("A/m1", Miss::Unknown),
        (
            "b/",
            Miss::BadModel {
                prefix: Arc::from("b"),
            },
        ),
        (
            "a-alias/",
            Miss::BadModel {
                prefix: Arc::from("a-alias"),
            },
        ),
        (
            "b/x\u{0}",
            Miss::BadModel {
                prefix: Arc::from("b"),
            },
        ),
        (
            "b/two words",
            Miss::BadModel {
                prefix: Arc::from("b"),
            },
        ),
        (
            "b/\n",
            Miss::BadModel {
                prefix: Arc::from("b"),
            },
        ),
        (
            &long,
            Miss::BadModel {
                prefix: Arc::from("b"),
            },
        ),
    ] {
        assert_eq!(snap.lookup(model).err(), Some(miss), "{model:?}");
    }
    // `b//x` is the model `/x`, which the provider may refuse.
    assert_eq!(target_of(&snap, "b//x").2, "/x");
    assert_eq!(target_of(&snap, "b/..").2, "..");
}

#[tokio::test]
async fn the_models_list_holds_routes_and_catalogues() {
    let snap = from_state(&["claude-z", "claude-y"]);
    let list: serde_json::Value = serde_json::from_slice(&snap.models_body).unwrap();
    let entries: Vec<(&str, &str)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["owned_by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        entries,
        [
            ("a/m1", "meridian"),
            ("a/m2", "a"),
            ("b/claude-y", "b"),
            ("b/claude-z", "b"),
            ("fast", "meridian"),
        ]
    );
    // The discovered catalogue now bounds `b`.
    assert_eq!(target_of(&snap, "b/claude-y").2, "claude-y");
    assert_eq!(
        snap.lookup("b/claude-x").err(),
        Some(Miss::NotInCatalogue {
            upstream: Arc::from("b"),
            count: 2
        })
    );
    // Without a catalogue from the cluster, `b` lists nothing.
    let list: serde_json::Value = serde_json::from_slice(&build().models_body).unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn entries_are_retrieved_by_name() {
    let snap = from_state(&["claude-y"]);
    let entry = |id: &str| snap.model_entry(id).map(|m| (m.id, m.owned_by));
    assert_eq!(entry("fast"), Ok(("fast".into(), "meridian".into())));
    assert_eq!(entry("a/m1"), Ok(("a/m1".into(), "meridian".into())));
    assert_eq!(entry("a-alias/m2"), Ok(("a-alias/m2".into(), "a".into())));
    assert_eq!(entry("b/claude-y"), Ok(("b/claude-y".into(), "b".into())));
    assert!(matches!(
        entry("b/claude-x"),
        Err(Miss::NotInCatalogue { .. })
    ));
    assert_eq!(entry("nope"), Err(Miss::Unknown));
}

#[test]
fn path_segments_are_percent_decoded() {
    assert_eq!(
        decode_model_id("deepseek%2Fdeepseek-chat"),
        "deepseek/deepseek-chat"
    );
    assert_eq!(decode_model_id("a/b"), "a/b");
    assert_eq!(decode_model_id("%e6%a8%a1"), "模");
    assert_eq!(decode_model_id("bad%zz%"), "bad%zz%");
    assert_eq!(decode_model_id("%ff"), "\u{fffd}");
}
