//! Who may hold a connection, and for how long. Both listeners (data plane
//! and admin) hold their clients to the same [`Limits`]: a connection must
//! send a request head (or open an h2 stream) within the header timeout, is
//! closed once idle for the idle timeout, may open a bounded number of h2
//! streams, and the listener keeps at most `max_connections` open: past
//! that a new connection takes the place of the oldest idle one
//! ([`Displace`]), or, when every connection is in a request, is answered a
//! short JSON 503 and closed ([`Gate`]). Without these, clients that connect
//! and never speak hold a descriptor each until the process runs out.
//!
//! The accept loop in the parent module asks the [`Gate`] for each
//! connection and its watchdog reads [`Limits::close_at`]; what is decided
//! here takes no socket, and its clock is passed in.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::closing::{Closing, Why};
use super::stall::Stalls;

/// How long a refused connection is kept to read what the client sent, so
/// that closing it does not reset the connection before the client has read
/// the 503.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// Refused connections lingering at once per listener; past it a refused
/// connection is closed at once.
const MAX_LINGERING: usize = 64;
/// At most one log line per this period about refused connections.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// How a listener holds its client connections (`[connections]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// A new connection must complete a request head (or open an h2
    /// stream) within this time.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress is closed after this long.
    pub idle_timeout: Duration,
    /// Open connections on the listener (all its workers together).
    pub max_connections: usize,
    /// Concurrent h2 streams per connection.
    pub max_h2_streams: u32,
    /// h2 keep-alive ping interval (and ack timeout); `None`: no pings.
    pub h2_keepalive: Option<Duration>,
}

impl Limits {
    /// The data plane's limits.
    pub fn data(config: &proto::config::ConnectionsConfig) -> Self {
        Self::with_cap(config, config.max_connections)
    }

    /// The admin listener's limits.
    pub fn admin(config: &proto::config::ConnectionsConfig) -> Self {
        Self::with_cap(config, config.admin_max_connections)
    }

    fn with_cap(config: &proto::config::ConnectionsConfig, max_connections: usize) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            max_connections,
            max_h2_streams: config.max_h2_streams,
            h2_keepalive: (config.h2_keepalive_interval_ms > 0)
                .then(|| Duration::from_millis(config.h2_keepalive_interval_ms)),
        }
    }

    /// When a connection born at `born`, in the state `activity`, is to be
    /// closed; `None` while a request is in progress (its body and request
    /// timeouts bound it, not the connection's).
    pub(super) fn close_at(&self, born: Instant, activity: ActivityState) -> Option<Instant> {
        if activity.active > 0 {
            None
        } else if !activity.seen_request {
            Some(born + self.header_read_timeout)
        } else {
            Some(born + activity.last_end + self.idle_timeout)
        }
    }
}

/// What a connection is doing, as its watchdog sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ActivityState {
    /// Requests in progress (for h2, streams being answered).
    active: usize,
    /// Whether any request has started on it.
    seen_request: bool,
    /// When the last request ended, from the connection's birth.
    last_end: Duration,
}

/// One connection's requests, updated by its service and read by its
/// watchdog.
pub(super) struct Activity {
    pub(super) born: Instant,
    active: AtomicUsize,
    seen_request: AtomicBool,
    last_end_ms: AtomicU64,
    /// Told to close: a newcomer needs its place (see [`Displace`]), or
    /// the node is stopping.
    pub(super) closing: Closing,
    /// Its answers, and which of them wait on the client.
    pub(super) stalls: Stalls,
}

impl Activity {
    pub(super) fn new(born: Instant) -> Arc<Self> {
        Arc::new(Self {
            born,
            active: AtomicUsize::new(0),
            seen_request: AtomicBool::new(false),
            last_end_ms: AtomicU64::new(0),
            closing: Closing::default(),
            stalls: Stalls::default(),
        })
    }

    pub(super) fn begin(self: &Arc<Self>) -> InRequest {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.seen_request.store(true, Ordering::Relaxed);
        InRequest(self.clone())
    }

    pub(super) fn state(&self) -> ActivityState {
        ActivityState {
            active: self.active.load(Ordering::Relaxed),
            seen_request: self.seen_request.load(Ordering::Relaxed),
            last_end: Duration::from_millis(self.last_end_ms.load(Ordering::Relaxed)),
        }
    }
}

/// A request in progress on its connection, until its answer has been sent
/// (or abandoned).
pub(super) struct InRequest(Arc<Activity>);

