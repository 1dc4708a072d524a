//! A lock-free sliding-window counter, per key and per node: two fixed
//! windows (the current one and the one before), and the estimate
//! `previous × (1 − elapsed / window) + current`, as Cloudflare counts
//! rates. The whole state is one `AtomicU64` updated with a CAS loop:
//!
//! ```text
//!  63      56 55            28 27             0
//! | window % 256 | current count | previous count |
//! ```
//!
//! Counts saturate at 2^28 − 1 per window. The window index is kept modulo
//! 256, so a counter left untouched for a multiple of 256 windows to the
//! window reads its old counts for that one window (a too-low allowance for
//! at most a minute, never a too-high one past the limit's own figures).
//!
//! The time is passed in (`now_ms`, any monotonic millisecond clock), so
//! every decision here is pure and tested without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};

/// A window of one minute: the length of the request and token limits.
pub const MINUTE_MS: u64 = 60_000;

const COUNT_BITS: u32 = 28;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

fn pack(index: u64, current: u64, previous: u64) -> u64 {
    ((index & 0xff) << 56) | (current.min(COUNT_MAX) << COUNT_BITS) | previous.min(COUNT_MAX)
}

fn unpack(v: u64) -> (u64, u64, u64) {
    (v >> 56, (v >> COUNT_BITS) & COUNT_MAX, v & COUNT_MAX)
}

/// Why a counter refused, and for how long it will.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refused {
    /// Milliseconds until the same amount would be admitted, if nothing
    /// else is counted meanwhile.
    pub retry_after_ms: u64,
}

/// The counts of the current and previous windows as seen at a moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    /// Counted in the window `now` falls in.
    pub current: u64,
    /// Counted in the window before it.
    pub previous: u64,
    /// Milliseconds since the current window began.
    pub elapsed_ms: u64,
    /// The window's length.
    pub window_ms: u64,
}

impl View {
    /// `previous × (1 − elapsed / window) + current`.
    pub fn estimate(&self) -> f64 {
        let left = 1.0 - self.elapsed_ms as f64 / self.window_ms as f64;
        self.previous as f64 * left + self.current as f64
    }

    /// Milliseconds until the estimate plus `n` is at most `limit`, with
    /// nothing more counted; 0 when it is already.
    pub fn wait_for(&self, n: f64, limit: f64) -> u64 {
        let w = self.window_ms as f64;
        let room = limit - n;
        if self.estimate() <= room {
            return 0;
        }
        let cur = self.current as f64;
        let wait = if room >= cur && self.previous > 0 {
            // Within this window, as the previous one's weight decays.
            let t = w * (1.0 - (room - cur) / self.previous as f64);
            t - self.elapsed_ms as f64
        } else if room >= 0.0 && cur > 0.0 {
            // In the next window, as this one's count decays.
            let t = w * (1.0 - room / cur);
            (w - self.elapsed_ms as f64) + t
        } else {
            // More than the limit at once: once both windows are gone.
            2.0 * w - self.elapsed_ms as f64
        };
        // Less a hair of float error, so an exact wait is not a millisecond long.
        (wait.max(1.0) - 1e-6).ceil() as u64
    }

    /// Milliseconds until the counter is back to its initial state (both
    /// windows' counts gone): OpenAI's "reset".
    pub fn reset_ms(&self) -> u64 {
        let to_end = self.window_ms - self.elapsed_ms;
        if self.current > 0 {
            to_end + self.window_ms
        } else if self.previous > 0 {
            to_end
        } else {
            0
        }
    }
}

/// One sliding-window counter.
#[derive(Debug, Default)]
pub struct Window {
    state: AtomicU64,
}

impl Window {
    /// The counts as of `now_ms` for windows of `window_ms`.
    pub fn view(&self, now_ms: u64, window_ms: u64) -> View {
        roll(self.state.load(Ordering::Relaxed), now_ms, window_ms).1
    }

    /// Counts `n` if the estimate plus `n` stays within `limit` (requests:
    /// admit when estimate + 1 <= limit), else says how long to wait.
    pub fn try_add(
        &self,
        now_ms: u64,
        window_ms: u64,
        n: u64,
        limit: f64,
    ) -> Result<View, Refused> {
        self.update(now_ms, window_ms, |view| {
            if view.estimate() + n as f64 <= limit {
                Ok(n)
            } else {
                Err(Refused {
                    retry_after_ms: view.wait_for(n as f64, limit),
                })
            }
        })
    }

