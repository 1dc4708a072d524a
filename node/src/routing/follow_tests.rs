#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proto::config::Config;
use proto::state::{ClusterState, Command};
use proto::tenancy::KeyLimits;

use super::super::fixtures::{CLIENT_KEY, CONFIG, ENV, FakeEnv, app_key, applied};
use super::*;
use crate::metrics::Metrics;

/// The cluster's state once the fixture's upstreams and routes are seeded
/// with key `app`, limited to 5 tokens a minute.
fn seeded(config: &Config) -> ClusterState {
    let mut state = ClusterState::default();
    state.apply(&Command::Seed {
        upstreams: config.upstreams.clone(),
        routes: config.routes.clone(),
        keys: vec![app_key(KeyLimits {
            tpm: Some(5),
            ..KeyLimits::default()
        })],
    });
    state
}

/// The race behind a flaky `tpm` test: the table that admits a new key was
/// swapped in before the key's limits were known, so its first requests
/// went unlimited and uncharged. Whenever the served table knows the key,
/// its limits must be known too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_keys_limits_are_known_before_a_table_admits_it() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::from_toml(CONFIG).unwrap();
    let mut own = Config::from_toml(CONFIG).unwrap();
    own.upstreams.clear();
    own.routes.clear();
    own.keys.clear();
    let env = Arc::new(FakeEnv(ENV.into_iter().collect()));
    let node = NodeSettings::new(&own);
    let trust = Arc::new(LocalTrust::new(&config));
    let empty = applied(ClusterState::default(), None);
    let tenants = Tenants::new(
        1,
        0,
        Duration::from_secs(1),
        Arc::new(Metrics::default()),
        empty.clone(),
        1,
    );
    let first = build_applied(&node, &empty, env.as_ref(), None, &trust).unwrap();
    let snapshot = Arc::new(ArcSwap::from_pointee(first));
    let (publish, subscribe) = watch::channel(empty.clone());
    let (built, routing_built) = watch::channel(None);
    let (_stop, stop) = watch::channel(false);
    let follower = tokio::spawn(follow_applied(
        Follow {
            node,
            trust,
            secrets: env,
            tenants: tenants.clone(),
        },
        empty,
        subscribe,
        snapshot.clone(),
        built,
        stop,
    ));

    let mut headers = http::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {CLIENT_KEY}").parse().unwrap(),
    );
    assert!(snapshot.load().keys.authenticate(&headers).is_err());
    publish.send_replace(applied(seeded(&config), Some(3)));
    // Read the served table as often as possible while it changes: each
    // time it admits the key, the key's limits must already be known.
    let watched = async {
        loop {
            let built = *routing_built.borrow() >= Some(3);
            if snapshot.load().keys.authenticate(&headers).is_ok() {
                let key = tenants.key("app").expect("the key's limits are known");
                assert!(key.is_rate_limited());
            }
            if built {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), watched)
        .await
        .unwrap();
    assert_eq!(
        &*snapshot.load().keys.authenticate(&headers).unwrap(),
        "app"
    );
    follower.abort();
}
