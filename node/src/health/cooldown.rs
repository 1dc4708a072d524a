//! Cooldowns: an upstream that answered 429 (or 529, or 503) with a
//! `Retry-After` is left alone for that long, on this node at once and, once
//! its health report commits, on every other node too.
//!
//! A cooled target is skipped like an open circuit (the next target or tier
//! is tried); when every target of a request is cooled, the request is
//! answered 429 with the longest wait left rather than hammering an account
//! the provider has asked to slow down.
//!
//! Nothing here reads a clock except [`now_ms`], the node's monotonic clock
//! that the shell passes in: the parse, the bounds and the decisions take
//! the time as an argument, so tests drive them without sleeping.
//!
//! # Bounds
//!
//! An upstream is not trusted: one answer may cool it for at most
//! [`MAX_COOLDOWN`] (10 minutes), however far its `Retry-After` reaches, and
//! a wait the node cannot read (garbage, a negative number, a date in the
//! past) cools nothing (the breaker still counts the failure). A cooldown
//! only ever lengthens to what the latest answer asks, up to the same cap,
//! so no answer can cool an upstream for longer than 10 minutes from the
//! moment it arrived. Between nodes a report carries what is left of this
//! node's own cooldowns when it was cut (no clock is compared across
//! nodes), and a receiver starts it when it first sees the report, again
//! capped; a node passes on only the cooldowns it saw itself, so a cooldown
//! does not echo around the cluster and outlive its wait.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderMap;
use http::header::RETRY_AFTER;

/// The longest one answer (or one report) may cool an upstream: an
/// upstream, or a peer relaying one, may ask for more, and gets this.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(600);

/// The node's monotonic clock in milliseconds since its first reading: the
/// time every cooldown is kept on, shared by the data plane and the board
/// follower.
pub fn now_ms() -> u64 {
    crate::clock::monotonic_ms()
}

/// Whether an answer with `status` is one whose `Retry-After` cools its
/// upstream: 429, Anthropic's 529 "overloaded", and 503.
pub fn cools(status: u16) -> bool {
    matches!(status, 429 | 503 | 529)
}

/// How long an answer's `Retry-After` asks to be left alone, read as
/// seconds (fractions allowed) or as an HTTP date against `now_unix_ms`
/// (the wall clock), capped at [`MAX_COOLDOWN`]. `None` for no header, a
/// wait of zero, a date already past, or anything unreadable.
pub fn requested(headers: &HeaderMap, now_unix_ms: u64) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => {
            Duration::from_secs_f64(secs.min(MAX_COOLDOWN.as_secs_f64()))
        }
        Ok(_) => return None,
        Err(_) => {
            let at = http_date_unix_ms(value)?;
            Duration::from_millis(at.checked_sub(now_unix_ms).filter(|&ms| ms > 0)?)
        }
    };
    Some(wait.min(MAX_COOLDOWN))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, the form RFC 9110
/// requires senders to use) in Unix milliseconds; `None` for anything else.
pub fn http_date_unix_ms(value: &str) -> Option<u64> {
    let mut parts = value.split_ascii_whitespace();
    let weekday = parts.next()?;
    if weekday.len() != 4 || !weekday.ends_with(',') {
        return None;
    }
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || parts.next().is_some() || hms.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || !(1970..=9999).contains(&year) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = u64::try_from(proto::calendar::days_from_civil(year, month, day)).ok()?;
    Some(((days * 24 + h) * 60 + m) * 60_000 + s * 1_000)
}

/// One upstream's cooldowns on this node, read by a request without a lock:
/// the one its own answers here asked for, and the longest one the
/// cluster's reports carry. Both are instants on [`now_ms`]'s clock; 0 is
/// none.
#[derive(Debug, Default)]
pub struct Cooldown {
    own_until: AtomicU64,
    shared_until: AtomicU64,
}

impl Cooldown {
    /// An answer here asked for `wait` at `now_ms`: the upstream is cooled
    /// until then (or longer, if it already was), capped at
    /// [`MAX_COOLDOWN`] from now. Returns whether a cooldown started (the
    /// upstream was not cooled before), which is when the cluster is told
    /// out of cycle.
    pub fn start(&self, now_ms: u64, wait: Duration) -> bool {
        let was = self.until();
        let until = now_ms.saturating_add(ms(wait.min(MAX_COOLDOWN)));
        self.own_until.fetch_max(until, Ordering::Relaxed);
        was <= now_ms
    }

    /// What the cluster's reports say: cooled until `until` (0: not at
    /// all), as [`from_reports`] worked it out. Replaces the last figure, so
    /// a cooldown another node saw ends here when its report ages out.
    pub fn set_shared(&self, until: u64) {
        self.shared_until.store(until, Ordering::Relaxed);
    }

    /// Until when the upstream is cooled, by this node's answers or the
    /// cluster's; 0 when it never was.
    pub fn until(&self) -> u64 {
        self.own_until
            .load(Ordering::Relaxed)
            .max(self.shared_until.load(Ordering::Relaxed))
    }

    /// How long the upstream stays cooled after `now_ms`; `None` when it is
    /// not cooled.
    pub fn left(&self, now_ms: u64) -> Option<Duration> {
        let until = self.until();
        (until > now_ms).then(|| Duration::from_millis(until - now_ms))
    }

