//! Property tests over hostile bytes for everything in the consensus layer
//! that reads bytes it did not write itself in this process: Raft frames as
//! a peer sends them (decoded from a slice, and read off a real QUIC
//! stream with truncated, oversized and garbled frames), and the store's
//! values (log entries, the vote, the applied state and snapshots, as a
//! damaged disk or a peer's snapshot would present them).
//!
//! The property: a value or an error, never a panic, an abort or an
//! allocation out of proportion to the input. 256 cases a test by default;
//! `PROPTEST_CASES=200000 cargo test --release -p meridian-raft --test fuzz`
//! runs them long. Failing seeds are saved in
//! `raft/tests/fuzz.proptest-regressions` and replayed first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use proto::codec::{self, CodecError, HEADER_LEN, VERSION};
use proto::state::{Command, Member};
use raft::network::frame::{FrameError, read_frame};
use raft::network::{RaftRequest, RaftResponse};
use raft::store::{self, Applied};
use raft::{NodeId, TypeConfig};
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------- samples

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn member(n: u64) -> Member {
    Member {
        raft_addr: format!("127.0.0.1:{}", 7000 + n),
        admin_addr: format!("127.0.0.1:{}", 9000 + n),
        region: format!("r{n}"),
    }
}

fn membership() -> Membership<NodeId, Member> {
    let nodes: BTreeMap<NodeId, Member> = (1..=3).map(|n| (n, member(n))).collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

fn entries() -> Vec<Entry<TypeConfig>> {
    vec![
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(1, 2),
            payload: EntryPayload::Membership(membership()),
        },
        Entry {
            log_id: log_id(1, 3),
            payload: EntryPayload::Normal(Command::DeleteRoute { model: "m".into() }),
        },
    ]
}

fn snapshot_meta() -> SnapshotMeta<NodeId, Member> {
    SnapshotMeta {
        last_log_id: Some(log_id(1, 3)),
        last_membership: StoredMembership::new(Some(log_id(1, 2)), membership()),
        snapshot_id: "s-1".into(),
    }
}

/// One of each request a peer sends, encoded as whole frames.
fn request_frames() -> Vec<Vec<u8>> {
    let requests = [
        RaftRequest::AppendEntries(AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(1, 0)),
            entries: entries(),
            leader_commit: Some(log_id(1, 2)),
        }),
        RaftRequest::Vote(VoteRequest::new(Vote::new(2, 3), Some(log_id(1, 3)))),
        RaftRequest::InstallSnapshot(InstallSnapshotRequest {
            vote: Vote::new_committed(1, 1),
            meta: snapshot_meta(),
            offset: 0,
            data: vec![1, 2, 3],
            done: true,
        }),
        RaftRequest::Forward(Command::DeleteKey { name: "k".into() }),
        RaftRequest::ReadIndex,
    ];
    requests.iter().map(|r| codec::encode(r).unwrap()).collect()
}

/// The snapshot as the store keeps it: the same fields, in the same order,
/// as the store's own (private) `StoredSnapshot`, so the bytes are the same.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
}

fn applied() -> Applied {
    let mut applied = Applied {
        last_applied: Some(log_id(1, 3)),
        membership: StoredMembership::new(Some(log_id(1, 2)), membership()),
        ..Applied::default()
    };
    applied
        .state
        .apply(&Command::DeleteRoute { model: "m".into() });
    applied
}

/// One of each value the store writes, encoded.
fn stored_values() -> Vec<Vec<u8>> {
    let mut values: Vec<Vec<u8>> = entries()
        .iter()
        .map(|e| codec::encode_value(e).unwrap())
        .collect();
    values.push(codec::encode_value(&Vote::<NodeId>::new_committed(3, 2)).unwrap());
    values.push(codec::encode_value(&Some(log_id(2, 9))).unwrap());
    values.push(codec::encode_value(&applied()).unwrap());
    values.push(
        codec::encode_value(&StoredSnapshot {
            meta: snapshot_meta(),
            data: codec::encode_value(&applied()).unwrap(),
        })
        .unwrap(),
    );
    values
}

