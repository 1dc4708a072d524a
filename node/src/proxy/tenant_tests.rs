#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The request path's use of the tenants, through `Proxy::handle`.

use bytes::Bytes;
use proto::config::Config;
use proto::state::ClusterState;
use proto::tenancy::KeyLimits;

use super::*;
use crate::health::spawn_recorder;
use crate::metrics::Metrics;
use crate::routing::fixtures::{self, CLIENT_KEY, CONFIG, ENV, app_key, applied};
use crate::settings::Settings;

/// The cluster's state holding key `app` (the fixture's) with an `rpm`.
fn with_key() -> ClusterState {
    let mut state = ClusterState::default();
    state.keys.insert(
        "app".into(),
        app_key(KeyLimits {
            rpm: Some(100),
            ..KeyLimits::default()
        }),
    );
    state
}

async fn models(proxy: &Arc<Proxy>) -> Response<ProxyBody> {
    let request = Request::get("/v1/models")
        .header("authorization", format!("Bearer {CLIENT_KEY}"))
        .body(RequestBody::whole(Bytes::new()))
        .unwrap();
    proxy.clone().handle(request).await.unwrap()
}

/// A key being deleted: its limits are dropped before the routing table
/// stops admitting it (`routing::follow`). In between, the table's word
/// alone must not serve it with no limit and no charge.
#[tokio::test]
async fn a_key_the_table_admits_but_the_tenants_dropped_is_refused() {
    let snapshot = fixtures::build(&ENV).unwrap();
    let settings = Settings::new(&Config::from_toml(CONFIG).unwrap()).unwrap();
    let (health, _reports) = spawn_recorder(settings.recorder);
    let tenants = Tenants::new(
        1,
        0,
        Duration::from_secs(1),
        Arc::new(Metrics::default()),
        applied(with_key(), None),
        1,
    );
    let proxy = Arc::new(
        Proxy::new(
            Arc::new(ArcSwap::from_pointee(snapshot)),
            health,
            settings.policy,
        )
        .with_tenants(tenants.clone()),
    );

    let known = models(&proxy).await;
    assert_eq!(known.status(), 200);
    assert!(
        known.headers().contains_key("x-ratelimit-limit-requests"),
        "a known key is served with its limits"
    );

    tenants.rebuild(
        applied(ClusterState::default(), None),
        crate::tenants::now_ms(),
    );
    let dropped = models(&proxy).await;
    assert_eq!(dropped.status(), 401);
    assert!(!dropped.headers().contains_key("x-ratelimit-limit-requests"));
}