    /// Counts `n` whatever the estimate (tokens once an answer's usage is
    /// known; requests asked, for the demand).
    pub fn add(&self, now_ms: u64, window_ms: u64, n: u64) -> View {
        // Never refused: the decision admits any amount.
        self.update(now_ms, window_ms, |_| Ok(n))
            .unwrap_or_else(|_| self.view(now_ms, window_ms))
    }

    /// Takes back `n` counted in the current window (a request counted,
    /// then refused by a later check). Nothing if the window has turned.
    pub fn take_back(&self, now_ms: u64, window_ms: u64, n: u64) {
        let index = now_ms / window_ms;
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
                let (stored, current, previous) = unpack(v);
                (stored == index & 0xff).then(|| pack(index, current.saturating_sub(n), previous))
            });
    }

    fn update(
        &self,
        now_ms: u64,
        window_ms: u64,
        decide: impl Fn(&View) -> Result<u64, Refused>,
    ) -> Result<View, Refused> {
        let mut v = self.state.load(Ordering::Relaxed);
        loop {
            let (index, view) = roll(v, now_ms, window_ms);
            let n = decide(&view)?;
            let next = View {
                // Saturating: `n` may be an upstream's absurd token count.
                current: view.current.saturating_add(n).min(COUNT_MAX),
                ..view
            };
            match self.state.compare_exchange_weak(
                v,
                pack(index, next.current, next.previous),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(next),
                Err(actual) => v = actual,
            }
        }
    }
}

/// The stored state moved to the window `now_ms` falls in: its index and
/// its counts there.
fn roll(v: u64, now_ms: u64, window_ms: u64) -> (u64, View) {
    let window_ms = window_ms.max(1);
    let index = now_ms / window_ms;
    let (stored, current, previous) = unpack(v);
    let (current, previous) = match (index & 0xff).wrapping_sub(stored) & 0xff {
        0 => (current, previous),
        1 => (0, current),
        _ => (0, 0),
    };
    (
        index,
        View {
            current,
            previous,
            elapsed_ms: now_ms % window_ms,
            window_ms,
        },
    )
}

