//! The log line's timestamp: RFC 3339 in UTC with microseconds, as
//! tracing-subscriber's `SystemTime` timer writes it, with the date and the
//! time of day worked out once a second per thread rather than for every
//! line (a line then costs one clock read and six digits).

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// The node's log timer, in text and JSON lines alike.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineTime;

thread_local! {
    /// Per thread, so that writing a line never waits on another thread.
    static SECOND: RefCell<Second> = RefCell::new(Second::default());
}

impl FormatTime for LineTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = SystemTime::now();
        SECOND.with_borrow_mut(|second| second.write(now, w))
    }
}

/// The whole second a thread wrote last, as its text up to the fraction
/// (`2026-12-01T12:13:29.`).
#[derive(Debug, Default)]
pub(super) struct Second {
    secs: Option<i64>,
    prefix: String,
}

impl Second {
    /// Writes `at`, reusing the last second's text while `at` is in it.
    pub(super) fn write(&mut self, at: SystemTime, w: &mut Writer<'_>) -> fmt::Result {
        let (secs, nanos) = since_epoch(at);
        if self.secs != Some(secs) {
            self.prefix.clear();
            if prefix(secs, &mut self.prefix).is_none() {
                // Past the years 9999 either way: a clock that wrong is
                // not worth a cache; the library's own arithmetic takes it.
                self.secs = None;
                return tracing_subscriber::fmt::time::SystemTime.format_time(w);
            }
            self.secs = Some(secs);
        }
        w.write_str(&self.prefix)?;
        let mut digits = *b"000000Z";
        let mut micros = nanos / 1_000;
        for digit in digits[..6].iter_mut().rev() {
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        w.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

/// Whole seconds since the epoch (floored, so before it too) and the
/// nanoseconds past them, as tracing-subscriber splits an instant.
fn since_epoch(at: SystemTime) -> (i64, u32) {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (-secs, 0),
                nanos => (-secs - 1, 1_000_000_000 - nanos),
            }
        }
    }
}

/// The text of second `secs` up to its fraction; `None` outside the years
/// the `time` crate represents (±9999).
fn prefix(secs: i64, out: &mut String) -> Option<()> {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    let year = t.year();
    if year < 0 {
        write!(out, "{year:05}").ok()?;
    } else {
        write!(out, "{year:04}").ok()?;
    }
    write!(
        out,
        "-{:02}-{:02}T{:02}:{:02}:{:02}.",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
    .ok()
}
