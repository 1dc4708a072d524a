//! Pure: which discovering upstreams the leader fetches now, and when it
//! next has one to fetch. The clock is the caller's (`now` is passed in).
//!
//! An upstream is due when this node has not fetched it since it became
//! leader, when its configuration changed since the last fetch (a new
//! `base_url` or key lists other models), or a refresh interval after the
//! last fetch, successful or not (a failing provider is asked again at the
//! same pace, not hammered).

use std::collections::BTreeMap;
use std::time::Duration;

use proto::config::UpstreamConfig;
use tokio::time::Instant;

/// The last fetch of each upstream, by id, while this node leads.
#[derive(Debug)]
pub struct Schedule {
    refresh: Duration,
    last: BTreeMap<String, (Instant, UpstreamConfig)>,
}

impl Schedule {
    /// A schedule that fetches each upstream every `refresh`.
    pub fn new(refresh: Duration) -> Self {
        Self {
            refresh,
            last: BTreeMap::new(),
        }
    }

    /// The upstreams to fetch now, in id order. A follower fetches nothing
    /// and forgets what it fetched, so a node that leads again fetches
    /// everything at once (the list may have changed while another led).
    /// Upstreams no longer discovering are forgotten.
    pub fn due<'a>(
        &mut self,
        leader: bool,
        discovering: impl IntoIterator<Item = &'a UpstreamConfig>,
        now: Instant,
    ) -> Vec<&'a UpstreamConfig> {
        if !leader {
            self.last.clear();
            return Vec::new();
        }
        let current: Vec<&UpstreamConfig> = discovering.into_iter().collect();
        self.last
            .retain(|id, _| current.iter().any(|u| &u.id == id));
        current
            .into_iter()
            .filter(|u| match self.last.get(&u.id) {
                None => true,
                Some((at, config)) => config != *u || now >= *at + self.refresh,
            })
            .collect()
    }

    /// Notes that `upstream` was fetched (whatever the outcome) at `now`.
    pub fn fetched(&mut self, upstream: &UpstreamConfig, now: Instant) {
        self.last
            .insert(upstream.id.clone(), (now, upstream.clone()));
    }

    /// When the next upstream falls due by time alone; `None` when none is
    /// scheduled (a change of state or leadership wakes the task instead).
    pub fn next_due(&self) -> Option<Instant> {
        self.last.values().map(|(at, _)| *at + self.refresh).min()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn upstream(id: &str, base_url: &str) -> UpstreamConfig {
        UpstreamConfig {
            id: id.to_owned(),
            base_url: base_url.to_owned(),
            discover_models: true,
            ..UpstreamConfig::default()
        }
    }

    fn ids(due: &[&UpstreamConfig]) -> Vec<String> {
        due.iter().map(|u| u.id.clone()).collect()
    }

    #[test]
    fn a_leader_fetches_at_once_then_every_interval() {
        let refresh = Duration::from_secs(600);
        let mut s = Schedule::new(refresh);
        let t0 = Instant::now();
        let (a, b) = (upstream("a", "http://a/v1"), upstream("b", "http://b/v1"));
        assert_eq!(ids(&s.due(true, [&a, &b], t0)), ["a", "b"]);
        s.fetched(&a, t0);
        s.fetched(&b, t0 + Duration::from_secs(1));
        assert!(
            s.due(true, [&a, &b], t0 + Duration::from_secs(599))
                .is_empty()
        );
        assert_eq!(s.next_due(), Some(t0 + refresh));
        assert_eq!(ids(&s.due(true, [&a, &b], t0 + refresh)), ["a"]);
    }

    #[test]
    fn a_changed_upstream_is_fetched_at_once() {
        let mut s = Schedule::new(Duration::from_secs(600));
        let t0 = Instant::now();
        let a = upstream("a", "http://a/v1");
        s.fetched(&a, t0);
        let moved = upstream("a", "http://elsewhere/v1");
        assert_eq!(ids(&s.due(true, [&moved], t0)), ["a"]);
    }

    #[test]
    fn a_follower_fetches_nothing_and_a_new_leader_starts_over() {
        let mut s = Schedule::new(Duration::from_secs(600));
        let t0 = Instant::now();
        let a = upstream("a", "http://a/v1");
        assert!(s.due(false, [&a], t0).is_empty());
        s.fetched(&a, t0);
        assert!(s.due(true, [&a], t0).is_empty());
        assert!(s.due(false, [&a], t0).is_empty());
        assert_eq!(s.next_due(), None);
        assert_eq!(ids(&s.due(true, [&a], t0)), ["a"]);
    }

    #[test]
    fn an_upstream_gone_is_forgotten() {
        let mut s = Schedule::new(Duration::from_secs(600));
        let t0 = Instant::now();
        let a = upstream("a", "http://a/v1");
        s.fetched(&a, t0);
        assert!(s.due(true, [], t0).is_empty());
        assert_eq!(s.next_due(), None);
    }
}
