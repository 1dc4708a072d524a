//! Tenants on the data plane: each client key's model allowlist, request
//! and token rates and prepaid credits, checked locally, and its usage
//! counted and reported to the cluster.
//!
//! Admission is a local, lock-free decision. Each node admits, per minute,
//! its share of a key's `rpm` and `tpm` ([`plan`], from
//! `proto::tenancy::share`): the shares of all nodes sum to one and follow
//! the demand each node reports through Raft ([`report`]), so the cluster
//! admits at most the limit, plus what nodes applying a new split at
//! slightly different moments hold at once. The counters are sliding
//! windows ([`limiter`]) over UTC minutes, the previous minute weighed in as
//! if spread evenly: every UTC minute is bounded; a sliding 60 s across a
//! burst at the end of one minute and the start of the next can see up to
//! about twice the limit (measured in docs/chaos/tenants.md).
//!
//! # Bounds
//!
//! - Requests: a request is admitted when this node's estimate plus one is
//!   within its share, so per node at most `share × rpm` per minute (at
//!   least one per node: a limit below the number of nodes could otherwise
//!   be used nowhere). A share rises past what it began the minute with,
//!   or an even split if more, only at the next minute
//!   ([`limiter::ShareCap`]): the first node whose demand lands cannot take
//!   most of the limit on top of what the others admitted; a node back from
//!   its floor rises to an even split at once.
//! - Tokens: usage is known only once an answer is, so a request is
//!   admitted while the estimate is below the share, and its tokens are
//!   counted after it. The overshoot is bounded by what is in flight: the
//!   tokens of the answers admitted before the earlier ones' usage counted.
//! - Credits: this node may start a request while its spending not yet
//!   committed (what it spent this boot minus what the ledger holds of it)
//!   is below `share × max(0, balance)`. Shares sum to one, so the balance
//!   goes below zero by at most what the requests in flight cost when it
//!   ran out, on every node together.
//! - Fail-static: a node whose tenancy reports have not committed for
//!   longer than `SILENT_INTERVALS` report intervals (its own clock) keeps
//!   only its floor, `FLOOR / participants` of each limit and of the
//!   balance: never zero, never unlimited. Until then it keeps its last
//!   share. So a partition lets the cut-off side admit at most its last
//!   share for `SILENT_INTERVALS` intervals, then its floor, while the
//!   others, seeing it silent, split the rest between them.
//!
//! Keys without limits cost one map lookup (and a counter) and nothing
//! else on the request path.
//!
//! # Layout
//!
//! - [`limiter`]: the sliding-window counter in one `AtomicU64`.
//! - [`plan`]: this node's allowances, from the applied state.
//! - `cells.rs`: this node's cumulative usage cells, counted per worker
//!   (no lock shared between workers) and folded when read.
//! - [`report`]: the tasks that report usage and demand and follow the
//!   applied state.
//! - `headers.rs`: the `x-ratelimit-*` headers.

mod cells;
mod headers;
pub mod limiter;
pub mod plan;
pub mod report;

pub use headers::RateHeaders;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use proto::tenancy::share::SILENT_INTERVALS;
use proto::tenancy::{Counters, KeyLimits};
use raft::store::Applied;

use crate::error::ProxyError;
use crate::metrics::{KeyMetrics, KeyOutcome, Metrics};
use cells::{BucketRef, Cells, DAY_MS};
use limiter::{MINUTE_MS, ShareCap, Window};
use plan::Plan;

/// The window over which demand is measured: requests asked in the last
/// ~10 s, reported per minute.
const DEMAND_WINDOW_MS: u64 = 10_000;

/// The wall clock in Unix milliseconds: the windows' time and the usage
/// cells' day (coarse: within a tick, [`crate::clock`]).
pub fn now_ms() -> u64 {
    crate::clock::wall_ms()
}

/// Why a key's request is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The model is outside the key's allowlist.
    ModelNotAllowed,
    /// Over this node's share of the key's `rpm` (`limit`: the key's).
    Requests {
        /// The key's requests per minute.
        limit: u64,
        /// How long until one more would be admitted here.
        retry_after: Duration,
    },
    /// Over this node's share of the key's `tpm`.
    Tokens {
        /// The key's tokens per minute.
        limit: u64,
        /// How long until one more would be admitted here.
        retry_after: Duration,
    },
    /// The key's credits are spent (this node's part of them).
    Credits,
}

