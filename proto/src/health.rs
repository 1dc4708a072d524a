//! Health reports: what one node measured of every upstream over its recent
//! window, as it travels straight to every other member (earlier builds put
//! it in the Raft log: `Command::Report`).
//!
//! Histograms travel in HDR's V2 + DEFLATE encoding: a window of a few
//! thousand samples is a few hundred bytes, and any node can merge reports
//! from every region into one histogram without losing precision. Nothing
//! here reads a clock: a report carries its sender's sequence number, and
//! readers judge its age by when they first saw it.

use std::collections::BTreeMap;
use std::io::Read;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// Highest latency a health histogram tracks: ten minutes, in microseconds.
pub const MAX_MICROS: u64 = 600_000_000;

/// The longest window a report may cover: an hour. A node's window is
/// checked against it when its configuration is read (`health.window_slots`
/// × `health.slot_ms`), and a received report claiming more is refused, as
/// a report stops counting only once it is older than its window.
pub const MAX_WINDOW_MS: u64 = 3_600_000;

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
    /// Per upstream id, what was left, when the report was cut, of the
    /// cooldown this node's own answers asked for (a 429, 529 or 503 with
    /// `Retry-After`), in milliseconds. A remaining time, not an instant,
    /// so the nodes' clocks need not agree: a receiver counts it from when
    /// it first sees the report. Upstreams not cooled are left out.
    #[serde(default)]
    pub cooldowns: BTreeMap<String, u64>,
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
    match decode_histogram(bytes)? {
        Some(h) => into.add(&h).map_err(|e| HistogramError(format!("{e:?}"))),
        None => Ok(()),
    }
}

/// Decodes a histogram of a report once, so that a receiver merging the
/// same report into many boards inflates it only when it arrives. `None`
/// for the empty encoding (no samples).
pub fn decode_histogram(bytes: &[u8]) -> Result<Option<Histogram<u64>>, HistogramError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let plain = inflate_checked(bytes)?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &plain[..])
        .map_err(|e| HistogramError(format!("{e:?}")))?;
    // Into the health shape, so any two decoded histograms can be added.
    let mut shaped = empty_histogram();
    shaped
        .add(&h)
        .map_err(|e| HistogramError(format!("{e:?}")))?;
    Ok(Some(shaped))
}

/// HDR's V2 + DEFLATE cookie (what [`encode_histogram`] writes) and the
/// plain V2 cookie inside it.
const V2_DEFLATE_COOKIE: u32 = 0x1c84_9314;
const V2_COOKIE: u32 = 0x1c84_9313;
/// Bytes of a plain V2 header: cookie, payload length, normalizing offset,
/// significant digits, lowest and highest value, integer-to-double ratio.
const V2_HEADER: usize = 40;
/// The largest inflated histogram accepted: the health shape has about
/// 3,000 counters of at most 9 bytes each.
const MAX_INFLATED: usize = 64 << 10;

/// Inflates a V2 + DEFLATE histogram and checks its header before HDR's
/// deserializer reads it: that deserializer allocates (and zeroes) whatever
/// payload length and value range the header claims, so a report of forty
/// bytes could make every node allocate gigabytes.
fn inflate_checked(bytes: &[u8]) -> Result<Vec<u8>, HistogramError> {
    let bad = |what: &str| HistogramError(what.to_owned());
    if be_u32(bytes, 0) != Some(V2_DEFLATE_COOKIE) {
        return Err(bad("not an HDR V2 + DEFLATE histogram"));
    }
    let deflated = be_u32(bytes, 4)
        .and_then(|len| bytes.get(8..)?.get(..len as usize))
        .ok_or_else(|| bad("truncated"))?;
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(deflated)
        .take(MAX_INFLATED as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| HistogramError(format!("cannot inflate: {e}")))?;
    if plain.len() > MAX_INFLATED {
        return Err(bad("inflates past the size of a health histogram"));
    }
    let payload = be_u32(&plain, 4).map(|len| len as usize);
    let digits = be_u32(&plain, 12);
    let low = be_u64(&plain, 16);
    let high = be_u64(&plain, 24);
    let shaped = be_u32(&plain, 0) == Some(V2_COOKIE)
        && payload.is_some_and(|len| len <= plain.len().saturating_sub(V2_HEADER))
        && digits.is_some_and(|d| d <= u32::from(SIGFIG))
        && low.is_some_and(|low| low >= 1)
        && high.is_some_and(|high| high <= MAX_MICROS);
    if !shaped {
        return Err(bad("not a health histogram (header out of shape)"));
    }
    Ok(plain)
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

impl UpstreamWindow {
    /// Attempts in the window.
    pub fn attempts(&self) -> u64 {
        // Saturating: a report's counters come from another node.
        self.successes
            .saturating_add(self.client_errors)
            .saturating_add(self.errors)
            .saturating_add(self.timeouts)
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
