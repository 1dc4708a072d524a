//! The live health of every upstream in the routing table, by id: the one
//! place a [`Live`] is made, so the recorder, the board follower and every
//! routing table built in turn share it.
//!
//! A routing rebuild asks the registry for each upstream's `Live`
//! ([`Registry::rebuild`]) and publishes the new set once the table is
//! built: an upstream still there keeps its `Live` (its circuit, window
//! summary, shared estimate and attempts in flight survive a changed
//! `base_url` or key), a new one gets a fresh `Live`, and one that left is
//! retired, so the recorder forgets it and a later upstream of the same id
//! starts fresh. Rebuilding therefore neither loses nor duplicates health.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::live::Live;
use crate::metrics::Metrics;

/// Upstream id → its live health, as of the last routing table built.
#[derive(Default)]
pub struct Registry {
    current: ArcSwap<HashMap<Arc<str>, Arc<Live>>>,
}

impl Registry {
    /// The live health of an upstream of the current table.
    pub fn get(&self, id: &str) -> Option<Arc<Live>> {
        self.current.load().get(id).cloned()
    }

    /// Every upstream of the current table with its live health.
    pub fn current(&self) -> Arc<HashMap<Arc<str>, Arc<Live>>> {
        self.current.load_full()
    }

    /// Starts the set of a new routing table; nothing changes until
    /// [`Rebuild::publish`], so a table that fails to build leaves the
    /// registry as it was.
    pub fn rebuild<'a>(&'a self, metrics: &'a Metrics) -> Rebuild<'a> {
        Rebuild {
            registry: self,
            metrics,
            previous: self.current.load_full(),
            next: HashMap::new(),
        }
    }
}

/// The set of a routing table being built.
pub struct Rebuild<'a> {
    registry: &'a Registry,
    metrics: &'a Metrics,
    previous: Arc<HashMap<Arc<str>, Arc<Live>>>,
    next: HashMap<Arc<str>, Arc<Live>>,
}

impl Rebuild<'_> {
    /// The live health of upstream `id` in the new table: the current
    /// table's when it has that id, else a fresh one.
    pub fn live(&mut self, id: &Arc<str>) -> Arc<Live> {
        if let Some(live) = self.next.get(id) {
            return live.clone();
        }
        let live = match self.previous.get(id) {
            Some(live) => live.clone(),
            None => Arc::new(Live::new(id.clone(), self.metrics.upstream(id))),
        };
        self.next.insert(id.clone(), live.clone());
        live
    }

    /// Makes the new set current and retires every upstream that left.
    pub fn publish(self) {
        for (id, live) in self.previous.iter() {
            if !self.next.get(id).is_some_and(|n| Arc::ptr_eq(n, live)) {
                live.retire();
            }
        }
        self.registry.current.store(Arc::new(self.next));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::health::breaker::Circuit;

    fn build(registry: &Registry, metrics: &Metrics, ids: &[&str]) -> Vec<Arc<Live>> {
        let mut rebuild = registry.rebuild(metrics);
        let lives = ids.iter().map(|id| rebuild.live(&Arc::from(*id))).collect();
        rebuild.publish();
        lives
    }

    #[test]
    fn health_survives_a_rebuild() {
        let (registry, metrics) = (Registry::default(), Metrics::default());
        let first = build(&registry, &metrics, &["a", "b"]);
        first[0].set_circuit(Circuit::Open, false);
        let second = build(&registry, &metrics, &["a", "b"]);
        assert!(Arc::ptr_eq(&first[0], &second[0]));
        assert!(Arc::ptr_eq(&first[1], &second[1]));
        assert_eq!(second[0].circuit(), Circuit::Open);
        assert!(!first[0].retired() && !first[1].retired());
    }

    #[test]
    fn one_id_has_one_live_in_a_table() {
        let (registry, metrics) = (Registry::default(), Metrics::default());
        let lives = build(&registry, &metrics, &["a", "a"]);
        assert!(Arc::ptr_eq(&lives[0], &lives[1]));
        assert_eq!(registry.current().len(), 1);
    }

    #[test]
    fn a_removed_upstream_is_dropped_and_a_re_added_one_starts_fresh() {
        let (registry, metrics) = (Registry::default(), Metrics::default());
        let first = build(&registry, &metrics, &["a", "b"]);
        first[1].set_circuit(Circuit::Open, false);
        build(&registry, &metrics, &["a"]);
        assert!(first[1].retired());
        assert!(registry.get("b").is_none());
        assert!(!first[0].retired());
        let again = build(&registry, &metrics, &["a", "b"]);
        assert!(!Arc::ptr_eq(&first[1], &again[1]));
        assert_eq!(again[1].circuit(), Circuit::Closed);
        assert!(!again[1].retired());
        assert!(Arc::ptr_eq(&first[0], &again[0]));
    }

    #[test]
    fn nothing_changes_until_the_table_is_published() {
        let (registry, metrics) = (Registry::default(), Metrics::default());
        let first = build(&registry, &metrics, &["a"]);
        let mut failed = registry.rebuild(&metrics);
        let _ = failed.live(&Arc::from("b"));
        drop(failed);
        assert!(registry.get("b").is_none());
        assert!(Arc::ptr_eq(&registry.get("a").unwrap(), &first[0]));
        assert!(!first[0].retired());
    }

    #[test]
    fn counters_are_shared_with_the_metrics_registry() {
        let (registry, metrics) = (Registry::default(), Metrics::default());
        let lives = build(&registry, &metrics, &["a"]);
        assert!(Arc::ptr_eq(
            &lives[0].metrics,
            &metrics.upstream(&Arc::from("a"))
        ));
    }
}
