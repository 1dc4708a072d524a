//! The routing table's tests: what a request reads of a snapshot, and how a
//! snapshot is built from a file or from the cluster's state and rebuilt.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use proto::config::{Config, SecretPolicy};
use proto::state::{ClusterState, Command, KeyRecord};

use super::build::build_upstream;
use super::fixtures::{CONFIG, FakeEnv, build};
use super::*;
use crate::auth::hash_key;
use crate::cluster::hex;

#[tokio::test]
async fn streams_leave_the_probe_of_a_half_open_circuit_to_plain_requests() {
    let snap = build(&[
        ("CLIENT_KEY", "client-key-0123456789"),
        ("A_KEY", "ka"),
        ("B_KEY", "kb"),
    ])
    .unwrap();
    let target = &snap.route("fast").unwrap().tiers[0][0];
    let policy = Policy::default();
    target.upstream.live.set_circuit(Circuit::HalfOpen, true);
    assert_eq!(target.stats(&policy, false).circuit, Circuit::HalfOpen);
    assert_eq!(target.stats(&policy, true).circuit, Circuit::Open);
    assert!(target.upstream.live.take_probe());
    assert_eq!(target.stats(&policy, false).circuit, Circuit::Open);
}

#[tokio::test]
async fn estimates_blend_own_samples_by_freshness_with_the_shared_figure() {
    let snap = build(&[
        ("CLIENT_KEY", "client-key-0123456789"),
        ("A_KEY", "ka"),
        ("B_KEY", "kb"),
    ])
    .unwrap();
    let target = &snap.route("fast").unwrap().tiers[0][0];
    let live = &target.upstream.live;
    let policy = Policy::default();
    let q = |count, p99| Quantiles {
        count,
        p99,
        ..Quantiles::default()
    };
    let window = |count, p99| crate::health::WindowSummary {
        ttfb_ms: q(count, p99),
        ..crate::health::WindowSummary::default()
    };
    assert_eq!(
        target.ttfb_estimate(&policy),
        None,
        "nothing known: the prior"
    );
    live.publish_window(window(3, 40.0), Default::default());
    assert_eq!(target.ttfb_estimate(&policy), Some(q(3, 40.0)));
    // Own samples with no fresh weight behind them: the cluster's figure.
    live.publish_shared(Some(q(500, 900.0)));
    assert_eq!(target.ttfb_estimate(&policy), Some(q(500, 900.0)));
    // Three fresh own samples (far fewer than `min_samples`) lead.
    let mut fresh = crate::health::blend::Freshness::default();
    let now = cooldown::now_ms();
    for _ in 0..3 {
        fresh.add(now, policy.blend.half_life_ms);
    }
    live.publish_window(window(3, 40.0), fresh);
    let blended = target.ttfb_estimate(&policy).unwrap();
    assert_eq!(blended.count, 3);
    assert!(blended.p99 < 100.0, "{blended:?}");
    assert!(blended.p99 > 40.0, "{blended:?}");
    let scored = target.stats(&policy, false).p99_ms.unwrap();
    assert!((scored - blended.p99).abs() < 1.0, "{scored} {blended:?}");
}

#[tokio::test]
async fn builds_uris_keys_and_routes() {
    let snap = build(&[
        ("CLIENT_KEY", "client-key-0123456789"),
        ("A_KEY", "ka"),
        ("B_KEY", "kb"),
    ])
    .unwrap();
    let fast = snap.route("fast").unwrap();
    assert_eq!(fast.tiers.len(), 2);
    let a = &fast.tiers[0][0].upstream;
    assert_eq!(
        a.uri(Endpoint::ChatCompletions),
        "http://127.0.0.1:1/v1/chat/completions"
    );
    let (name, value) = a.auth_header().unwrap();
    assert_eq!(name, "authorization");
    assert_eq!(value, "Bearer ka");
    assert!(value.is_sensitive());
    assert!(!format!("{value:?}").contains("ka"));
    let b = &fast.tiers[1][0].upstream;
    assert_eq!(
        b.uri(Endpoint::Embeddings),
        "https://b.example/openai/v1/embeddings"
    );
    assert_eq!(b.auth_header().unwrap().0, "api-key");
    assert_eq!(fast.tiers[1][0].model_json, "\"b-small\"");
    assert_eq!(fast.tiers[1][0].price.input_per_mtok, 1.5);
    assert!(snap.ready());
    let models: serde_json::Value = serde_json::from_slice(&snap.models_body).unwrap();
    assert_eq!(models["data"][0]["id"], "b-only");
    assert_eq!(models["data"][1]["id"], "fast");
    // Byte for byte what the node wrote before `proto::api::openai::ModelList`.
    assert_eq!(
        std::str::from_utf8(&snap.models_body).unwrap(),
        r#"{"object":"list","data":[{"id":"b-only","object":"model","created":0,"owned_by":"meridian"},{"id":"fast","object":"model","created":0,"owned_by":"meridian"}]}"#
    );
}