impl Refusal {
    /// The client's error for it, `model` being what the request named.
    pub fn into_error(self, model: &str) -> ProxyError {
        match self {
            Self::ModelNotAllowed => ProxyError::ModelNotAllowed(model.to_owned()),
            Self::Requests { limit, retry_after } => ProxyError::KeyRateLimited {
                what: "requests",
                limit,
                retry_after,
            },
            Self::Tokens { limit, retry_after } => ProxyError::KeyRateLimited {
                what: "tokens",
                limit,
                retry_after,
            },
            Self::Credits => ProxyError::InsufficientQuota,
        }
    }
}

/// What survives rebuilds of a key's state: its counters.
#[derive(Debug, Default)]
struct Meters {
    requests: Window,
    tokens: Window,
    /// Requests asked of this node, admitted or not: the demand.
    asked: Window,
    /// What this node's answers to the key cost in this boot, nanodollars.
    spent_nanos: AtomicU64,
    /// The share usable this minute (rises past an even split wait for
    /// the next one).
    share: ShareCap,
}

/// One key as the request path sees it: its limits, this node's plan for
/// it, and its counters (which survive every rebuild).
#[derive(Debug)]
pub struct KeyState {
    limits: KeyLimits,
    plan: Plan,
    meters: Arc<Meters>,
    metrics: Arc<KeyMetrics>,
}

impl KeyState {
    /// The key's priority class, if it names one (`KeyLimits::class`).
    pub fn class(&self) -> Option<&str> {
        self.limits.class.as_deref()
    }

    /// Whether any per-minute limit applies, so its answers carry the
    /// `x-ratelimit-*` headers.
    pub fn is_rate_limited(&self) -> bool {
        self.limits.is_rate_limited()
    }

    /// Whether what the key's answers use is limited (credits or `tpm`),
    /// so an answer whose usage could not be read must not be served to it.
    pub fn is_metered(&self) -> bool {
        self.limits.tpm.is_some() || self.limits.credits_nanos.is_some()
    }

    /// Whether the key may see `model` (in `/v1/models`).
    pub fn allows(&self, model: &str) -> bool {
        self.limits.allows(model)
    }

    /// Whether the key may call only some models.
    pub fn has_allowlist(&self) -> bool {
        self.limits.models.is_some()
    }

    /// Whether the key has any limit at all.
    fn is_limited(&self) -> bool {
        self.limits.models.is_some()
            || self.limits.is_rate_limited()
            || self.limits.credits_nanos.is_some()
    }

    /// Admits one request for `model` at `now_ms`, or says why not: the
    /// allowlist, then the credits, then the requests, then the tokens.
    pub fn admit(&self, model: &str, now_ms: u64) -> Result<(), Refusal> {
        let outcome = self.decide(model, now_ms);
        self.metrics.outcome(match &outcome {
            Ok(()) => KeyOutcome::Admitted,
            Err(Refusal::ModelNotAllowed) => KeyOutcome::ModelNotAllowed,
            Err(Refusal::Requests { .. } | Refusal::Tokens { .. }) => KeyOutcome::RateLimited,
            Err(Refusal::Credits) => KeyOutcome::InsufficientQuota,
        });
        outcome
    }

    fn decide(&self, model: &str, now_ms: u64) -> Result<(), Refusal> {
        if !self.is_limited() {
            return Ok(());
        }
        if !self.limits.allows(model) {
            return Err(Refusal::ModelNotAllowed);
        }
        if self.limits.is_rate_limited() || self.plan.credits.is_some() {
            self.meters.asked.add(now_ms, DEMAND_WINDOW_MS, 1);
        }
        if let Some(credits) = &self.plan.credits
            && !credits.admits(self.meters.spent_nanos.load(Ordering::Relaxed))
        {
            return Err(Refusal::Credits);
        }
        let (rpm_part, tpm_part) = self.parts(now_ms);
        let rpm = rpm_part.zip(self.limits.rpm);
        if let Some((share, limit)) = rpm {
            self.meters
                .requests
                .try_add(now_ms, MINUTE_MS, 1, share)
                .map_err(|r| Refusal::Requests {
                    limit,
                    retry_after: Duration::from_millis(r.retry_after_ms),
                })?;
        }
        if let Some((share, limit)) = tpm_part.zip(self.limits.tpm) {
            let view = self.meters.tokens.view(now_ms, MINUTE_MS);
            if view.estimate() >= share {
                if rpm.is_some() {
                    // Refused after all: the request was not admitted.
                    self.meters.requests.take_back(now_ms, MINUTE_MS, 1);
                }
                return Err(Refusal::Tokens {
                    limit,
                    retry_after: Duration::from_millis(view.wait_for(1.0, share)),
                });
            }
        }
        Ok(())
    }

