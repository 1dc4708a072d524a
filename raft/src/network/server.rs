//! The serving side: accept peers (the TLS handshake has already refused
//! anyone without a CA-signed certificate naming a node id), and answer each
//! bidirectional stream's one request, a bounded number at a time per
//! connection, telling the handler which node is calling.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::NetworkSettings;
use super::frame::{FrameError, read_frame_sized, write_frame};
use super::rpc::{RaftRequest, RaftResponse, RpcHandler};
use super::tls::{peer_id, peer_name};
use super::traffic::PeerTraffic;
use crate::types::NodeId;

/// Accepts connections on `endpoint` until it is closed.
pub(super) async fn serve<H: RpcHandler>(
    endpoint: quinn::Endpoint,
    handler: H,
    settings: Arc<NetworkSettings>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let handler = handler.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(connection) => {
                    let peer = peer_name(&connection).unwrap_or_else(|| remote.to_string());
                    // The handshake refuses a certificate without a node id;
                    // this is the belt to that brace.
                    let Some(caller) = peer_id(&connection) else {
                        tracing::warn!(%peer, %remote, "raft peer refused: its certificate names no node id");
                        connection.close(0u32.into(), b"certificate names no node id");
                        return;
                    };
                    tracing::debug!(%peer, caller, %remote, "raft peer connected");
                    serve_connection(connection, handler, settings, peer, caller).await;
                }
                Err(error) => {
                    tracing::warn!(%remote, %error, "raft peer refused at handshake");
                }
            }
        });
    }
}

async fn serve_connection<H: RpcHandler>(
    connection: quinn::Connection,
    handler: H,
    settings: Arc<NetworkSettings>,
    peer: String,
    caller: NodeId,
) {
    let limit = Arc::new(Semaphore::new(settings.max_concurrent_rpcs as usize));
    let counted = settings.traffic.peer(caller);
    loop {
        let (send, recv) = match connection.accept_bi().await {
            Ok(streams) => streams,
            Err(error) => {
                tracing::debug!(%peer, %error, "raft peer disconnected");
                return;
            }
        };
        // Stop taking streams while the limit is reached; QUIC flow control
        // (max_concurrent_bidi_streams) then holds the peer back.
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let handler = handler.clone();
        let max = settings.max_frame;
        let peer = peer.clone();
        let counted = counted.clone();
        let traffic = settings.traffic.clone();
        tokio::spawn(async move {
            let count = Count {
                peer: &counted,
                traffic: &traffic,
            };
            serve_stream(send, recv, handler, max, &peer, caller, count).await;
            drop(permit);
        });
    }
}

/// Where one stream's frames are counted: its caller's counters, and the
/// transport's tally of entries by kind.
struct Count<'a> {
    peer: &'a PeerTraffic,
    traffic: &'a super::traffic::Traffic,
}

async fn serve_stream<H: RpcHandler>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    handler: H,
    max: usize,
    peer: &str,
    caller: NodeId,
    count: Count<'_>,
) {
    // A caller this node does not count is answered before a byte of its
    // request is read (or held).
    let admitted = match handler.admits(caller).await {
        Ok(()) => true,
        Err(refusal) => {
            tracing::warn!(%peer, caller, %refusal, "raft stream refused before its request");
            let _ = recv.stop(0u32.into());
            let refused = RaftResponse::Refused(refusal);
            if let Ok(bytes) = write_frame(&mut send, &refused, max).await {
                count.peer.sent(bytes);
                let _ = send.finish();
            }
            false
        }
    };
    if !admitted {
        return;
    }
    let response = match read_frame_sized::<RaftRequest>(&mut recv, max).await {
        Ok((request, bytes)) => {
            count.peer.received(bytes);
            count.traffic.tally(1, &request);
            handler.handle(caller, request).await
        }
        Err(FrameError::Codec(error)) => {
            tracing::warn!(%peer, %error, "bad raft request");
            // Do not read the rest of an oversized or garbled request.
            let _ = recv.stop(0u32.into());
            RaftResponse::Failure(error.to_string())
        }
        Err(error) => {
            tracing::debug!(%peer, %error, "raft stream broke before its request");
            return;
        }
    };
    let written = match write_frame(&mut send, &response, max).await {
        Err(FrameError::Codec(error)) => {
            tracing::warn!(%peer, %error, "raft response not sent");
            write_frame(&mut send, &RaftResponse::Failure(error.to_string()), max).await
        }
        other => other,
    };
    match written {
        Ok(bytes) => {
            count.peer.sent(bytes);
            let _ = send.finish();
        }
        Err(error) => tracing::debug!(%peer, %error, "raft response lost"),
    }
}
