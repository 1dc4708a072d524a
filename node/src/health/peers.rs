//! The members' health reports as this node holds them: each sent straight
//! here by the member that cut it (`raft::network::RaftRequest::Health`),
//! filed under the id its certificate proves, checked, and decoded once on
//! arrival, so the board merges histograms rather than inflating every
//! report again at each rebuild. A decoded histogram is kept as its
//! recorded buckets only ([`Buckets`]): a full one of the health shape is
//! about 24 KB of mostly zero counters, which at 20 members × 200 upstreams
//! × 2 would hold 200 MB on every node.
//!
//! A report only replaces its sender's previous one, so nothing needs them
//! ordered or durable: a lost report is replaced by the next, an interval
//! later. That is why they travel outside the Raft log, which keeps the
//! leader's replication (one AppendEntries in flight per follower) for
//! configuration, and costs each link only its two ends' reports.

use std::collections::BTreeMap;
use std::sync::Arc;

use hdrhistogram::Histogram;
use proto::health::{HealthReport, UpstreamWindow, decode_histogram};
use tokio::sync::watch;

/// The most upstreams one report may carry: far above any routing table
/// (the cost model plans for 200), far below what would let one member's
/// report take a receiver's memory.
pub const MAX_UPSTREAMS: usize = 10_000;

/// The longest window a report may claim. A report older than its window no
/// longer counts, so a window of years would keep a member's figures on
/// every board long after it went silent.
pub use proto::health::MAX_WINDOW_MS;

/// The longest region name or upstream id a report may carry (both become
/// labels on the board, in the admin API and in `/metrics`; the
/// configuration allows 64).
pub const MAX_REGION: usize = 128;

/// The most histogram buckets one report may hold once decoded (16 bytes
/// each: 16 MiB). A real report holds far fewer (200 upstreams × 2
/// histograms × a few hundred buckets); without a budget, a report of
/// 10,000 upstreams whose histograms each fill every bucket of the health
/// shape, a megabyte or two on the wire, would hold about a gigabyte on
/// every receiver.
pub const MAX_REPORT_BUCKETS: usize = 1 << 20;

/// The non-empty buckets of a decoded histogram: each bucket's highest
/// value and its count, which, recorded into a histogram of the health
/// shape, land in the same buckets (so merging is exact).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buckets(Vec<(u64, u64)>);

impl Buckets {
    /// The buckets `h` recorded samples in.
    pub fn of(h: &Histogram<u64>) -> Self {
        Self(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    /// Adds these buckets into `into`, made empty of the health shape on
    /// first use. A value the shape cannot hold (none, as decoding
    /// reshapes) would be dropped, not fatal.
    pub fn add_to(&self, into: &mut Option<Histogram<u64>>) {
        if self.0.is_empty() {
            return;
        }
        let h = into.get_or_insert_with(proto::health::empty_histogram);
        for &(value, count) in &self.0 {
            let _ = h.record_n(value, count);
        }
    }

    /// Samples held.
    pub fn count(&self) -> u64 {
        self.0.iter().fold(0u64, |n, (_, c)| n.saturating_add(*c))
    }

    /// Buckets held (what the memory grows with).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No samples.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One upstream's figures from one report, histograms decoded.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// 2xx answers.
    pub successes: u64,
    /// Client-caused 4xx answers.
    pub client_errors: u64,
    /// Upstream failures.
    pub errors: u64,
    /// First-byte timeouts.
    pub timeouts: u64,
    /// Time to first byte, microseconds.
    pub ttfb: Buckets,
    /// Total time, microseconds.
    pub total: Buckets,
}

/// A member's report as this node took it.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The sender's sequence number.
    pub seq: u64,
    /// The sender's region.
    pub region: String,
    /// How much history the report covers; it no longer counts once it is
    /// older than that.
    pub window_ms: u64,
    /// When this node took it, on the cooldowns' clock
    /// ([`super::cooldown::now_ms`]): its age, and when its cooldowns
    /// started, are counted from here, so clocks need not agree.
    pub at_ms: u64,
    /// Per upstream id, its figures.
    pub upstreams: Vec<(Arc<str>, Window)>,
    /// Per upstream id, the cooldown left when the report was cut (ms).
    pub cooldowns: BTreeMap<String, u64>,
    /// Histograms that could not be decoded (counted, not fatal).
    pub undecodable: u64,
}

impl Received {
    /// Decodes `report`, taken at `at_ms`. A histogram that does not decode
    /// is left out and counted in [`Received::undecodable`]; a report whose
    /// histograms hold more than [`MAX_REPORT_BUCKETS`] is refused, its
    /// decoding stopped where it passed the budget.
    pub fn decode(report: HealthReport, at_ms: u64) -> Result<Self, Rejected> {
        let mut undecodable = 0;
        let mut held = 0usize;
        let mut decode = |bytes: &[u8]| -> Result<Buckets, Rejected> {
            let buckets = match decode_histogram(bytes) {
                Ok(h) => h.as_ref().map(Buckets::of).unwrap_or_default(),
                Err(_) => {
                    undecodable += 1;
                    Buckets::default()
                }
            };
            held = held.saturating_add(buckets.len());
            if held > MAX_REPORT_BUCKETS {
                return Err(Rejected::Malformed(format!(
                    "its histograms hold more than {MAX_REPORT_BUCKETS} buckets"
                )));
            }
            Ok(buckets)
        };
        let mut upstreams = Vec::with_capacity(report.upstreams.len());
        for (id, w) in report.upstreams {
            let UpstreamWindow {
                successes,
                client_errors,
                errors,
                timeouts,
                ttfb,
                total,
            } = w;
            let window = Window {
                successes,
                client_errors,
                errors,
                timeouts,
                ttfb: decode(&ttfb)?,
                total: decode(&total)?,
            };
            upstreams.push((Arc::from(id), window));
        }
        Ok(Self {
            seq: report.seq,
            region: report.region,
            window_ms: report.window_ms,
            at_ms,
            upstreams,
            cooldowns: report.cooldowns,
            undecodable,
        })
    }