/// A duration in OpenAI's form for `x-ratelimit-reset-*`: `20ms`, `1s`,
/// `1.5s`, `6m0s`, `1h2m3s`.
pub fn openai_duration(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1000, rest % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// The share a node may use in the current minute: at most what it held
/// when the minute began, or an even split if that is more. A share that
/// falls takes effect at once; one that rises past both waits for the
/// next minute.
///
/// Why: a node's window keeps what it admitted under its old share. The
/// first node whose demand report lands gets most of a key's limit until
/// the others' land a moment later; had it used that share at once, the
/// others' admissions earlier in the minute would come on top (the chaos
/// run `tenants-partition` measured +13 % in such a minute). Rising up to
/// an even split at once keeps a node that comes back from its floor (cut
/// off, or new to the key) from waiting a minute. One `AtomicU64`: the
/// minute's index (32 bits) and the share it began with (an `f32`).
#[derive(Debug, Default)]
pub struct ShareCap {
    state: AtomicU64,
}

impl ShareCap {
    /// Records `share` as of `now_ms` and returns the share usable now;
    /// `even` is an even split between the participating nodes.
    pub fn apply(&self, now_ms: u64, share: f64, even: f64) -> f64 {
        let minute = (now_ms / MINUTE_MS) & 0xffff_ffff;
        let mut began = share as f32;
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                let (held_minute, held) = (v >> 32, f32::from_bits(v as u32));
                if v != 0 && held_minute == minute {
                    began = held;
                    return None;
                }
                began = share as f32;
                Some((minute << 32) | u64::from(began.to_bits()))
            });
        share.min(f64::from(began).max(even))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;

    use super::*;

    const W: u64 = MINUTE_MS;

    #[test]
    fn packing_round_trips_and_saturates() {
        assert_eq!(unpack(pack(7, 5, 9)), (7, 5, 9));
        assert_eq!(
            unpack(pack(300, COUNT_MAX + 5, 1)),
            (300 & 0xff, COUNT_MAX, 1)
        );
    }

    #[test]
    fn requests_are_admitted_up_to_the_limit_in_a_window() {
        let w = Window::default();
        let t0 = 10 * W;
        for i in 0..5 {
            let view = w.try_add(t0 + i, W, 1, 5.0).unwrap();
            assert_eq!(view.current, i + 1);
        }
        let refused = w.try_add(t0 + 10, W, 1, 5.0).unwrap_err();
        // Five counted this window: the next window's start plus the
        // time for 5 × (1 − t/W) to fall to 4.
        assert_eq!(refused.retry_after_ms, (W - 10) + W / 5);
        assert_eq!(w.view(t0 + 10, W).current, 5, "a refusal counts nothing");
    }

    #[test]
    fn the_previous_window_decays_across_the_current_one() {
        let w = Window::default();
        let t0 = 10 * W;
        for _ in 0..10 {
            w.try_add(t0, W, 1, 10.0).unwrap();
        }
        // Just after the rollover the previous ten still weigh ~10.
        assert!(w.try_add(11 * W, W, 1, 10.0).is_err());
        // Half-way, they weigh 5: five more fit.
        let half = 11 * W + W / 2;
        assert!((w.view(half, W).estimate() - 5.0).abs() < 1e-9);
        for _ in 0..5 {
            w.try_add(half, W, 1, 10.0).unwrap();
        }
        assert!(w.try_add(half, W, 1, 10.0).is_err());
        // Two windows later everything is gone; a gap of 256 windows wraps
        // to the same index and is documented, any other gap clears.
        assert_eq!(w.view(13 * W, W).estimate(), 0.0);
        assert_eq!(w.view(11 * W + 5 * W, W).estimate(), 0.0);
    }

    #[test]
    fn waits_are_exact_for_the_previous_window() {
        let view = View {
            current: 2,
            previous: 10,
            elapsed_ms: 0,
            window_ms: W,
        };
        // 10 × (1 − t/W) + 2 + 1 <= 10  ⇔  t >= 0.3 W.
        assert_eq!(view.wait_for(1.0, 10.0), 18_000);
        assert_eq!(view.reset_ms(), 2 * W);
        let idle = View {
            current: 0,
            previous: 3,
            elapsed_ms: W / 2,
            window_ms: W,
        };
        assert_eq!(idle.wait_for(1.0, 10.0), 0);
        assert_eq!(idle.reset_ms(), W / 2);
        // A request bigger than the limit waits for both windows to pass.
        assert_eq!(view.wait_for(20.0, 10.0), 2 * W);
    }

    /// An upstream's absurd token count fills the window; it neither
    /// overflows nor wraps it back to nearly empty.
    #[test]
    fn an_absurd_count_saturates_the_window() {
        let w = Window::default();
        w.add(0, W, 1);
        let full = w.add(1, W, u64::MAX).current;
        assert_eq!(full, COUNT_MAX);
        assert_eq!(w.view(2, W).current, COUNT_MAX);
    }

    #[test]
    fn tokens_are_added_whatever_the_estimate_and_taken_back_in_window() {
        let w = Window::default();
        w.add(0, W, 900);
        w.add(1, W, 300);
        assert_eq!(w.view(2, W).current, 1200);
        w.take_back(3, W, 200);
        assert_eq!(w.view(3, W).current, 1000);
        w.take_back(W + 1, W, 500);
        assert_eq!(
            w.view(W + 1, W).previous,
            1000,
            "a turned window is left alone"
        );
    }

    #[test]
    fn concurrent_admissions_never_pass_the_limit() {
        let w = Arc::new(Window::default());
        let admitted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (w, admitted) = (w.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        if w.try_add(5 * W + 7, W, 1, 2500.0).is_ok() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        w.add(5 * W + 7, W, 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 2500);
        assert_eq!(w.view(5 * W + 7, W).current, 2500);
    }

    #[test]
    fn durations_read_as_openai_writes_them() {
        assert_eq!(openai_duration(20), "20ms");
        assert_eq!(openai_duration(1000), "1s");
        assert_eq!(openai_duration(1500), "1.5s");
        assert_eq!(openai_duration(360_000), "6m0s");
        assert_eq!(openai_duration(61_250), "1m1.25s");
        assert_eq!(openai_duration(3_723_000), "1h2m3s");
    }

    #[test]
    fn a_share_rises_past_an_even_split_only_at_the_next_minute() {
        let cap = ShareCap::default();
        let t = 7 * MINUTE_MS;
        let even = 1.0 / 3.0;
        let near = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(near(cap.apply(t, 0.3, even), 0.3));
        assert!(
            near(cap.apply(t + 1_000, 0.9, even), even),
            "held to an even split"
        );
        assert!(near(cap.apply(t + 2_000, 0.1, even), 0.1), "falls at once");
        assert!(
            near(cap.apply(t + 3_000, 0.3, even), 0.3),
            "back up to even at once"
        );
        assert!(
            near(cap.apply(t + MINUTE_MS, 0.9, even), 0.9),
            "the next minute"
        );
        assert!(near(
            cap.apply(t + MINUTE_MS + 1, 1.0, even),
            0.9_f32 as f64
        ));
    }
}