// ------------------------------------------------------------- damage

#[path = "../../proto/tests/common/damage.rs"]
mod damage;
use damage::{apply, damage};

// ------------------------------------------------------ frames from slices

fn decode_frame_body(body: &[u8]) {
    let _ = codec::decode::<RaftRequest>(body);
    let _ = codec::decode::<RaftResponse>(body);
}

proptest! {
    /// Arbitrary bytes as a peer's request or response body.
    #[test]
    fn frame_arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_frame_body(&bytes);
        let mut versioned = vec![VERSION];
        versioned.extend_from_slice(&bytes);
        decode_frame_body(&versioned);
    }

    /// Every kind of request, damaged: an error or a value.
    #[test]
    fn frame_damaged_requests_never_panic(which in 0usize..5, damage in damage()) {
        let frame = &request_frames()[which];
        let mut body = frame[HEADER_LEN..].to_vec();
        prop_assert!(codec::decode::<RaftRequest>(&body).is_ok());
        apply(&mut body, &damage, 1);
        decode_frame_body(&body);
    }
}

// ------------------------------------------------- frames off a QUIC stream

/// A QUIC client and server on localhost, with a throwaway self-signed
/// certificate: what the test needs is a real `quinn::RecvStream`, not the
/// cluster's identity checks (those are tested in `network.rs`).
struct Pipe {
    client: quinn::Connection,
    server: quinn::Connection,
    _endpoints: (quinn::Endpoint, quinn::Endpoint),
}

async fn pipe() -> Pipe {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());

    let server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.into())
        .unwrap();
    let server_config = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).unwrap(),
    ));
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr: SocketAddr = server.local_addr().unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client_config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).unwrap(),
    ));
    let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connecting = client
        .connect_with(client_config, addr, "localhost")
        .unwrap();
    let accepting = async { server.accept().await.unwrap().await };
    let (client_conn, server_conn) = tokio::join!(connecting, accepting);
    Pipe {
        client: client_conn.unwrap(),
        server: server_conn.unwrap(),
        _endpoints: (client, server),
    }
}

/// The frame limit the stream tests read under: small, so that oversized
/// frames are cheap to make.
const MAX: usize = 4096;

/// What a peer may put on a stream: raw bytes, or a header (declaring any
/// length) and a version byte and a body that may or may not match it.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let declared = prop_oneof![
        Just(0u32),
        Just(1),
        Just(MAX as u32),
        Just(MAX as u32 + 1),
        Just(u32::MAX),
        0u32..(2 * MAX as u32),
    ];
    let version = prop_oneof![Just(VERSION), any::<u8>()];
    let framed = (
        declared,
        version,
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(len, version, body)| {
            let mut bytes = len.to_be_bytes().to_vec();
            bytes.push(version);
            bytes.extend_from_slice(&body);
            bytes
        });
    let damaged = (0usize..5, damage()).prop_map(|(which, damage)| {
        let mut frame = request_frames()[which].clone();
        apply(&mut frame, &damage, 0);
        frame
    });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        framed,
        damaged,
    ]
}