    /// What is left at `now_ms` of the cooldown this node's own answers
    /// asked for, in milliseconds, for its health report (0: none).
    pub fn own_left_ms(&self, now_ms: u64) -> u64 {
        self.own_until
            .load(Ordering::Relaxed)
            .saturating_sub(now_ms)
    }
}

/// When each report was first seen here, with what was left of each of its
/// cooldowns then: (seen at, upstream id -> remaining ms).
pub type Heard<'a> = (u64, &'a BTreeMap<String, u64>);

/// Per upstream, until when the reports of other nodes cool it on this
/// node's clock: each report's remaining wait (capped at [`MAX_COOLDOWN`])
/// counted from when this node first saw the report, the longest over all
/// reports. Waits that ended before `now_ms` are left out.
pub fn from_reports<'a>(
    heard: impl IntoIterator<Item = Heard<'a>>,
    now_ms: u64,
) -> BTreeMap<&'a str, u64> {
    let cap = ms(MAX_COOLDOWN);
    let mut out: BTreeMap<&str, u64> = BTreeMap::new();
    for (seen_at, cooldowns) in heard {
        for (id, left) in cooldowns {
            let until = seen_at.saturating_add((*left).min(cap));
            if until > now_ms {
                let e = out.entry(id.as_str()).or_default();
                *e = (*e).max(until);
            }
        }
    }
    out
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        h
    }

    /// 2015-10-21T07:28:00Z in Unix milliseconds.
    const OCT_21: u64 = 1_445_412_480_000;

    #[test]
    fn reads_seconds_and_http_dates() {
        let read = |v| requested(&headers(v), OCT_21);
        assert_eq!(read("5"), Some(Duration::from_secs(5)));
        assert_eq!(read(" 1.5 "), Some(Duration::from_millis(1_500)));
        assert_eq!(
            http_date_unix_ms("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(OCT_21)
        );
        assert_eq!(
            read("Wed, 21 Oct 2015 07:28:07 GMT"),
            Some(Duration::from_secs(7))
        );
        assert_eq!(requested(&HeaderMap::new(), OCT_21), None);
        for status in [429, 503, 529] {
            assert!(cools(status));
        }
        assert!(!cools(500) && !cools(502));
    }

    #[test]
    fn hostile_values_are_capped_or_ignored() {
        let read = |v| requested(&headers(v), OCT_21);
        for capped in [
            "86400",
            "1e300",
            "999999999999999999999",
            "Fri, 01 Jan 9999 00:00:00 GMT",
        ] {
            assert_eq!(read(capped), Some(MAX_COOLDOWN), "{capped}");
        }
        for ignored in [
            "0",
            "-5",
            "NaN",
            "inf",
            "-inf",
            "soon",
            "",
            "Wed, 21 Oct 2015 07:27:59 GMT",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wed, 32 Oct 2015 07:28:00 GMT",
            "Wed, 21 Foo 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 25:28:00 GMT",
            "Wed, 21 Oct 2015 07:28:00 PST",
            "Wed, 21 Oct 2015 07:28 GMT",
            "Wed, 21 Oct 2015 07:28:00 GMT extra",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
        ] {
            assert_eq!(read(ignored), None, "{ignored:?}");
        }
        let mut bytes = HeaderMap::new();
        bytes.insert(RETRY_AFTER, HeaderValue::from_bytes(b"\xff5").unwrap());
        assert_eq!(requested(&bytes, OCT_21), None);
    }

    #[test]
    fn a_cooldown_lasts_its_wait_and_only_lengthens_up_to_the_cap() {
        let c = Cooldown::default();
        assert_eq!(c.left(0), None);
        assert!(c.start(1_000, Duration::from_secs(5)), "a new cooldown");
        assert_eq!(c.left(1_000), Some(Duration::from_secs(5)));
        assert_eq!(c.left(5_999), Some(Duration::from_millis(1)));
        assert_eq!(c.left(6_000), None, "over at its end");
        assert_eq!(c.own_left_ms(3_000), 3_000);
        assert_eq!(c.own_left_ms(7_000), 0);

        // A shorter wait while cooled does not shorten it; a longer one
        // lengthens it, but never past the cap from its own answer.
        assert!(c.start(6_000, Duration::from_secs(2)));
        assert!(!c.start(6_500, Duration::from_secs(1)));
        assert_eq!(c.until(), 8_000);
        assert!(!c.start(7_000, Duration::from_secs(100_000)));
        assert_eq!(c.until(), 7_000 + 600_000);
    }

    #[test]
    fn shared_cooldowns_count_from_when_the_report_was_seen() {
        let c = Cooldown::default();
        let a = BTreeMap::from([("x".to_string(), 5_000), ("y".to_string(), 100)]);
        let b = BTreeMap::from([("x".to_string(), 2_000_000_000)]);
        // Node a's report seen at 10 s, node b's (a liar) at 11 s.
        let until = from_reports([(10_000, &a), (11_000, &b)], 10_200);
        assert_eq!(until["x"], 11_000 + 600_000, "capped like an answer");
        assert!(!until.contains_key("y"), "over before now");
        let until = from_reports([(10_000, &a)], 10_050);
        assert_eq!(until["y"], 10_100);
        assert_eq!(until["x"], 15_000);
        c.set_shared(until["x"]);
        assert_eq!(c.left(12_000), Some(Duration::from_secs(3)));
        assert_eq!(c.own_left_ms(12_000), 0, "not this node's to pass on");
        c.set_shared(0);
        assert_eq!(c.left(12_000), None, "the report aged out");
    }
}
