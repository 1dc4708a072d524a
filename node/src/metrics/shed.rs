//! `meridian_shed_total{class,reason}`: requests refused for capacity, by
//! their class and what was full.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::counter;

/// Why a request was shed, as labelled, in the order of [`ShedReason`].
pub const SHED_REASONS: [&str; 2] = ["upstream_capacity", "node_in_flight"];

/// What was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// No target of the route had a slot the class may use.
    UpstreamCapacity = 0,
    /// The node's `max_in_flight`, as divided among the classes.
    NodeInFlight = 1,
}

/// One class's counts.
#[derive(Debug)]
struct ClassCounts {
    name: Arc<str>,
    counts: [AtomicU64; SHED_REASONS.len()],
}

/// The shed counts of every class, by rank.
#[derive(Debug, Default)]
pub struct ShedCounts {
    classes: ArcSwap<Vec<ClassCounts>>,
}

impl ShedCounts {
    /// Starts counting for `names` (in rank order); what was counted for a
    /// class of the same name goes on.
    pub fn set_classes<'a>(&self, names: impl IntoIterator<Item = &'a Arc<str>>) {
        let old = self.classes.load();
        let fresh = names
            .into_iter()
            .map(|name| {
                let before = old.iter().find(|c| c.name == *name);
                ClassCounts {
                    name: name.clone(),
                    counts: std::array::from_fn(|i| {
                        AtomicU64::new(before.map_or(0, |c| c.counts[i].load(Ordering::Relaxed)))
                    }),
                }
            })
            .collect();
        self.classes.store(Arc::new(fresh));
    }

    /// Counts one request of the class at `rank` shed for `reason`.
    pub fn shed(&self, rank: usize, reason: ShedReason) {
        let classes = self.classes.load();
        if let Some(class) = classes.get(rank).or_else(|| classes.last()) {
            class.counts[reason as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many of the class at `rank` were shed for `reason`.
    pub fn count(&self, rank: usize, reason: ShedReason) -> u64 {
        self.classes
            .load()
            .get(rank)
            .map_or(0, |c| c.counts[reason as usize].load(Ordering::Relaxed))
    }

    /// Writes `meridian_shed_total`.
    pub fn encode(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut m = encoder.encode_descriptor(
            "meridian_shed",
            "Requests shed with 429 overloaded, by priority class and what was full \
             (upstream_capacity: no target had a slot the class may use; node_in_flight: \
             the class's share of proxy.max_in_flight)",
            None,
            MetricType::Counter,
        )?;
        for class in self.classes.load().iter() {
            for (reason, n) in SHED_REASONS.iter().zip(&class.counts) {
                let labels = [("class", &*class.name), ("reason", *reason)];
                counter(&mut m, &labels, n.load(Ordering::Relaxed))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn shed_counts_keep_going_across_a_new_class_list() {
        let counts = ShedCounts::default();
        let (pro, free) = (Arc::from("pro"), Arc::from("free"));
        counts.set_classes([&pro, &free]);
        counts.shed(1, ShedReason::UpstreamCapacity);
        counts.shed(1, ShedReason::UpstreamCapacity);
        counts.shed(9, ShedReason::NodeInFlight);
        assert_eq!(counts.count(1, ShedReason::UpstreamCapacity), 2);
        assert_eq!(
            counts.count(1, ShedReason::NodeInFlight),
            1,
            "past the list: the last"
        );
        counts.set_classes([&free]);
        assert_eq!(counts.count(0, ShedReason::UpstreamCapacity), 2);
    }
}
