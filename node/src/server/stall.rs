//! Answers whose client takes none of them, on connections served by hyper
//! (h2c on the data plane, both HTTP versions on the admin listener).
//!
//! hyper polls an answer's body only when it can send what it gets: an h2
//! stream with window to spare, an HTTP/1.1 socket that takes writes. So a
//! body that handed over data and has not been polled since is waiting on
//! its client, and one that has waited the idle timeout is waiting on a
//! client that takes nothing (an h2 stream whose window it never opens,
//! while it answers pings). Its connection is then closed, and the request
//! (in the proxy: the upstream call and the in-flight slot) goes with it,
//! as the node's own HTTP/1.1 server does for a write that waits that long
//! (`h1::write`). A body that is itself waiting (for an upstream that is
//! thinking) is not waiting on its client, and is not counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// When a body handed its client data that has not been taken yet, as
/// [`crate::clock::monotonic_ms`] + 1; 0 when it is not waiting.
#[derive(Debug, Default)]
pub(super) struct Handed(AtomicU64);

impl Handed {
    pub(super) fn handed(&self, now_ms: u64) {
        self.0.store(now_ms.saturating_add(1), Ordering::Relaxed);
    }

    pub(super) fn taken(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// Since when it has waited, if it waits.
    fn waiting_since(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            at => Some(at - 1),
        }
    }
}

/// One connection's answers still being sent, for its watchdog.
#[derive(Debug, Default)]
pub(super) struct Stalls {
    answers: Mutex<Vec<Weak<Handed>>>,
}

impl Stalls {
    /// A new answer's marker; it leaves the list once its body is dropped.
    pub(super) fn register(&self) -> Arc<Handed> {
        let handed = Arc::new(Handed::default());
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        // Answers end in any order; the ended ones go when there are many.
        if answers.len() >= 8 && answers.len().is_power_of_two() {
            answers.retain(|a| a.strong_count() > 0);
        }
        answers.push(Arc::downgrade(&handed));
        handed
    }

    /// The moment (in [`crate::clock::monotonic_ms`]) at which the answer
    /// that has waited longest on its client will have waited `limit_ms`;
    /// `None` when no answer waits.
    pub(super) fn stalled_at(&self, limit_ms: u64) -> Option<u64> {
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        answers.retain(|a| a.strong_count() > 0);
        answers
            .iter()
            .filter_map(|a| a.upgrade()?.waiting_since())
            .min()
            .map(|since| since.saturating_add(limit_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_waiting_longest_decides() {
        let stalls = Stalls::default();
        assert_eq!(stalls.stalled_at(300), None);
        let (a, b) = (stalls.register(), stalls.register());
        assert_eq!(stalls.stalled_at(300), None, "nothing handed yet");
        a.handed(1_000);
        b.handed(1_200);
        assert_eq!(stalls.stalled_at(300), Some(1_300));
        a.taken();
        assert_eq!(stalls.stalled_at(300), Some(1_500));
        // At the clock's first reading too.
        b.handed(0);
        assert_eq!(stalls.stalled_at(300), Some(300));
        drop(b);
        assert_eq!(stalls.stalled_at(300), None);
    }

    #[test]
    fn ended_answers_leave_the_list() {
        let stalls = Stalls::default();
        let kept = stalls.register();
        for _ in 0..1_000 {
            drop(stalls.register());
        }
        assert!(
            stalls
                .answers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
                < 20
        );
        kept.handed(5);
        assert_eq!(stalls.stalled_at(10), Some(15));
        assert_eq!(
            stalls
                .answers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            1
        );
    }
}