    /// How old the report is at `now_ms`, and whether that is past its
    /// window.
    pub fn age(&self, now_ms: u64) -> (u64, bool) {
        let age = now_ms.saturating_sub(self.at_ms);
        (age, age > self.window_ms)
    }
}

/// Why a member's report was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Out of the shape any Meridian node cuts.
    #[error("health report refused: {0}")]
    Malformed(String),
    /// Not newer than the report held from the same member, which is still
    /// within its window (a late duplicate).
    #[error("health report {seq} is not newer than {held}, already held")]
    Old {
        /// The report's number.
        seq: u64,
        /// The number held.
        held: u64,
    },
}

/// Whether `report` is of a shape this node takes. Members are trusted, but
/// a report's size and window decide what a receiver holds and for how long,
/// so both are bounded.
pub fn check(report: &HealthReport) -> Result<(), Rejected> {
    let bad = |what: String| Err(Rejected::Malformed(what));
    if report.upstreams.len() > MAX_UPSTREAMS || report.cooldowns.len() > MAX_UPSTREAMS {
        return bad(format!("more than {MAX_UPSTREAMS} upstreams"));
    }
    if report.window_ms == 0 || report.window_ms > MAX_WINDOW_MS {
        return bad(format!(
            "window_ms {} is not within 1..={MAX_WINDOW_MS}",
            report.window_ms
        ));
    }
    let label = |s: &str| s.len() <= MAX_REGION && !s.chars().any(char::is_control);
    if !label(&report.region) {
        return bad("region is too long or holds control characters".into());
    }
    let ids = report.upstreams.keys().chain(report.cooldowns.keys());
    if let Some(id) = ids.into_iter().find(|id| !label(id)) {
        let shown: String = id.chars().take(40).filter(|c| !c.is_control()).collect();
        return bad(format!(
            "upstream id `{shown}` is too long or holds control characters"
        ));
    }
    Ok(())
}

/// Whether a report numbered `seq`, arriving at `now_ms`, replaces `held`:
/// when it is newer, or when the one held is past its window (a member that
/// restarted with its clock set back numbers its reports lower for a while;
/// its figures must not be shut out).
pub fn replaces(held: Option<&Received>, seq: u64, now_ms: u64) -> bool {
    held.is_none_or(|held| seq > held.seq || held.age(now_ms).1)
}

/// The latest report of each member, as received (this node's own
/// included), for the board to follow.
pub struct Reports {
    latest: watch::Sender<BTreeMap<u64, Arc<Received>>>,
}

impl Default for Reports {
    fn default() -> Self {
        Self {
            latest: watch::Sender::new(BTreeMap::new()),
        }
    }
}

impl Reports {
    /// Takes `report` from member `from` (proved by its certificate, or this
    /// node itself) at `now_ms`, if it is well formed and newer than the one
    /// held.
    pub fn take(&self, from: u64, report: HealthReport, now_ms: u64) -> Result<(), Rejected> {
        check(&report)?;
        let seq = report.seq;
        if let Some(held) = self.latest.borrow().get(&from)
            && !replaces(Some(held), seq, now_ms)
        {
            return Err(Rejected::Old {
                seq,
                held: held.seq,
            });
        }
        // Decoded before the map is touched: readers never wait on it.
        let received = Arc::new(Received::decode(report, now_ms)?);
        self.latest.send_modify(|latest| {
            if replaces(latest.get(&from).map(Arc::as_ref), seq, now_ms) {
                latest.insert(from, received);
            }
        });
        Ok(())
    }

    /// Forgets the reports of nodes no longer members.
    pub fn retain(&self, keep: impl Fn(u64) -> bool) {
        self.latest.send_if_modified(|latest| {
            let before = latest.len();
            latest.retain(|id, _| keep(*id));
            latest.len() != before
        });
    }

    /// The reports held now, and each change after.
    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<u64, Arc<Received>>> {
        self.latest.subscribe()
    }

    /// Where the transport files the reports members send (see
    /// `raft::network::HealthSink`), timed on the cooldowns' clock.
    pub fn sink(self: &Arc<Self>) -> raft::network::HealthSink {
        let reports = self.clone();
        Arc::new(move |from, report| {
            let taken = reports.take(from, report, super::cooldown::now_ms());
            match &taken {
                // A member of this cluster cutting reports no Meridian
                // node cuts: worth an operator's look, here and at the sender.
                Err(e @ Rejected::Malformed(_)) => {
                    tracing::warn!(member = from, error = %e, "health report refused");
                }
                Err(e @ Rejected::Old { .. }) => tracing::debug!(member = from, error = %e),
                Ok(()) => {}
            }
            taken.map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests;