#[tokio::test]
async fn missing_provider_key_makes_upstream_unusable() {
    let snap = build(&[("CLIENT_KEY", "client-key-0123456789"), ("A_KEY", "ka")]).unwrap();
    assert!(snap.route("fast").unwrap().usable());
    assert!(!snap.route("b-only").unwrap().usable());
    assert!(matches!(snap.upstreams[1].key_state, KeyState::Missing(ref m) if m.contains("B_KEY")));
}

fn upstream_with(extra: &str, secrets: &str) -> Upstream {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::from_toml(&format!(
        "[node]\nid = 1\nregion = \"r\"\n\n{secrets}\n[[upstreams]]\nid = \"u\"\nbase_url = \"http://127.0.0.1:1/v1\"\n{extra}\n"
    ))
    .unwrap();
    // The reference arrives through the cluster: the node's own file
    // names no upstream, so only [secrets] decides.
    let mut own = config.clone();
    own.upstreams.clear();
    let env = FakeEnv(
        [
            ("ALLOWED_KEY", "sk-allowed"),
            ("BROKEN_KEY", "sk-broken\nX-Injected: 1"),
            ("MERIDIAN_ADMIN_TOKEN", "admin-token-0123456789"),
        ]
        .into_iter()
        .collect(),
    );
    build_upstream(
        &config.upstreams[0],
        &config.proxy,
        &env,
        &SecretPolicy::new(&own),
        Arc::new(Live::new(Arc::from("u"), Arc::default())),
    )
    .unwrap()
}

fn disabled_field(u: &Upstream) -> &'static str {
    u.disabled
        .as_ref()
        .expect("the upstream should be disabled")
        .field
}

#[tokio::test]
async fn what_a_node_cannot_use_disables_that_upstream_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let secrets = format!(
        "[secrets]\nenv = [\"ALLOWED_KEY\", \"BROKEN_KEY\"]\nenv_prefix = \"MERIDIAN_\"\ndir = \"{}\"\n",
        keys.display()
    );
    let write = |name: &str, text: &str| {
        let path = keys.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let good = write("good", "sk-from-file\n");
    let newline = write("newline", "sk-first\nsk-second\n");
    let empty = write("empty", " \n");
    let outside = dir.path().join("outside");
    std::fs::write(&outside, "sk-outside").unwrap();
    std::os::unix::fs::symlink(&outside, keys.join("link-out")).unwrap();
    let not_pem = write("not-pem", "hello");

    let ok = upstream_with(&format!("api_key_file = \"{good}\""), &secrets);
    assert!(ok.usable(), "{:?}", ok.disabled);
    assert_eq!(ok.auth_header().unwrap().1, "Bearer sk-from-file");
    assert!(upstream_with("api_key_env = \"ALLOWED_KEY\"", &secrets).usable());

    for (extra, field) in [
        (format!("api_key_file = \"{newline}\""), "api_key_file"),
        (format!("api_key_file = \"{empty}\""), "api_key_file"),
        (
            format!("api_key_file = \"{}\"", keys.join("absent").display()),
            "api_key_file",
        ),
        (
            format!("api_key_file = \"{}\"", keys.join("link-out").display()),
            "api_key_file",
        ),
        (
            format!("api_key_file = \"{}\"", outside.display()),
            "api_key_file",
        ),
        ("api_key_file = \"/etc/passwd\"".to_owned(), "api_key_file"),
        ("api_key_env = \"BROKEN_KEY\"".to_owned(), "api_key_env"),
        ("api_key_env = \"UNLISTED_KEY\"".to_owned(), "api_key_env"),
        (
            "api_key_env = \"MERIDIAN_ADMIN_TOKEN\"".to_owned(),
            "api_key_env",
        ),
        ("ca_file = \"/surely/not/here.pem\"".to_owned(), "ca_file"),
        (format!("ca_file = \"{not_pem}\""), "ca_file"),
        ("ca_file = \"/dev/zero\"".to_owned(), "ca_file"),
    ] {
        let u = upstream_with(&extra, &secrets);
        assert_eq!(disabled_field(&u), field, "{extra}");
        assert!(u.auth_header().is_none(), "{extra}: no key is sent");
        let reason = &u.disabled.as_ref().unwrap().reason;
        for secret in ["sk-first", "sk-outside", "sk-broken", "admin-token"] {
            assert!(!reason.contains(secret), "{extra}: {reason}");
        }
    }
    // Nothing is allowed without [secrets].
    assert_eq!(
        disabled_field(&upstream_with(&format!("api_key_file = \"{good}\""), "")),
        "api_key_file"
    );
}

