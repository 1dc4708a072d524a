//! Health reports: what one node measured of every upstream over its recent
//! window, as it travels through Raft to every other node.
//!
//! Histograms travel in HDR's V2 + DEFLATE encoding: a window of a few
//! thousand samples is a few hundred bytes, and any node can merge reports
//! from every region into one histogram without losing precision. Nothing
//! here reads a clock: a report carries its sender's sequence number, and
//! readers judge its age by when they first saw it.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// Highest latency a health histogram tracks: ten minutes, in microseconds.
pub const MAX_MICROS: u64 = 600_000_000;

/// Significant digits of every health histogram: 1% precision is plenty to
/// rank upstreams, and keeps each a few KiB in memory.
pub const SIGFIG: u8 = 2;

/// An empty histogram of the shape every health histogram has, so any two
/// can be added.
#[allow(clippy::expect_used)] // constant bounds that `new_with_bounds` accepts; a unit test builds one
pub fn empty_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, SIGFIG).expect("constant histogram bounds are valid")
}

/// One node's window for every upstream it sent to recently.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Grows with every report a node sends; a report replaces the one
    /// before it only if its number is higher.
    pub seq: u64,
    /// The sender's region.
    pub region: String,
    /// The sender's wall clock when it cut the window, in Unix milliseconds:
    /// for display only, since clocks differ between nodes.
    pub at_unix_ms: u64,
    /// How much history the window covers, in milliseconds.
    pub window_ms: u64,
    /// Per upstream id, what the window holds. Upstreams without attempts
    /// in the window are left out.
    pub upstreams: BTreeMap<String, UpstreamWindow>,
}

/// One upstream's window on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamWindow {
    /// 2xx answers.
    pub successes: u64,
    /// Client-caused 4xx answers passed through.
    pub client_errors: u64,
    /// Upstream failures (connect errors, 5xx, 429, cut bodies).
    pub errors: u64,
    /// First-byte timeouts.
    pub timeouts: u64,
    /// Time to first byte in microseconds, HDR V2 + DEFLATE; empty when
    /// there are no samples.
    pub ttfb: Vec<u8>,
    /// Total time in microseconds, HDR V2 + DEFLATE.
    pub total: Vec<u8>,
}

/// A histogram that could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode a health histogram: {0}")]
pub struct HistogramError(String);

/// Encodes a histogram for a report (empty bytes for an empty histogram).
pub fn encode_histogram(h: &Histogram<u64>) -> Result<Vec<u8>, HistogramError> {
    if h.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut out)
        .map_err(|e| HistogramError(format!("{e:?}")))?;
    Ok(out)
}

/// Adds an encoded histogram into `into` (which must have the health shape).
pub fn add_encoded(into: &mut Histogram<u64>, bytes: &[u8]) -> Result<(), HistogramError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| HistogramError(format!("{e:?}")))?;
    into.add(&h).map_err(|e| HistogramError(format!("{e:?}")))
}

impl UpstreamWindow {
    /// Attempts in the window.
    pub fn attempts(&self) -> u64 {
        self.successes + self.client_errors + self.errors + self.timeouts
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn histograms_round_trip_small() {
        let mut h = empty_histogram();
        for i in 1..=5_000u64 {
            h.record(i * 37 % 200_000 + 1).unwrap();
        }
        let bytes = encode_histogram(&h).unwrap();
        assert!(bytes.len() < 4_096, "{} bytes", bytes.len());
        let mut back = empty_histogram();
        add_encoded(&mut back, &bytes).unwrap();
        add_encoded(&mut back, &[]).unwrap();
        assert_eq!(back.len(), h.len());
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
        assert!(encode_histogram(&empty_histogram()).unwrap().is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut h = empty_histogram();
        assert!(add_encoded(&mut h, b"not a histogram").is_err());
    }
}
