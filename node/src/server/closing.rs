//! Telling a connection's task to close: a newcomer needs its place, or the
//! node is stopping. The task waits for this beside its connection and
//! polls it every time it wakes, for every read and write of every request,
//! so once the task's waker is known a poll is one atomic load: no lock, as
//! `tokio::sync::Notify` and `watch` take on each poll.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};

use futures_util::task::AtomicWaker;

/// Why a connection is told to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// The listener is full and this connection is idle: close it soon.
    Displaced,
    /// The node is stopping: finish the requests in flight, then close.
    Stopping,
}

impl Why {
    fn bit(self) -> u8 {
        match self {
            Why::Displaced => 1,
            Why::Stopping => 2,
        }
    }

    /// The reason the raised bits give; stopping wins, as the node's drain
    /// bounds it anyway.
    fn of(bits: u8) -> Option<Self> {
        if bits & Why::Stopping.bit() != 0 {
            Some(Why::Stopping)
        } else if bits & Why::Displaced.bit() != 0 {
            Some(Why::Displaced)
        } else {
            None
        }
    }
}

/// One connection's close signal.
#[derive(Debug, Default)]
pub(super) struct Closing {
    raised: AtomicU8,
    waker: AtomicWaker,
}

impl Closing {
    /// Raises `why` and wakes the connection's task.
    pub(super) fn close(&self, why: Why) {
        self.raised.fetch_or(why.bit(), Ordering::Release);
        self.waker.wake();
    }

    /// Why the connection was told to close, if it was.
    pub(super) fn why(&self) -> Option<Why> {
        Why::of(self.raised.load(Ordering::Acquire))
    }

    /// Resolves once the connection is told to close.
    pub(super) fn wait(&self) -> Wait<'_> {
        Wait {
            closing: self,
            registered: None,
        }
    }
}

/// [`Closing::wait`]'s future. It registers its task's waker on its first
/// poll, and again only when polled from another waker.
pub(super) struct Wait<'a> {
    closing: &'a Closing,
    registered: Option<Waker>,
}

impl Future for Wait<'_> {
    type Output = Why;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Why> {
        let this = self.get_mut();
        if !this
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            // Registered before the flag is read: a close raised in between
            // is seen now or wakes the task.
            this.closing.waker.register(cx.waker());
            this.registered = Some(cx.waker().clone());
        }
        match this.closing.why() {
            Some(why) => Poll::Ready(why),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn a_waiting_task_is_woken_once_and_learns_why() {
        let closing = Closing::default();
        let (count, w) = waker();
        let mut cx = Context::from_waker(&w);
        let mut wait = pin!(closing.wait());
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
        closing.close(Why::Displaced);
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(Why::Displaced));
    }

    #[test]
    fn a_close_raised_before_the_first_poll_is_seen_at_once() {
        let closing = Closing::default();
        closing.close(Why::Stopping);
        let (count, w) = waker();
        let mut cx = Context::from_waker(&w);
        assert_eq!(
            pin!(closing.wait()).poll(&mut cx),
            Poll::Ready(Why::Stopping)
        );
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn stopping_wins_over_displaced_whichever_came_first() {
        for order in [
            [Why::Displaced, Why::Stopping],
            [Why::Stopping, Why::Displaced],
        ] {
            let closing = Closing::default();
            for why in order {
                closing.close(why);
            }
            assert_eq!(closing.why(), Some(Why::Stopping));
        }
        assert_eq!(Closing::default().why(), None);
    }

    #[test]
    fn a_wait_moved_to_another_waker_wakes_that_one() {
        let closing = Closing::default();
        let (first, a) = waker();
        let (second, b) = waker();
        let mut wait = pin!(closing.wait());
        assert_eq!(
            wait.as_mut().poll(&mut Context::from_waker(&a)),
            Poll::Pending
        );
        assert_eq!(
            wait.as_mut().poll(&mut Context::from_waker(&b)),
            Poll::Pending
        );
        closing.close(Why::Displaced);
        assert_eq!(first.0.load(Ordering::Relaxed), 0);
        assert_eq!(second.0.load(Ordering::Relaxed), 1);
    }
}
