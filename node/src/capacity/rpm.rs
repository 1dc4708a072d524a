//! An upstream's `rpm`: the requests per minute the provider grants the
//! account, shared by every node. Each node sends at most its part,
//! `rpm / members` (at least one), counted in the tenants' sliding-window
//! counter ([`crate::tenants::limiter::Window`]) and divided among the
//! classes like a concurrency: the class at rank `r` may send its share of
//! this node's part. The split is even, not by demand: an idle region's
//! part goes unused, and the cluster never sends more than the account's
//! rpm (plus what members joining or leaving at once hold).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::tenants::limiter::{MINUTE_MS, Window};

/// This node's per-minute part of an account's `rpm` for a class with
/// `share`: an even split between `members` (at least one request per
/// node, so a limit below the number of nodes is usable everywhere).
pub fn allowance(rpm: u64, members: usize, share: f64) -> f64 {
    let part = (rpm as f64 / members.max(1) as f64).max(1.0);
    if share >= 1.0 {
        part
    } else if share > 0.0 {
        part * share
    } else {
        0.0
    }
}

/// The windows of the upstreams with an `rpm`, by id; kept across
/// configuration changes.
#[derive(Debug, Default)]
pub struct RpmWindows {
    windows: ArcSwap<HashMap<Arc<str>, Arc<Window>>>,
}

impl RpmWindows {
    /// The window of upstream `id`, made on first use.
    fn window(&self, id: &Arc<str>) -> Arc<Window> {
        if let Some(w) = self.windows.load().get(id) {
            return w.clone();
        }
        self.windows.rcu(|old| {
            let mut map = HashMap::clone(old);
            map.entry(id.clone()).or_default();
            map
        });
        self.windows.load().get(id).cloned().unwrap_or_default()
    }

    /// Whether one more request to upstream `id` fits `allowance` at
    /// `now_ms`.
    pub fn fits(&self, id: &Arc<str>, now_ms: u64, allowance: f64) -> bool {
        self.window(id).view(now_ms, MINUTE_MS).estimate() + 1.0 <= allowance
    }

    /// Counts one request to upstream `id` if it fits `allowance` at
    /// `now_ms`.
    pub fn take(&self, id: &Arc<str>, now_ms: u64, allowance: f64) -> bool {
        self.window(id)
            .try_add(now_ms, MINUTE_MS, 1, allowance)
            .is_ok()
    }
}
