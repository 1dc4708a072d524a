//! Watching this node's Raft core: whether it still runs, and waiting for
//! it to stop.
//!
//! A node whose core has stopped (openraft reported a fatal error, or the
//! core's task panicked) can neither commit nor apply anything again, so
//! `/readyz` asks [`Cluster::core_failure`] and `meridian serve` exits when
//! [`Cluster::core_stopped`] returns, rather than serve as if it could.

use super::Cluster;
use raft::NodeId;

impl Cluster {
    /// Why this node's Raft core no longer runs, if it does not: openraft
    /// reported a fatal error, or the core's task ended (a panic in it drops
    /// its metrics channel without a word). Such a node can neither commit
    /// nor apply anything again, so it must not serve as if it could.
    pub fn core_failure(&self) -> Option<String> {
        let metrics = self.raft.metrics();
        let closed = metrics.has_changed().is_err();
        core_failure(&metrics.borrow().running_state, closed)
    }

    /// Waits until the Raft core stops (see [`Cluster::core_failure`]) and
    /// says why. Never returns while the core runs; the node's own
    /// [`Cluster::shutdown`] ends it too, so stop waiting before that.
    pub async fn core_stopped(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Some(why) = core_failure(&metrics.borrow_and_update().running_state, false) {
                return why;
            }
            if metrics.changed().await.is_err() {
                let last = metrics.borrow().running_state.clone();
                return core_failure(&last, true).unwrap_or_default();
            }
        }
    }
}

/// What the Raft core's last metrics say about it: `running_state` is
/// openraft's own verdict, `closed` that its metrics channel is gone (the
/// core task ended, by a panic if nobody shut it down).
fn core_failure(
    running_state: &Result<(), openraft::error::Fatal<NodeId>>,
    closed: bool,
) -> Option<String> {
    match running_state {
        Err(fatal) => Some(format!("openraft reported a fatal error: {fatal}")),
        Ok(()) if closed => Some("the Raft core task ended (it panicked)".to_string()),
        Ok(()) => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use proto::Config;

    use super::*;

    #[test]
    fn a_stopped_or_failed_core_is_a_failure() {
        use openraft::error::Fatal;
        assert_eq!(core_failure(&Ok(()), false), None);
        assert!(core_failure(&Ok(()), true).unwrap().contains("panicked"));
        let why = core_failure(&Err(Fatal::Panicked), false).unwrap();
        assert!(why.contains("fatal"), "{why}");
        assert!(core_failure(&Err(Fatal::Stopped), true).is_some());
    }

    /// A real Raft core (a node alone, on a real store) that stops is seen
    /// as stopped: by the check `/readyz` makes and by the watcher that
    /// makes `meridian serve` exit.
    #[tokio::test]
    async fn the_watcher_sees_the_core_stop() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::from_toml(
            "[node]\nid = 1\nregion = \"r\"\n\n[listen]\napi = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nraft = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        config.node.data_dir = dir.path().to_path_buf();
        let settings = crate::cluster::RaftSettings::new(&config).unwrap();
        let sink: raft::network::HealthSink = std::sync::Arc::new(|_, _| Ok(()));
        let cluster = Cluster::start(&settings, sink).await.unwrap();
        cluster
            .raft
            .wait(Some(Duration::from_secs(10)))
            .current_leader(1, "alone, it leads")
            .await
            .unwrap();
        assert_eq!(cluster.core_failure(), None);
        let watcher = {
            let cluster = cluster.clone();
            tokio::spawn(async move { cluster.core_stopped().await })
        };
        tokio::task::yield_now().await;
        assert!(
            !watcher.is_finished(),
            "the watcher fired on a running core"
        );
        cluster.raft.shutdown().await.unwrap();
        let why = tokio::time::timeout(Duration::from_secs(10), watcher)
            .await
            .expect("the watcher never saw the core stop")
            .unwrap();
        assert!(!why.is_empty());
        assert!(cluster.core_failure().is_some());
    }
}
