//! What came back: per-request records, outcome counts, histograms and the summary.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::LoadError;

/// Highest latency the histograms resolve (one hour, in microseconds); longer
/// values are clamped to it.
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;
/// Significant decimal digits kept by the histograms (0.1% precision).
const HISTOGRAM_DIGITS: u8 = 3;

/// How one request ended, so a run's failures can be told apart (a chaos run
/// cares whether the proxy answered 503 or the connection broke).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A 2xx answer whose body was read to the end.
    Ok,
    /// A non-2xx answer (its body was read too).
    Status(u16),
    /// No connection could be made.
    Connect,
    /// The connection broke after it was made, before the answer's headers.
    Transport,
    /// The request took longer than the run's timeout.
    Timeout,
    /// The answer's body broke off.
    Body,
    /// Not sent: the open loop's in-flight cap was reached.
    Dropped,
}

/// One request, as the chaos suite replays it: when it was due, how it
/// ended, how long it took and which upstream answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Index of the spec in the run's [`Mix`](super::Mix).
    pub spec: usize,
    /// When the request was due, in microseconds from the start of the run.
    pub scheduled_us: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// From the scheduled time to the end of the answer's body, in
    /// microseconds (`None` when dropped).
    pub latency_us: Option<u64>,
    /// From the scheduled time to the headers (plain) or to the first body
    /// chunk (stream), in microseconds; `None` when it never came.
    pub ttfb_us: Option<u64>,
    /// The `x-meridian-upstream` answer header, when present.
    pub upstream: Option<String>,
    /// The `x-meridian-attempts` answer header, when present and numeric.
    pub attempts: Option<u32>,
}

impl Record {
    /// The record of a request that was due but not sent.
    pub(crate) fn dropped(spec: usize, scheduled: Duration) -> Self {
        Self {
            spec,
            scheduled_us: micros(scheduled),
            outcome: Outcome::Dropped,
            latency_us: None,
            ttfb_us: None,
            upstream: None,
            attempts: None,
        }
    }
}

/// Whole microseconds in `d`, saturating.
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Requests counted by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// 2xx answers read to the end.
    pub ok: u64,
    /// Non-2xx answers by status code.
    pub http_status: BTreeMap<u16, u64>,
    /// Connection failures.
    pub connect_error: u64,
    /// Connections broken before the answer's headers.
    pub transport_error: u64,
    /// Requests over the timeout.
    pub timeout: u64,
    /// Bodies broken off.
    pub body_error: u64,
    /// Requests not sent because of the in-flight cap.
    pub dropped: u64,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Status(code) => *self.http_status.entry(code).or_default() += 1,
            Outcome::Connect => self.connect_error += 1,
            Outcome::Transport => self.transport_error += 1,
            Outcome::Timeout => self.timeout += 1,
            Outcome::Body => self.body_error += 1,
            Outcome::Dropped => self.dropped += 1,
        }
    }

    fn merge(&mut self, other: &Counts) {
        self.ok += other.ok;
        for (code, n) in &other.http_status {
            *self.http_status.entry(*code).or_default() += n;
        }
        self.connect_error += other.connect_error;
        self.transport_error += other.transport_error;
        self.timeout += other.timeout;
        self.body_error += other.body_error;
        self.dropped += other.dropped;
    }

    /// Every request that was due, sent or not.
    pub fn total(&self) -> u64 {
        self.ok + self.failed()
    }

    /// Every request that did not end [`Outcome::Ok`].
    pub fn failed(&self) -> u64 {
        self.http_status.values().sum::<u64>()
            + self.connect_error
            + self.transport_error
            + self.timeout
            + self.body_error
            + self.dropped
    }
}

/// The usual latency quantiles of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

impl Percentiles {
    /// Quantiles of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// A run in a few numbers, ready to print or serialize.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The open loop's arrival rate (requests per second); `None` in closed loop.
    pub offered_rate: Option<f64>,
    /// Ok answers per second of wall time.
    pub achieved_rate: f64,
    /// From the start of the run until its last request ended, in seconds.
    pub wall_secs: f64,
    /// Requests by outcome.
    pub counts: Counts,
    /// Latency of ok requests (scheduled time to end of body), microseconds.
    pub latency_us: Percentiles,
    /// TTFB of ok requests (headers for plain, first chunk for streams), microseconds.
    pub ttfb_us: Percentiles,
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The figures most callers want.
    pub summary: Summary,
    /// Latency of ok requests, microseconds; merge or query it for more.
    pub latency: Histogram<u64>,
    /// TTFB of ok requests, microseconds.
    pub ttfb: Histogram<u64>,
    /// Every request, in completion order, when [`RunOptions::keep_records`](super::RunOptions::keep_records) was set.
    pub records: Option<Vec<Record>>,
}

/// Collects records during a run. Latency and TTFB histograms hold ok
/// requests only: failures are counted by outcome, so a fast error cannot
/// make a run look faster.
#[derive(Debug)]
pub(crate) struct Recorder {
    latency: Histogram<u64>,
    ttfb: Histogram<u64>,
    counts: Counts,
    records: Option<Vec<Record>>,
}