/// A `ca_file` that reaches a node through the replicated state is opened
/// only where this node's own `[secrets] dir` allows it, as a key file:
/// a valid CA anywhere else disables the upstream here, unread.
#[tokio::test]
async fn an_applied_ca_file_outside_the_secrets_dir_is_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let secrets = format!("[secrets]\ndir = \"{}\"\n", keys.display());
    let inside = harness::certs::UpstreamCa::new(&keys, "in").unwrap();
    let outside = harness::certs::UpstreamCa::new(dir.path(), "out").unwrap();
    std::os::unix::fs::symlink(outside.pem(), keys.join("link-out.pem")).unwrap();
    let ca = |path: &std::path::Path| format!("ca_file = \"{}\"", path.display());

    let ok = upstream_with(&ca(inside.pem()), &secrets);
    assert!(ok.usable(), "{:?}", ok.disabled);
    for (extra, secrets) in [
        (ca(outside.pem()), secrets.as_str()),
        (ca(&keys.join("link-out.pem")), secrets.as_str()),
        (ca(inside.pem()), ""),
    ] {
        let u = upstream_with(&extra, secrets);
        assert_eq!(disabled_field(&u), "ca_file", "{extra} with {secrets:?}");
        let reason = &u.disabled.as_ref().unwrap().reason;
        assert!(reason.contains("[secrets] dir"), "{extra}: {reason}");
    }
}

#[tokio::test]
async fn one_unusable_upstream_leaves_the_rest_of_the_table() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::from_toml(&CONFIG.replace(
        "auth = \"api-key\"",
        "auth = \"api-key\"\nca_file = \"/surely/not/here.pem\"",
    ))
    .unwrap();
    let env = env();
    let snap = RoutingSnapshot::build(&config, &env, None).unwrap();
    assert!(snap.route("fast").unwrap().usable());
    assert!(!snap.route("b-only").unwrap().usable());
    assert_eq!(disabled_field(&snap.upstreams[1]), "ca_file");
    // A disabled upstream is built again at the next change.
    let again = RoutingSnapshot::build(&config, &env, Some(&snap)).unwrap();
    assert!(Arc::ptr_eq(&snap.upstreams[0], &again.upstreams[0]));
    assert!(!Arc::ptr_eq(&snap.upstreams[1], &again.upstreams[1]));
}

#[tokio::test]
async fn rebuild_keeps_unchanged_upstreams() {
    let env = env();
    let config = Config::from_toml(CONFIG).unwrap();
    let first = RoutingSnapshot::build(&config, &env, None).unwrap();
    let mut changed = config.clone();
    changed.upstreams[1].base_url = "https://c.example/v1".into();
    let second = RoutingSnapshot::build(&changed, &env, Some(&first)).unwrap();
    assert!(Arc::ptr_eq(&first.upstreams[0], &second.upstreams[0]));
    assert!(!Arc::ptr_eq(&first.upstreams[1], &second.upstreams[1]));
}