    /// An answer's tokens and cost, counted against the key's windows and
    /// balance.
    fn spent(&self, now_ms: u64, counters: &Counters) {
        self.metrics.spent(
            counters.input_tokens,
            counters.output_tokens,
            counters.cost_nanos,
        );
        if !self.is_limited() {
            return;
        }
        // Saturating: an upstream may report absurd usage, and a wrapped
        // meter would read as nothing spent.
        let _ =
            self.meters
                .spent_nanos
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |spent| {
                    Some(spent.saturating_add(counters.cost_nanos))
                });
        if self.limits.tpm.is_some() {
            self.meters.tokens.add(now_ms, MINUTE_MS, counters.tokens());
        }
    }

    /// The requests and tokens this node may admit per minute as of
    /// `now_ms`: its plan, scaled down while a share risen past an even
    /// split waits for the next minute ([`ShareCap`]).
    fn parts(&self, now_ms: u64) -> (Option<f64>, Option<f64>) {
        let usable = self
            .meters
            .share
            .apply(now_ms, self.plan.share, self.plan.even);
        let scale = |part: f64, limit: u64| {
            if self.plan.share > 0.0 && usable < self.plan.share {
                (limit as f64 * usable).max(1.0).min(part)
            } else {
                part
            }
        };
        (
            self.plan.rpm.zip(self.limits.rpm).map(|(p, l)| scale(p, l)),
            self.plan.tpm.zip(self.limits.tpm).map(|(p, l)| scale(p, l)),
        )
    }

    /// The `x-ratelimit-*` headers as of `now_ms`: the key's limits, and
    /// what this node can still admit of them.
    pub fn headers(&self, now_ms: u64) -> RateHeaders {
        let (rpm_part, tpm_part) = self.parts(now_ms);
        RateHeaders::new(
            self.limits
                .rpm
                .zip(rpm_part)
                .map(|(limit, share)| (limit, share, self.meters.requests.view(now_ms, MINUTE_MS))),
            self.limits
                .tpm
                .zip(tpm_part)
                .map(|(limit, share)| (limit, share, self.meters.tokens.view(now_ms, MINUTE_MS))),
        )
    }

    /// Requests asked of this node per minute, recently.
    fn demand(&self, now_ms: u64) -> u64 {
        let asked = self.meters.asked.view(now_ms, DEMAND_WINDOW_MS).estimate();
        let per_minute = asked * (MINUTE_MS / DEMAND_WINDOW_MS) as f64;
        if per_minute > 0.0 {
            per_minute.ceil() as u64
        } else {
            0
        }
    }
}

/// Every key's state on this node, rebuilt from the applied state.
pub struct Tenants {
    node: u64,
    /// This process's start, in Unix milliseconds: its reports' `boot`.
    boot: u64,
    report_every: Duration,
    metrics: Arc<Metrics>,
    keys: ArcSwap<HashMap<Arc<str>, Arc<KeyState>>>,
    applied: ArcSwap<Applied>,
    /// The log index the keys were last built from, held while one is
    /// rebuilt: the routing table's rebuild and this module's own follower
    /// both rebuild, and neither may store an older state over a newer one.
    built_at: Mutex<Option<u64>>,
    cells: Cells,
    /// When this node's reports began failing (Unix ms; 0: they are not).
    failing_since: AtomicU64,
}

impl Tenants {
    /// The tenants of node `node`, started at `boot` (Unix ms), built from
    /// `applied`; reports every `report_every`. Answers are counted on
    /// `workers` data-plane workers.
    pub fn new(
        node: u64,
        boot: u64,
        report_every: Duration,
        metrics: Arc<Metrics>,
        applied: Arc<Applied>,
        workers: usize,
    ) -> Arc<Self> {
        let tenants = Arc::new(Self {
            node,
            boot,
            report_every,
            metrics,
            keys: ArcSwap::from_pointee(HashMap::new()),
            applied: ArcSwap::new(applied.clone()),
            built_at: Mutex::new(None),
            cells: Cells::new(workers),
            failing_since: AtomicU64::new(0),
        });
        tenants.rebuild(applied, boot);
        tenants
    }