impl Recorder {
    pub(crate) fn new(keep_records: bool) -> Result<Self, LoadError> {
        Ok(Self {
            latency: histogram()?,
            ttfb: histogram()?,
            counts: Counts::default(),
            records: keep_records.then(Vec::new),
        })
    }

    pub(crate) fn record(&mut self, record: Record) {
        self.counts.add(record.outcome);
        if record.outcome == Outcome::Ok {
            if let Some(us) = record.latency_us {
                self.latency.saturating_record(us);
            }
            if let Some(us) = record.ttfb_us {
                self.ttfb.saturating_record(us);
            }
        }
        if let Some(records) = &mut self.records {
            records.push(record);
        }
    }

    pub(crate) fn merge(&mut self, other: Recorder) -> Result<(), LoadError> {
        let err = |e: hdrhistogram::AdditionError| LoadError::Histogram(e.to_string());
        self.latency.add(&other.latency).map_err(err)?;
        self.ttfb.add(&other.ttfb).map_err(err)?;
        self.counts.merge(&other.counts);
        if let (Some(mine), Some(theirs)) = (&mut self.records, other.records) {
            mine.extend(theirs);
        }
        Ok(())
    }

    pub(crate) fn finish(self, offered_rate: Option<f64>, wall: Duration) -> Report {
        let wall_secs = wall.as_secs_f64();
        let achieved_rate = if wall_secs > 0.0 {
            self.counts.ok as f64 / wall_secs
        } else {
            0.0
        };
        Report {
            summary: Summary {
                offered_rate,
                achieved_rate,
                wall_secs,
                counts: self.counts,
                latency_us: Percentiles::of(&self.latency),
                ttfb_us: Percentiles::of(&self.ttfb),
            },
            latency: self.latency,
            ttfb: self.ttfb,
            records: self.records,
        }
    }
}

fn histogram() -> Result<Histogram<u64>, LoadError> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_DIGITS)
        .map_err(|e| LoadError::Histogram(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn done(outcome: Outcome, latency_us: u64) -> Record {
        Record {
            spec: 0,
            scheduled_us: 0,
            outcome,
            latency_us: Some(latency_us),
            ttfb_us: Some(latency_us / 2),
            upstream: None,
            attempts: None,
        }
    }

    #[test]
    fn summary_counts_outcomes_and_times_only_ok_requests() {
        let mut rec = Recorder::new(true).unwrap();
        for us in 1..=1000 {
            rec.record(done(Outcome::Ok, us * 10));
        }
        rec.record(done(Outcome::Status(503), 1));
        rec.record(done(Outcome::Status(503), 1));
        rec.record(done(Outcome::Timeout, 99_000_000));
        rec.record(Record::dropped(0, Duration::from_millis(3)));
        let report = rec.finish(Some(500.0), Duration::from_secs(2));
        let s = &report.summary;
        assert_eq!(s.counts.ok, 1000);
        assert_eq!(s.counts.http_status[&503], 2);
        assert_eq!(s.counts.timeout, 1);
        assert_eq!(s.counts.dropped, 1);
        assert_eq!(s.counts.failed(), 4);
        assert_eq!(s.counts.total(), 1004);
        assert!((s.achieved_rate - 500.0).abs() < 1e-9);
        assert_eq!(s.latency_us.count, 1000);
        // HDR keeps 3 significant digits: allow 0.1%.
        let near = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(near(s.latency_us.p50, 5_000), "{}", s.latency_us.p50);
        assert!(near(s.latency_us.p90, 9_000), "{}", s.latency_us.p90);
        assert!(near(s.latency_us.p99, 9_900), "{}", s.latency_us.p99);
        assert!(near(s.latency_us.p999, 9_990), "{}", s.latency_us.p999);
        assert!(near(s.latency_us.max, 10_000), "{}", s.latency_us.max);
        assert!(near(s.ttfb_us.p50, 2_500), "{}", s.ttfb_us.p50);
        assert_eq!(report.records.unwrap().len(), 1004);
    }

    #[test]
    fn merge_adds_counts_histograms_and_records() {
        let mut a = Recorder::new(true).unwrap();
        let mut b = Recorder::new(true).unwrap();
        a.record(done(Outcome::Ok, 100));
        b.record(done(Outcome::Ok, 300));
        b.record(done(Outcome::Connect, 5));
        a.merge(b).unwrap();
        let report = a.finish(None, Duration::ZERO);
        assert_eq!(report.summary.counts.ok, 2);
        assert_eq!(report.summary.counts.connect_error, 1);
        assert_eq!(report.summary.achieved_rate, 0.0);
        assert_eq!(report.latency.len(), 2);
        assert_eq!(report.records.unwrap().len(), 3);
    }

    #[test]
    fn empty_run_has_zero_percentiles_and_no_records_unless_asked() {
        let report = Recorder::new(false)
            .unwrap()
            .finish(None, Duration::from_secs(1));
        assert_eq!(report.summary.latency_us, Percentiles::default());
        assert!(report.records.is_none());
    }
}
