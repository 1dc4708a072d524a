//! Writes and linearizable reads: through the leader, wherever it is.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use proto::state::{Command, CommandResponse};
use raft::network::{ForwardError, Written};

use super::{Cluster, WriteError};

/// How long a linearizable read keeps asking a leader that missed its
/// quorum in one heartbeat round.
const RETRY_NO_QUORUM_FOR: Duration = Duration::from_secs(3);
/// The pause between two such asks.
const RETRY_READ_INDEX: Duration = Duration::from_millis(100);

impl Cluster {
    /// Proposes a command and returns once it is committed and applied on
    /// the leader. A follower forwards it over the Raft transport.
    pub async fn write(&self, command: Command) -> Result<CommandResponse, WriteError> {
        self.write_indexed(command).await.map(|w| w.response)
    }

    /// [`Cluster::write`], with the log index the command was committed at.
    pub async fn write_indexed(&self, command: Command) -> Result<Written, WriteError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let (leader, member) = self.leader().await?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt = async {
                if leader == self.id {
                    match self.raft.client_write(command.clone()).await {
                        Ok(written) => Ok(Written {
                            response: written.data,
                            index: written.log_id.index,
                        }),
                        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(None),
                        Err(e) => Err(Some(WriteError::Raft(e.to_string()))),
                    }
                } else {
                    match self.network.forward(leader, &member, command.clone()).await {
                        Ok(response) => Ok(response),
                        Err(ForwardError::NotLeader { .. }) => Err(None),
                        Err(ForwardError::Network { message, .. }) => {
                            Err(Some(WriteError::Unreachable(message)))
                        }
                        // No quorum is not reported on a write (the leader
                        // waits for one); the timeout below answers it.
                        Err(
                            ForwardError::Raft(message)
                            | ForwardError::NoQuorum(message)
                            | ForwardError::Fatal(message),
                        ) => Err(Some(WriteError::Raft(message))),
                    }
                }
            };
            // Without a quorum a write never commits: answer in time rather
            // than hold the caller.
            let outcome = match tokio::time::timeout(left, attempt).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Some(WriteError::NoQuorum(self.timeout))),
            };

            match outcome {
                Ok(response) => return Ok(response),
                Err(Some(e)) => return Err(e),
                // Leadership moved while we asked: ask the new leader.
                Err(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(None) => return Err(WriteError::NoLeader),
            }
        }
    }

    /// Waits until this node has applied everything committed before the
    /// call: the leader confirms its leadership with a quorum and names its
    /// read index, and this node waits to apply that far. After it, a read of
    /// [`Cluster::applied`] is linearizable.
    pub async fn linearizable(&self) -> Result<(), WriteError> {
        let deadline = tokio::time::Instant::now() + self.timeout.min(RETRY_NO_QUORUM_FOR);
        // The leader confirms itself with one heartbeat round; on a lossy
        // link a round can miss its quorum while the leader still has one.
        // And the leader this node knew may have just been deposed (it says
        // so, or, being this node, learns it now) while another is elected.
        // Ask again (briefly apart) for a few seconds rather than refuse a
        // write that the next round or the new leader lets through; a leader
        // that really lost its quorum is still refused within those seconds,
        // not after the whole write timeout.
        let index = loop {
            match self.read_index().await {
                Err(
                    WriteError::NoQuorum(_) | WriteError::Unreachable(_) | WriteError::NoLeader,
                ) if tokio::time::Instant::now() + RETRY_READ_INDEX < deadline => {
                    tokio::time::sleep(RETRY_READ_INDEX).await;
                }
                other => break other?,
            }
        };
        if let Some(index) = index {
            self.applied_at_least(index).await?;
        }
        Ok(())
    }

    /// Waits until this node has applied the entry at `index` (one it knows
    /// is committed).
    pub async fn applied_at_least(&self, index: u64) -> Result<(), WriteError> {
        self.raft
            .wait(Some(self.timeout))
            .applied_index_at_least(Some(index), "read your writes")
            .await
            .map(|_| ())
            .map_err(|e| WriteError::Raft(e.to_string()))
    }

    /// The index a linearizable read waits for, from the leader.
    async fn read_index(&self) -> Result<Option<u64>, WriteError> {
        let (leader, member) = self.leader().await?;
        let read_index = async {
            if leader == self.id {
                match self.raft.get_read_log_id().await {
                    Ok((read, _applied)) => Ok(read.map(|log_id| log_id.index)),
                    Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                        Err(WriteError::NoQuorum(self.timeout))
                    }
                    Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
                        Err(WriteError::NoLeader)
                    }
                    Err(e) => Err(WriteError::Raft(e.to_string())),
                }
            } else {
                self.network
                    .read_index(leader, &member)
                    .await
                    .map_err(|e| match e {
                        ForwardError::Network { message, .. } => WriteError::Unreachable(message),
                        ForwardError::NotLeader { .. } => WriteError::NoLeader,
                        ForwardError::NoQuorum(_) => WriteError::NoQuorum(self.timeout),
                        ForwardError::Raft(message) | ForwardError::Fatal(message) => {
                            WriteError::Raft(message)
                        }
                    })
            }
        };
        tokio::time::timeout(self.timeout, read_index)
            .await
            .map_err(|_| WriteError::NoQuorum(self.timeout))?
    }
}
