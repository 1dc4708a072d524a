//! Per client key counters (`meridian_key_*`): requests by admission
//! outcome, tokens, cost, and the balance of keys with credits. Keys are
//! configured, so the series are bounded; a deleted key's series go away
//! when the tenants are next rebuilt ([`Metrics::retain_keys`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::{Metrics, counter, gauge, lock};

/// Admission outcomes as labelled, in the order of [`KeyOutcome`].
pub const KEY_OUTCOMES: [&str; 4] = [
    "admitted",
    "model_not_allowed",
    "rate_limited",
    "insufficient_quota",
];

/// How a request of a key was admitted, or why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOutcome {
    /// Let through to routing.
    Admitted = 0,
    /// Its model is outside the key's allowlist.
    ModelNotAllowed = 1,
    /// Over the key's rpm or tpm.
    RateLimited = 2,
    /// The key's credits are spent.
    InsufficientQuota = 3,
}

/// One key's counters, found through its tenant state.
#[derive(Debug, Default)]
pub struct KeyMetrics {
    outcomes: [AtomicU64; 4],
    /// Input and output tokens of its answers.
    tokens: [AtomicU64; 2],
    cost_nanos: AtomicU64,
    balance_nanos: AtomicI64,
    has_balance: AtomicBool,
}

impl KeyMetrics {
    /// Counts one request's admission outcome.
    pub fn outcome(&self, outcome: KeyOutcome) {
        if let Some(n) = self.outcomes.get(outcome as usize) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one answer's tokens and cost.
    pub fn spent(&self, input: u64, output: u64, cost_nanos: u64) {
        // Saturating: an upstream may report absurd usage, and a counter
        // that wrapped would read as a reset.
        for (counter, n) in [
            (&self.tokens[0], input),
            (&self.tokens[1], output),
            (&self.cost_nanos, cost_nanos),
        ] {
            let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(n))
            });
        }
    }

    /// The key's balance in the applied state, when it has a ledger.
    pub fn set_balance(&self, nanos: Option<i128>) {
        if let Some(n) = nanos {
            let n = i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX });
            self.balance_nanos.store(n, Ordering::Relaxed);
        }
        self.has_balance.store(nanos.is_some(), Ordering::Relaxed);
    }

    /// Requests counted with `outcome`.
    pub fn outcomes(&self, outcome: KeyOutcome) -> u64 {
        self.outcomes
            .get(outcome as usize)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }
}

impl Metrics {
    /// A key's counters, made on first use.
    pub fn key(&self, name: &Arc<str>) -> Arc<KeyMetrics> {
        lock(&self.keys).entry(name.clone()).or_default().clone()
    }

    /// Forgets the counters of keys no longer configured.
    pub fn retain_keys(&self, keep: impl Fn(&str) -> bool) {
        lock(&self.keys).retain(|name, _| keep(name));
    }

    pub(super) fn encode_keys(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        let keys: Vec<(Arc<str>, Arc<KeyMetrics>)> = lock(&self.keys)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut m = encoder.encode_descriptor(
            "meridian_key_requests",
            "Requests of each client key by admission outcome on this node",
            None,
            MetricType::Counter,
        )?;
        for (key, k) in &keys {
            for (outcome, n) in KEY_OUTCOMES.iter().zip(&k.outcomes) {
                let labels = [("key", &**key), ("outcome", *outcome)];
                counter(&mut m, &labels, n.load(Ordering::Relaxed))?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "meridian_key_tokens",
            "Tokens of the answers to each client key on this node, input and output",
            None,
            MetricType::Counter,
        )?;
        for (key, k) in &keys {
            for (kind, n) in ["input", "output"].iter().zip(&k.tokens) {
                let labels = [("key", &**key), ("kind", *kind)];
                counter(&mut m, &labels, n.load(Ordering::Relaxed))?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "meridian_key_cost_usd",
            "What the answers to each client key on this node cost, at the catalogue's prices",
            None,
            MetricType::Counter,
        )?;
        for (key, k) in &keys {
            let usd = k.cost_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            m.encode_family(&[("key", &**key)])?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, f64, u64>(&usd, None)?;
        }
        let mut m = encoder.encode_descriptor(
            "meridian_key_credits_balance_usd",
            "Each client key's prepaid balance in the applied state (keys with credits only)",
            None,
            MetricType::Gauge,
        )?;
        for (key, k) in &keys {
            if k.has_balance.load(Ordering::Relaxed) {
                let usd = k.balance_nanos.load(Ordering::Relaxed) as f64 / 1e9;
                gauge(&mut m, &[("key", &**key)], usd)?;
            }
        }
        Ok(())
    }
}