/// Whatever a peer writes and then finishes, `read_frame` answers a request
/// or an error, promptly, and the error fits the bytes: a declared length
/// over the limit is refused as too large, a zero length as truncated, a
/// stream that ends early as a read error.
#[test]
fn frame_read_off_a_stream_never_panics() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pipe = rt.block_on(pipe());
    let read = |bytes: Vec<u8>| {
        rt.block_on(async {
            let (mut send, _recv) = pipe.client.open_bi().await.unwrap();
            send.write_all(&bytes).await.unwrap();
            send.finish().unwrap();
            let (_send, mut recv) = pipe.server.accept_bi().await.unwrap();
            tokio::time::timeout(
                Duration::from_secs(10),
                read_frame::<RaftRequest>(&mut recv, MAX),
            )
            .await
        })
    };
    // Undamaged, every request reads back: the harness itself works.
    for frame in request_frames() {
        assert!(matches!(read(frame), Ok(Ok(_))));
    }
    let mut runner = TestRunner::new(RunnerConfig {
        // Each case is a stream over a real socket: a quarter as many.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(64),
        // Where failing seeds are saved, as `proptest!` does on its own.
        source_file: Some(file!()),
        ..RunnerConfig::default()
    });
    runner
        .run(&stream_bytes(), |bytes| {
            let Ok(result) = read(bytes.clone()) else {
                return Err(TestCaseError::fail("read_frame hung on a finished stream"));
            };
            {
                let declared = bytes
                    .get(..HEADER_LEN)
                    .map(|h| u32::from_be_bytes(h.try_into().unwrap()) as usize);
                match (result, declared) {
                    (Ok(_), Some(len)) => {
                        prop_assert!((1..=MAX).contains(&len));
                        // One frame a stream: what follows it is not read.
                        prop_assert!(bytes.len() >= HEADER_LEN + len);
                    }
                    (Ok(_), None) => prop_assert!(false, "a frame without a header was read"),
                    (Err(FrameError::Codec(CodecError::TooLarge { .. })), Some(len)) => {
                        prop_assert!(len > MAX)
                    }
                    (Err(FrameError::Codec(CodecError::Truncated)), Some(len)) => {
                        // No length, or a body bincode found too short.
                        prop_assert!(len == 0 || bytes.len() >= HEADER_LEN + len)
                    }
                    (Err(FrameError::Read(_)), Some(len)) => {
                        prop_assert!(bytes.len() < HEADER_LEN + len)
                    }
                    (Err(_), _) => {}
                }
                Ok(())
            }
        })
        .unwrap();
}

// ------------------------------------------------------------ store values

/// Decodes `bytes` as every value the store reads back.
fn decode_stored(bytes: &[u8]) {
    let _ = codec::decode_value::<Entry<TypeConfig>>(bytes);
    let _ = codec::decode_value::<Vote<NodeId>>(bytes);
    let _ = codec::decode_value::<Option<LogId<NodeId>>>(bytes);
    let _ = codec::decode_value::<Applied>(bytes);
    let _ = codec::decode_value::<StoredSnapshot>(bytes);
}

proptest! {
    /// Arbitrary bytes where a stored value should be.
    #[test]
    fn store_arbitrary_values_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_stored(&bytes);
        let mut versioned = vec![VERSION];
        versioned.extend_from_slice(&bytes);
        decode_stored(&versioned);
    }

    /// Every kind of stored value, damaged.
    #[test]
    fn store_damaged_values_never_panic(which in 0usize..7, damage in damage()) {
        let mut value = stored_values()[which].clone();
        apply(&mut value, &damage, 1);
        decode_stored(&value);
    }
}

/// A stored value of a dozen bytes claiming a string of 2^62 bytes is an
/// error, not an allocation that aborts the process.
#[test]
fn store_a_huge_claimed_length_is_an_error() {
    for len in [u64::MAX, 1 << 62, 1 << 40] {
        let mut bytes = vec![VERSION, 0xFD];
        bytes.extend_from_slice(&len.to_le_bytes());
        assert!(codec::decode_value::<String>(&bytes).is_err());
        assert!(codec::decode_value::<Applied>(&bytes).is_err());
        assert!(codec::decode_value::<StoredSnapshot>(&bytes).is_err());
    }
}

/// A store whose applied state is damaged on disk refuses to open with an
/// error, instead of panicking or starting from a misread state.
#[test]
fn store_a_damaged_applied_state_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = store::open_db(dir.path()).unwrap();
        let sm = db.open_tree("sm").unwrap();
        let mut value = codec::encode_value(&applied()).unwrap();
        value.truncate(value.len() / 2);
        sm.insert(b"applied", value).unwrap();
        db.flush().unwrap();
    }
    assert!(store::open(dir.path()).is_err());
}