#[tokio::test]
async fn snapshots_share_the_scrubber_until_the_keys_change() {
    use crate::scrub::REDACTED;
    // Keys of two shapes, as the scrubber's own tests use.
    const SK: &str = "sk-proj-4f9Xq2LmT7vB8nR1cD3eH6kP";
    const B64: &str = "UPSECRETB+x/y=Zq81";
    struct Env;
    impl Secrets for Env {
        fn env(&self, name: &str) -> Option<String> {
            match name {
                "A_KEY" => Some(B64.to_owned()),
                "B_KEY" => Some(SK.to_owned()),
                _ => None,
            }
        }
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let base = Config::from_toml(
        "[node]\nid = 1\nregion = \"r\"\n\n[[upstreams]]\nid = \"a\"\nbase_url = \"http://127.0.0.1:1/v1\"\nauth = \"api-key\"\n\n[[routes]]\nmodel = \"m\"\ntiers = [[{ upstream = \"a\", model = \"x\" }]]\n",
    )
    .unwrap();
    let config = |model: &str, var: &str| {
        let mut c = base.clone();
        c.routes[0].model = model.to_owned();
        c.upstreams[0].api_key_env = Some(var.to_owned());
        c
    };
    let first = RoutingSnapshot::build(&config("m", "A_KEY"), &Env, None).unwrap();
    assert_eq!(first.scrub.text(B64), REDACTED);
    let second = RoutingSnapshot::build(&config("n", "A_KEY"), &Env, Some(&first)).unwrap();
    assert!(Arc::ptr_eq(&first.scrub, &second.scrub));
    let third = RoutingSnapshot::build(&config("n", "B_KEY"), &Env, Some(&second)).unwrap();
    assert!(!Arc::ptr_eq(&second.scrub, &third.scrub));
    assert_eq!(third.scrub.text(SK), REDACTED);
    assert_eq!(third.scrub.text(B64), B64, "a key no longer held");
}

fn env() -> FakeEnv {
    FakeEnv(
        [
            ("CLIENT_KEY", "client-key-0123456789"),
            ("A_KEY", "ka"),
            ("B_KEY", "kb"),
        ]
        .into_iter()
        .collect(),
    )
}

/// The cluster's state holding the fixture's upstreams and routes, and its
/// client key as the cluster stores it (hashed, in hex).
fn state_of(config: &Config) -> ClusterState {
    let mut state = ClusterState::default();
    let seed = Command::Seed {
        upstreams: config.upstreams.clone(),
        routes: config.routes.clone(),
        keys: vec![KeyRecord {
            name: "app".into(),
            sha256: hex(&hash_key("client-key-0123456789")),
            limits: Default::default(),
        }],
    };
    state.apply(&seed);
    state
}

#[tokio::test]
async fn builds_from_the_cluster_state_and_the_node_settings() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::from_toml(CONFIG).unwrap();
    let state = state_of(&config);
    // The node's own file names no upstream, route or key: they all come
    // from the cluster.
    let mut own = Config::from_toml(CONFIG).unwrap();
    own.upstreams.clear();
    own.routes.clear();
    own.keys.clear();
    own.node.region = "eu-west".into();
    let snap = RoutingSnapshot::from_state(
        &state,
        &NodeSettings::new(&own),
        &env(),
        None,
        &LocalTrust::new(&config),
    )
    .unwrap();
    assert_eq!(snap.region, "eu-west");
    let ids: Vec<&str> = snap.upstreams.iter().map(|u| &*u.id).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(snap.route("fast").unwrap().usable());
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "authorization",
        "Bearer client-key-0123456789".parse().unwrap(),
    );
    assert_eq!(&*snap.keys.authenticate(&headers).unwrap(), "app");
    let models: serde_json::Value = serde_json::from_slice(&snap.models_body).unwrap();
    assert_eq!(models["data"][0]["id"], "b-only");
    // Built from a file or from the same state, the table is the same.
    let from_file = RoutingSnapshot::build(&config, &env(), None).unwrap();
    assert_eq!(from_file.models_body, snap.models_body);
    assert_eq!(from_file.upstreams.len(), snap.upstreams.len());
}