    /// A key's state, by its holder's name: one map lookup.
    pub fn key(&self, name: &str) -> Option<Arc<KeyState>> {
        self.keys.load().get(name).cloned()
    }

    /// The state of a key the routing table has just authenticated. The
    /// keys are rebuilt before every table that admits a new one is served
    /// (`routing::follow`), so a key admitted but unknown here is one being
    /// deleted: it is refused as the table will refuse it a moment later,
    /// not served unlimited and uncharged in between.
    pub fn admitted(&self, name: &str) -> Result<Arc<KeyState>, ProxyError> {
        self.key(name).ok_or(crate::auth::INCORRECT_KEY)
    }

    /// The applied state the keys were last built from.
    pub fn applied(&self) -> Arc<Applied> {
        self.applied.load_full()
    }

    /// Whether this node's reports have failed for longer than
    /// `SILENT_INTERVALS` report intervals at `now_ms`.
    fn cut_off(&self, now_ms: u64) -> bool {
        let since = self.failing_since.load(Ordering::Relaxed);
        let silent = self.report_every.as_millis() as u64 * SILENT_INTERVALS;
        since != 0 && now_ms.saturating_sub(since) > silent
    }

    /// Rebuilds every key's state from `applied` at `now_ms`, keeping each
    /// key's counters; forgets the counters of deleted keys. A state older
    /// than the one last built from is ignored.
    pub fn rebuild(&self, applied: Arc<Applied>, now_ms: u64) {
        // Nothing in here panics, so a poisoned lock guards sound data.
        let mut built_at = self.built_at.lock().unwrap_or_else(PoisonError::into_inner);
        let index = applied.last_applied.map(|l| l.index);
        if index < *built_at {
            return;
        }
        *built_at = index;
        let state = &applied.state;
        let cut_off = self.cut_off(now_ms);
        let held = plan::held_by_key(state, self.node, self.boot);
        let old = self.keys.load();
        let mut keys = HashMap::with_capacity(state.keys.len());
        for (name, record) in &state.keys {
            let name: Arc<str> = Arc::from(name.as_str());
            let plan = plan::plan(
                state,
                self.node,
                &name,
                &record.limits,
                held.get(&*name).copied().unwrap_or(0),
                cut_off,
            );
            let (meters, metrics) = match old.get(&name) {
                Some(k) => (k.meters.clone(), k.metrics.clone()),
                None => (Arc::default(), self.metrics.key(&name)),
            };
            let balance = record
                .limits
                .credits_nanos
                .and_then(|_| state.tenancy.credits.get(&*name))
                .map(|c| c.balance_nanos());
            metrics.set_balance(balance);
            if record.limits.is_rate_limited() {
                // Between requests too: the minute's lowest share counts.
                meters.share.apply(now_ms, plan.share, plan.even);
            }
            keys.insert(
                name,
                Arc::new(KeyState {
                    limits: record.limits.clone(),
                    plan,
                    meters,
                    metrics,
                }),
            );
        }
        self.metrics.retain_keys(|k| keys.contains_key(k));
        self.keys.store(Arc::new(keys));
        self.applied.store(applied);
    }

    /// Counts one answered request of `key` for `model` through
    /// `upstream`: its usage cell, its metrics, and for a limited key its
    /// tokens and spending.
    ///
    /// Requests of no configured key (a node open to anyone on loopback,
    /// as `anonymous`) are not counted: the ledger is per key.
    pub fn answered(&self, key: &str, model: &str, upstream: &str, counters: Counters) {
        let now = now_ms();
        // Borrowed from the snapshot: a clone of the key's `Arc` would have
        // every worker write its count's cache line once per answer.
        let keys = self.keys.load();
        let Some(state) = keys.get(key) else {
            return;
        };
        state.spent(now, &counters);
        self.cells.add(
            BucketRef {
                key,
                day: (now / DAY_MS) as u32,
                model,
                upstream,
            },
            &counters,
        );
    }

    /// Per key: requests asked of this node per minute, recently, for the
    /// keys whose shares follow demand.
    fn demand(&self, now_ms: u64) -> std::collections::BTreeMap<String, u64> {
        self.keys
            .load()
            .iter()
            .filter_map(|(name, k)| {
                let d = k.demand(now_ms);
                (d > 0).then(|| (name.to_string(), d))
            })
            .collect()
    }

    /// This node's usage counted so far for `key`, this boot.
    pub fn local_usage(&self, key: &str) -> Counters {
        self.cells.total(key)
    }
}

#[cfg(test)]
mod tests;
