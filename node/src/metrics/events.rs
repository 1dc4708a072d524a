//! The recent failovers the dashboard lists.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::lock;

/// How many failovers [`Events`] keeps for the dashboard.
pub const EVENTS_KEPT: usize = 50;

/// One failover, as the dashboard lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverEvent {
    /// Increasing number of the event on this node.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The request's id, as in its log lines.
    pub request_id: String,
    /// The route.
    pub route: Arc<str>,
    /// The upstream whose attempt failed.
    pub from: Arc<str>,
    /// The upstream tried next.
    pub to: Arc<str>,
    /// Why the attempt failed, as the request's log line says.
    pub reason: String,
}

/// The last [`EVENTS_KEPT`] failovers. Written only on a failover (rare),
/// so a short lock is fine there; never touched by an answered request.
#[derive(Debug, Default)]
pub struct Events {
    ring: Mutex<VecDeque<FailoverEvent>>,
    seq: AtomicU64,
}

impl Events {
    /// Adds an event, dropping the oldest beyond [`EVENTS_KEPT`].
    pub fn push(
        &self,
        request_id: &str,
        route: &Arc<str>,
        from: &Arc<str>,
        to: &Arc<str>,
        reason: &str,
    ) {
        let event = FailoverEvent {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            request_id: request_id.to_owned(),
            route: route.clone(),
            from: from.clone(),
            to: to.clone(),
            reason: reason.to_owned(),
        };
        let mut ring = lock(&self.ring);
        if ring.len() >= EVENTS_KEPT {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    /// The events kept, newest first.
    pub fn recent(&self) -> Vec<FailoverEvent> {
        lock(&self.ring).iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn events_keep_the_newest() {
        let e = Events::default();
        let (r, a, b): (Arc<str>, Arc<str>, Arc<str>) = ("r".into(), "a".into(), "b".into());
        for i in 0..(EVENTS_KEPT + 5) {
            e.push(&i.to_string(), &r, &a, &b, "HTTP 500");
        }
        let recent = e.recent();
        assert_eq!(recent.len(), EVENTS_KEPT);
        assert_eq!(recent[0].request_id, (EVENTS_KEPT + 4).to_string());
        assert_eq!(recent[0].seq, EVENTS_KEPT as u64 + 5);
    }
}
