//! Writes and linearizable reads: through the leader, wherever it is.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use proto::state::{Command, CommandResponse, Member};
use raft::NodeId;
use raft::network::{ForwardError, Written};

use super::{Cluster, WriteError};

/// How long a linearizable read keeps asking a leader that missed its
/// quorum in one heartbeat round.
const RETRY_NO_QUORUM_FOR: Duration = Duration::from_secs(3);
/// The pause between two such asks.
const RETRY_READ_INDEX: Duration = Duration::from_millis(100);
/// The pause before a write is sent again to a leader that moved.
const RETRY_WRITE: Duration = Duration::from_millis(50);

impl Cluster {
    /// Proposes a command and returns once it is committed and applied on
    /// the leader. A follower forwards it over the Raft transport.
    pub async fn write(&self, command: Command) -> Result<CommandResponse, WriteError> {
        self.write_indexed(command).await.map(|w| w.response)
    }

    /// [`Cluster::write`], with the log index the command was committed at.
    ///
    /// Within the write timeout, a write whose leader moved is sent again to
    /// the new one: when the leader says it no longer leads, when it cannot
    /// be reached, and when this node learns of another leader while the
    /// write is in flight (the old one died: its answer would never come).
    /// Sending again is safe because every command is idempotent (a `put`
    /// sets, a delete of what is gone is refused, a top-up carries its id).
    /// A node that has heard no quorum for long refuses at once
    /// ([`WriteError::CutOff`]).
    pub async fn write_indexed(&self, command: Command) -> Result<Written, WriteError> {
        let started = tokio::time::Instant::now();
        let deadline = started + self.timeout;
        let mut last: Option<WriteError> = None;
        loop {
            let (leader, member) = match self.leader().await {
                Ok(found) => found,
                // When the leader it was sent to could not be reached and
                // none other came forward, say so rather than "no leader".
                Err(WriteError::NoLeader) => return Err(last.unwrap_or(WriteError::NoLeader)),
                Err(e) => return Err(e),
            };
            let outcome = tokio::select! {
                outcome = self.attempt(leader, &member, &command) => outcome,
                () = self.leader_moved(leader) => Err(None),
                // Without a quorum a write never commits: answer in time
                // rather than hold the caller.
                () = tokio::time::sleep_until(deadline) => {
                    return Err(WriteError::NoQuorum(self.timeout));
                }
                // This node lost its quorum while the write was in flight
                // (an isolated leader): no answer is coming. Whether it
                // commits later is unknown, so no quorum, not "nothing
                // proposed".
                _ = self.cut_off() => return Err(WriteError::NoQuorum(started.elapsed())),
            };
            match outcome {
                Ok(written) => return Ok(written),
                Err(Some(WriteError::Unreachable(message)))
                    if tokio::time::Instant::now() + RETRY_WRITE < deadline =>
                {
                    last = Some(WriteError::Unreachable(message));
                    tokio::time::sleep(RETRY_WRITE).await;
                }
                Err(Some(e)) => return Err(e),
                // Leadership moved while we asked: ask the new leader.
                Err(None) if tokio::time::Instant::now() + RETRY_WRITE < deadline => {
                    tokio::time::sleep(RETRY_WRITE).await;
                }
                Err(None) => return Err(last.unwrap_or(WriteError::NoLeader)),
            }
        }
    }

    /// One send of `command` to `leader` (this node or another); `Err(None)`
    /// when it answered that it no longer leads.
    async fn attempt(
        &self,
        leader: NodeId,
        member: &Member,
        command: &Command,
    ) -> Result<Written, Option<WriteError>> {
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
            match self.network.forward(leader, member, command.clone()).await {
                Ok(response) => Ok(response),
                Err(ForwardError::NotLeader { .. }) => Err(None),
                Err(ForwardError::Network { message, .. }) => {
                    Err(Some(WriteError::Unreachable(message)))
                }
                // No quorum is not reported on a write (the leader waits for
                // one); the write timeout answers it.
                Err(
                    ForwardError::Raft(message)
                    | ForwardError::NoQuorum(message)
                    | ForwardError::Fatal(message),
                ) => Err(Some(WriteError::Raft(message))),
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