#[tokio::test]
async fn a_changed_upstream_keeps_its_health_and_a_removed_one_loses_it() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::from_toml(CONFIG).unwrap();
    let first = RoutingSnapshot::build(&config, &env(), None).unwrap();
    first.upstreams[1].live.set_circuit(Circuit::Open, false);
    let _in_flight = InFlight::new(first.upstreams[1].clone());

    // A new key header means a new `Upstream`, with the same live health.
    let mut changed = config.clone();
    changed.upstreams[1].base_url = "https://c.example/v1".into();
    let second = RoutingSnapshot::build(&changed, &env(), Some(&first)).unwrap();
    assert!(!Arc::ptr_eq(&first.upstreams[1], &second.upstreams[1]));
    assert!(Arc::ptr_eq(
        &first.upstreams[1].live,
        &second.upstreams[1].live
    ));
    assert_eq!(second.upstreams[1].live.circuit(), Circuit::Open);
    assert_eq!(
        second.upstreams[1]
            .live
            .in_flight
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(Arc::ptr_eq(&first.registry, &second.registry));

    // Removed, then back: fresh health.
    let mut without = changed.clone();
    without.routes.retain(|r| r.model == "fast");
    without.routes[0].tiers.truncate(1);
    without.upstreams.truncate(1);
    let third = RoutingSnapshot::build(&without, &env(), Some(&second)).unwrap();
    assert!(second.upstreams[1].live.retired());
    assert!(third.registry.get("b").is_none());
    let fourth = RoutingSnapshot::build(&changed, &env(), Some(&third)).unwrap();
    assert!(!Arc::ptr_eq(
        &second.upstreams[1].live,
        &fourth.upstreams[1].live
    ));
    assert_eq!(fourth.upstreams[1].live.circuit(), Circuit::Closed);
    assert!(Arc::ptr_eq(
        &first.upstreams[0].live,
        &fourth.upstreams[0].live
    ));
}

#[tokio::test]
async fn a_table_that_fails_to_build_leaves_the_health_as_it_was() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::from_toml(CONFIG).unwrap();
    let first = RoutingSnapshot::build(&config, &env(), None).unwrap();
    let mut broken = config.clone();
    broken.upstreams.truncate(1);
    assert!(RoutingSnapshot::build(&broken, &env(), Some(&first)).is_err());
    assert!(!first.upstreams[1].live.retired());
    assert!(first.registry.get("b").is_some());
}

#[tokio::test]
async fn a_native_anthropic_upstream_takes_its_key_as_x_api_key_and_is_scrubbed() {
    use crate::scrub::REDACTED;
    let _ = rustls::crypto::ring::default_provider().install_default();
    const KEY: &str = "sk-ant-api03-Zx81Qm4TvL0pR7wN2yB5cH9kD3fG6jA";
    let config = proto::config::Config::from_toml(
        r#"
[node]
id = 1
region = "us-east"

[[upstreams]]
id = "claude"
base_url = "https://api.anthropic.example/v1"
api_key_env = "ANTHROPIC_KEY"
kind = "anthropic"

[[routes]]
model = "m"
tiers = [[{ upstream = "claude", model = "claude-x" }]]
"#,
    )
    .unwrap();
    let snap = RoutingSnapshot::build(
        &config,
        &super::fixtures::FakeEnv([("ANTHROPIC_KEY", KEY)].into_iter().collect()),
        None,
    )
    .unwrap();
    let upstream = &snap.route("m").unwrap().tiers[0][0].upstream;
    let (name, value) = upstream.auth_header().unwrap();
    assert_eq!(name, "x-api-key");
    assert_eq!(value, KEY);
    assert!(value.is_sensitive());
    assert_eq!(
        upstream.uri(Endpoint::Messages),
        "https://api.anthropic.example/v1/messages"
    );
    // An upstream that echoes its key has it taken out, as for any other.
    let echoed = format!("invalid x-api-key: {KEY}");
    assert_eq!(
        snap.scrub.text(&echoed),
        format!("invalid x-api-key: {REDACTED}")
    );
}