impl Drop for InRequest {
    fn drop(&mut self) {
        let since = Instant::now().saturating_duration_since(self.0.born);
        let ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        self.0.last_end_ms.store(ms, Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One listener's count of open connections, shared by its workers, and
/// the refusal past its cap.
pub struct Gate {
    what: &'static str,
    max: usize,
    open: AtomicUsize,
    lingering: AtomicUsize,
    refusals: Mutex<RefusalLog>,
    refusal: Bytes,
    displace: Mutex<Displace>,
}

impl Gate {
    /// A gate letting `max` connections of the `what` listener in.
    pub fn new(what: &'static str, max: usize) -> Arc<Self> {
        let body = crate::error::error_json(
            &format!(
                "Meridian's {what} listener is at its limit of {max} open connections; retry shortly."
            ),
            "server_error",
            None,
            Some("too_many_connections"),
        );
        let mut refusal = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        refusal.extend_from_slice(&body);
        Arc::new(Self {
            what,
            max,
            open: AtomicUsize::new(0),
            lingering: AtomicUsize::new(0),
            refusals: Mutex::new(RefusalLog::default()),
            refusal: Bytes::from(refusal),
            displace: Mutex::new(Displace::default()),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts a new connection in: under the cap, or in the place of the
    /// oldest idle connection (told to close); `None` when the listener is
    /// full of connections in a request.
    pub(super) fn admit(self: &Arc<Self>) -> Option<Admitted> {
        if let Some(admitted) = self.enter() {
            return Some(admitted);
        }
        let displaced = match self.displace.lock() {
            Ok(mut displace) => displace.one(),
            Err(_) => false,
        };
        displaced.then(|| self.enter_over())
    }

    /// Remembers a new connection as one that may later give way.
    pub(super) fn track(&self, activity: &Arc<Activity>) {
        if let Ok(mut displace) = self.displace.lock() {
            displace.push(activity, self.max);
        }
    }

    fn enter(self: &Arc<Self>) -> Option<Admitted> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Admitted(self.clone()))
    }

    /// Counts a connection past the cap, in the place of one just told to
    /// close.
    fn enter_over(self: &Arc<Self>) -> Admitted {
        self.open.fetch_add(1, Ordering::Relaxed);
        Admitted(self.clone())
    }

    /// Answers a connection past the cap with a 503 and closes it; logs at
    /// most once per [`REFUSAL_LOG_EVERY`].
    pub(super) fn refuse(self: &Arc<Self>, mut stream: TcpStream, peer: SocketAddr) {
        let report = match self.refusals.lock() {
            Ok(mut log) => log.note(Instant::now(), REFUSAL_LOG_EVERY),
            Err(_) => None,
        };
        if let Some(refused) = report {
            tracing::warn!(
                listener = self.what,
                max_connections = self.max,
                refused,
                last_peer = %peer,
                "connections refused: the listener is at connections.{}",
                if self.what == "admin" { "admin_max_connections" } else { "max_connections" }
            );
        }
        // A fresh socket's send buffer is empty: the answer fits at once.
        let _ = stream.try_write(&self.refusal);
        if self.lingering.fetch_add(1, Ordering::Relaxed) >= MAX_LINGERING {
            self.lingering.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let gate = self.clone();
        tokio::spawn(async move {
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            let drain = async {
                let mut read = 0usize;
                while read < 64 << 10 {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n,
                    }
                }
            };
            let _ = tokio::time::timeout(REFUSAL_LINGER, drain).await;
            gate.lingering.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// One connection counted in its listener's [`Gate`] until dropped.
pub(super) struct Admitted(Arc<Gate>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One listener's connections (all its workers), oldest first. When the
/// listener is full, a
/// new connection takes the place of the oldest one with no request in
/// progress (as nginx reuses idle keep-alive connections when it runs out):
/// a flood of connections that never speak then delays clients that do by
/// nothing, instead of locking them out until the header timeout.
#[derive(Default)]
struct Displace {
    queue: VecDeque<Weak<Activity>>,
}

impl Displace {
    /// Connections looked at per newcomer before giving up (the rest are
    /// busy with requests).
    const SCAN: usize = 64;

    fn push(&mut self, activity: &Arc<Activity>, max: usize) {
        self.queue.push_back(Arc::downgrade(activity));
        // Closed connections leave dead entries behind; sweep them now and
        // then so the queue stays about as long as the connections open.
        if self.queue.len() > 2 * max + Self::SCAN {
            self.queue.retain(|w| w.strong_count() > 0);
        }
    }

    /// Tells the oldest connection with no request in progress to close;
    /// false when none was found among the oldest [`Self::SCAN`].
    fn one(&mut self) -> bool {
        for _ in 0..Self::SCAN {
            let Some(oldest) = self.queue.pop_front() else {
                return false;
            };
            let Some(activity) = oldest.upgrade() else {
                continue;
            };
            if activity.active.load(Ordering::Relaxed) == 0 {
                activity.closing.close(Why::Displaced);
                return true;
            }
            // Busy: it goes to the back, as recently used.
            self.queue.push_back(oldest);
        }
        false
    }
}

/// Refusals since the last log line, and when that was.
#[derive(Debug, Default)]
struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    /// Counts one refusal; returns how many to report when a line is due.
    fn note(&mut self, now: Instant, every: Duration) -> Option<u64> {
        self.unlogged += 1;
        let due = self.last.is_none_or(|last| now >= last + every);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 2,
            max_h2_streams: 8,
            h2_keepalive: None,
        }
    }

    fn state(active: usize, seen_request: bool, last_end_s: u64) -> ActivityState {
        ActivityState {
            active,
            seen_request,
            last_end: Duration::from_secs(last_end_s),
        }
    }

    #[test]
    fn a_silent_connection_gets_the_header_timeout() {
        let born = Instant::now();
        let at = limits().close_at(born, state(0, false, 0));
        assert_eq!(at, Some(born + Duration::from_secs(10)));
    }

    #[test]
    fn an_idle_connection_gets_the_idle_timeout_from_its_last_answer() {
        let born = Instant::now();
        let at = limits().close_at(born, state(0, true, 5));
        assert_eq!(at, Some(born + Duration::from_secs(65)));
    }

    #[test]
    fn a_connection_in_a_request_is_not_timed_out_by_the_watchdog() {
        let born = Instant::now();
        assert_eq!(limits().close_at(born, state(1, true, 0)), None);
        assert_eq!(limits().close_at(born, state(3, false, 0)), None);
    }

    #[test]
    fn the_gate_counts_and_refuses_past_its_cap() {
        let gate = Gate::new("test", 2);
        let a = gate.enter().unwrap();
        let b = gate.enter().unwrap();
        assert!(gate.enter().is_none());
        assert_eq!(gate.open(), 2);
        drop(a);
        let c = gate.enter().unwrap();
        assert_eq!(gate.open(), 2);
        drop((b, c));
        assert_eq!(gate.open(), 0);
    }

    #[test]
    fn the_refusal_is_a_complete_json_503() {
        let gate = Gate::new("API", 5);
        let text = std::str::from_utf8(&gate.refusal).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "too_many_connections");
    }

    #[test]
    fn a_newcomer_displaces_the_oldest_idle_connection_never_a_busy_one() {
        let now = Instant::now();
        let (busy, idle_old, idle_new) =
            (Activity::new(now), Activity::new(now), Activity::new(now));
        let _in_request = busy.begin();
        let mut displace = Displace::default();
        for a in [&busy, &idle_old, &idle_new] {
            displace.push(a, 10);
        }
        assert!(displace.one());
        // The busy one was skipped, the oldest idle one told to close.
        assert_eq!(idle_old.closing.why(), Some(Why::Displaced));
        assert_eq!(idle_new.closing.why(), None);
        assert_eq!(busy.closing.why(), None);
        assert!(displace.one());
        // Only the busy one is left: nobody to displace.
        assert!(!displace.one());
        drop(busy);
        let mut empty = Displace::default();
        assert!(!empty.one());
    }

    #[test]
    fn closed_connections_are_swept_from_the_queue() {
        let mut displace = Displace::default();
        let live = Activity::new(Instant::now());
        displace.push(&live, 1);
        for _ in 0..200 {
            displace.push(&Activity::new(Instant::now()), 1);
        }
        assert!(displace.queue.len() <= 2 + Displace::SCAN + 1);
        assert!(displace.queue.iter().any(|w| w.strong_count() > 0));
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_period() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        assert_eq!(log.note(t0, every), Some(1));
        assert_eq!(log.note(t0 + Duration::from_secs(1), every), None);
        assert_eq!(log.note(t0 + Duration::from_secs(9), every), None);
        assert_eq!(log.note(t0 + Duration::from_secs(10), every), Some(3));
        assert_eq!(log.note(t0 + Duration::from_secs(11), every), None);
    }
}
