//! `GET /admin/v1/catalogue`: every upstream's models as this node holds
//! them: declared in the replicated configuration, discovered by the leader
//! and committed, when this node applied the discovered list, and the last
//! fetch this node made itself (only a leader fetches).

use axum::Json;
use axum::extract::State;
use proto::api::admin::{CatalogueAnswer, UpstreamCatalogue};
use proto::state::ClusterState;

use super::AdminState;
use crate::catalogue::Ledger;

/// `GET /admin/v1/catalogue`.
pub(super) async fn catalogue(State(state): State<AdminState>) -> Json<CatalogueAnswer> {
    let applied = state.cluster.applied();
    Json(CatalogueAnswer {
        node: state.node_id,
        region: state.region.to_string(),
        upstreams: upstreams(&applied.state, &state.catalogue),
    })
}

/// One entry per upstream of the applied state, in id order.
fn upstreams(state: &ClusterState, ledger: &Ledger) -> Vec<UpstreamCatalogue> {
    state
        .upstreams
        .values()
        .map(|u| {
            let discovered = state.catalogue.get(&u.id).cloned().unwrap_or_default();
            UpstreamCatalogue {
                id: u.id.clone(),
                discover: u.discover_models,
                declared: u.models.clone(),
                applied_unix_ms: if discovered.is_empty() {
                    None
                } else {
                    ledger.applied_at(&u.id)
                },
                discovered,
                last_fetch: ledger.last_fetch(&u.id),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::BTreeMap;

    use proto::config::UpstreamConfig;

    use super::*;

    #[test]
    fn each_upstream_shows_declared_and_discovered_models() {
        let mut state = ClusterState::default();
        for (id, discover, declared) in [("a", true, vec![]), ("b", false, vec!["x".to_owned()])] {
            state.upstreams.insert(
                id.to_owned(),
                UpstreamConfig {
                    id: id.to_owned(),
                    base_url: format!("http://{id}/v1"),
                    discover_models: discover,
                    models: declared,
                    ..UpstreamConfig::default()
                },
            );
        }
        state.catalogue =
            BTreeMap::from([("a".to_owned(), vec!["m1".to_owned(), "m2".to_owned()])]);
        let ledger = Ledger::default();
        ledger.note_applied(&state.catalogue, 1_000);
        let shown = upstreams(&state, &ledger);
        assert_eq!(shown.len(), 2);
        assert_eq!((shown[0].id.as_str(), shown[0].discover), ("a", true));
        assert_eq!(shown[0].discovered, ["m1", "m2"]);
        assert_eq!(shown[0].applied_unix_ms, Some(1_000));
        assert_eq!(shown[1].declared, ["x"]);
        assert!(shown[1].discovered.is_empty() && shown[1].applied_unix_ms.is_none());
    }
}
