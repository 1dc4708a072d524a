//! The replicated catalogue's discovery: the Raft leader fetches the model
//! list of every upstream with `discover_models = true` on an interval
//! (`[catalogue] refresh_ms`) and commits it (`Command::PutCatalogue`), so
//! every region lists the same models and a provider's outage does not
//! empty the list (a failed fetch commits nothing).
//!
//! - [`parse`] (pure): a provider's list, OpenAI's or Anthropic's shape,
//!   page by page, and what is refused or skipped.
//! - [`schedule`] (pure): which upstreams are due, given the clock.
//! - [`fetch`]: one upstream's list through its own pool and key header.
//! - [`refresh`]: the task that runs on every node and acts while it leads.
//! - [`Ledger`]: what this node saw, for `GET /admin/v1/catalogue`.
//!
//! Azure OpenAI upstreams are not fetched: Azure's model list names what a
//! resource could deploy, not the deployments a request addresses; their
//! `models` are declared (the fetch says so in the log at info level).

pub mod fetch;
pub mod parse;
pub mod refresh;
pub mod schedule;

use std::collections::BTreeMap;
use std::sync::Mutex;

use proto::api::admin::CatalogueFetch;

/// What this node saw of the catalogue: when it applied each upstream's
/// discovered list, and the last fetch it made itself (while leading).
#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Each upstream's list as last noted, and when it was first seen so.
    applied: BTreeMap<String, (Vec<String>, u64)>,
    fetches: BTreeMap<String, CatalogueFetch>,
}

impl Ledger {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        // Nothing here can be left half-written by a panic: take it anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes the applied catalogue at `now_unix_ms`: a list new or changed
    /// since the last note is stamped now; a list gone is forgotten.
    pub fn note_applied(&self, catalogue: &BTreeMap<String, Vec<String>>, now_unix_ms: u64) {
        let mut seen = self.seen();
        seen.applied.retain(|id, _| catalogue.contains_key(id));
        for (id, models) in catalogue {
            let same = seen.applied.get(id).is_some_and(|(held, _)| held == models);
            if !same {
                seen.applied
                    .insert(id.clone(), (models.clone(), now_unix_ms));
            }
        }
    }

    /// Notes a fetch this node made.
    pub fn note_fetch(&self, upstream: &str, fetch: CatalogueFetch) {
        self.seen().fetches.insert(upstream.to_owned(), fetch);
    }

    /// When this node applied `upstream`'s discovered list as it holds it.
    pub fn applied_at(&self, upstream: &str) -> Option<u64> {
        self.seen().applied.get(upstream).map(|(_, at)| *at)
    }

    /// The last fetch of `upstream` this node made.
    pub fn last_fetch(&self, upstream: &str) -> Option<CatalogueFetch> {
        self.seen().fetches.get(upstream).cloned()
    }
}

/// Milliseconds since the Unix epoch, for the ledger's stamps.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_list_is_stamped_when_it_first_appears_or_changes() {
        let ledger = Ledger::default();
        let mut catalogue = BTreeMap::from([("a".to_owned(), vec!["m1".to_owned()])]);
        ledger.note_applied(&catalogue, 10);
        ledger.note_applied(&catalogue, 20);
        assert_eq!(ledger.applied_at("a"), Some(10));
        catalogue.insert("a".into(), vec!["m1".into(), "m2".into()]);
        ledger.note_applied(&catalogue, 30);
        assert_eq!(ledger.applied_at("a"), Some(30));
        ledger.note_applied(&BTreeMap::new(), 40);
        assert_eq!(ledger.applied_at("a"), None);
    }
}
