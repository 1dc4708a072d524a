//! The `date` field every answer carries, formatted once a second per
//! worker rather than once per answer: reading the wall clock and
//! formatting it for each answer is what hyper's server did, two clock
//! reads a request.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

/// An IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
type Formatted = [u8; 29];

thread_local! {
    static NOW: Cell<Option<Formatted>> = const { Cell::new(None) };
}

/// This worker's current `date` value: formatted on first use, then as
/// fresh as [`keep_fresh`] keeps it.
pub(in crate::server) fn now() -> Formatted {
    NOW.with(|now| match now.get() {
        Some(formatted) => formatted,
        None => {
            let formatted = format(SystemTime::now());
            now.set(Some(formatted));
            formatted
        }
    })
}

/// Refreshes this worker's `date` every second; runs until aborted. It
/// must run on the worker's own thread (a current-thread runtime), whose
/// thread-local it writes.
pub(in crate::server) async fn keep_fresh() {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let formatted = format(SystemTime::now());
        NOW.with(|now| now.set(Some(formatted)));
    }
}

fn format(at: SystemTime) -> Formatted {
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    let text = httpdate::fmt_http_date(at);
    if text.len() == out.len() {
        out.copy_from_slice(text.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_date_is_an_imf_fixdate_of_the_time_given() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(&format(at), b"Sun, 06 Nov 1994 08:49:37 GMT");
        let parsed = httpdate::parse_http_date(std::str::from_utf8(&now()).unwrap()).unwrap();
        let off = SystemTime::now().duration_since(parsed).unwrap_or_default();
        assert!(off < Duration::from_secs(5), "{off:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_worker_s_ticker_replaces_a_stale_date() {
        let stale = format(SystemTime::UNIX_EPOCH);
        NOW.with(|now| now.set(Some(stale)));
        assert_eq!(now(), stale);
        let ticker = tokio::spawn(keep_fresh());
        // The first tick is at once; the next a (paused) second later.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_ne!(now(), stale);
        NOW.with(|now| now.set(Some(stale)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_ne!(now(), stale);
        ticker.abort();
    }
}
