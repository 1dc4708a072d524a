//! A hyper connection driven to its end: closed gracefully when the node
//! stops or a newcomer needs its place, and once it has been silent past
//! its header timeout or idle past its idle timeout; dropped once an answer
//! has waited its idle timeout on a client that takes none of it
//! ([`super::stall`]). (The data plane's own HTTP/1.1 server runs the same
//! rules in its loop, [`super::h1`].)

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use tokio::time::Instant;

use super::closing::Why;
use super::limits::{Activity, Limits};

/// How long a connection closed by its idle or header timeout gets to say
/// goodbye (an h2 GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How long until the answer waiting longest on its client has waited the
/// idle timeout (zero: it has); `None` when no answer waits on its client.
fn stalled_in(activity: &Activity, limits: &Limits) -> Option<Duration> {
    let limit = u64::try_from(limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let at = activity.stalls.stalled_at(limit)?;
    let now = crate::clock::monotonic_ms();
    Some(Duration::from_millis(at.saturating_sub(now)))
}

/// Drives `conn` until it ends or is closed.
pub(super) async fn drive<C>(
    conn: C,
    activity: Arc<Activity>,
    limits: Arc<Limits>,
    peer: SocketAddr,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut conn = pin!(conn);
    let mut closing = pin!(activity.closing.wait());
    let first = limits
        .close_at(activity.born, activity.state())
        .unwrap_or_else(|| Instant::now() + limits.idle_timeout);
    let mut timer = pin!(tokio::time::sleep_until(first));
    let ended = loop {
        tokio::select! {
            ended = conn.as_mut() => break Some(ended),
            () = timer.as_mut() => {
                let now = Instant::now();
                match limits.close_at(activity.born, activity.state()) {
                    Some(at) if at <= now => {
                        tracing::debug!(%peer, "closing a silent or idle connection");
                        conn.as_mut().graceful_shutdown();
                        break tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await.ok();
                    }
                    Some(at) => timer.as_mut().reset(at),
                    None => match stalled_in(&activity, &limits) {
                        // An answer has waited the idle timeout on a client
                        // that takes nothing: a goodbye would wait on it too.
                        Some(left) if left.is_zero() => {
                            tracing::debug!(%peer, "closing a connection whose client takes none of its answer");
                            break None;
                        }
                        Some(left) => timer.as_mut().reset(now + left),
                        None => timer.as_mut().reset(now + limits.idle_timeout),
                    },
                }
            }
            why = closing.as_mut() => {
                conn.as_mut().graceful_shutdown();
                match why {
                    Why::Displaced => {
                        tracing::debug!(%peer, "closing an idle connection for a new one");
                        break tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await.ok();
                    }
                    // Lets requests in flight finish; the drain bounds the
                    // wait.
                    Why::Stopping => break Some(conn.as_mut().await),
                }
            }
        }
    };
    if let Some(Err(e)) = ended {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
