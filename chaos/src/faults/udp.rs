//! The UDP fault proxy in front of one node's Raft (QUIC) port.
//!
//! Peers send to the proxy's front socket. For each sender address the
//! proxy opens its own back socket towards the node (like a NAT), so the
//! node's replies come back on that socket and are sent on to the right
//! peer from the front socket. The sender is identified by its source
//! address (each node sends from the one UDP socket it binds), so every
//! packet is judged with the rules of its directed link: `peer → node` on
//! the way in, `node → peer` on the way back. Delayed packets keep their
//! order per direction (jitter delays, it does not reorder).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::rules::{LinkTable, Verdict};

/// Largest datagram relayed (QUIC stays well under it).
const MAX_DATAGRAM: usize = 65_535;

/// A running proxy; its tasks stop when it is dropped.
pub struct UdpProxy {
    /// Where peers send: the address listed in `cluster.members`.
    pub front: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Packets waiting for their delivery time, in order.
type Queue = mpsc::UnboundedSender<(Instant, Bytes)>;

impl UdpProxy {
    /// Starts a proxy for node `node` whose Raft socket is `target`;
    /// `peers` maps each node's Raft bind address to its id.
    pub async fn start(
        node: u64,
        target: SocketAddr,
        peers: HashMap<SocketAddr, u64>,
        table: LinkTable,
        seed: u64,
    ) -> io::Result<Self> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = front.local_addr()?;
        let task = tokio::spawn(front_loop(front, node, target, peers, table, seed));
        Ok(Self { front: addr, task })
    }
}

/// One sender's path through the proxy.
struct Session {
    /// Peer → node packets, in delivery order.
    inbound: Queue,
    /// Latest delivery time given to an inbound packet (keeps order).
    last_due: Instant,
    /// The reply task and the delivery tasks; aborted with the session.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn front_loop(
    front: Arc<UdpSocket>,
    node: u64,
    target: SocketAddr,
    peers: HashMap<SocketAddr, u64>,
    table: LinkTable,
    seed: u64,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, src) = match front.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!(node, error = %e, "udp proxy: receive failed");
                continue;
            }
        };
        let peer = peers.get(&src).copied().unwrap_or(0);
        let session = match sessions.entry(src) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                match open_session(&front, node, peer, src, target, &table, seed).await {
                    Ok(session) => e.insert(session),
                    Err(err) => {
                        tracing::warn!(node, %src, error = %err, "udp proxy: cannot open a session");
                        continue;
                    }
                }
            }
        };
        let delay = match table.snapshot().evaluate(peer, node, &mut rng) {
            Verdict::Drop => continue,
            Verdict::Deliver(d) => d,
        };
        let due = (Instant::now() + delay).max(session.last_due);
        session.last_due = due;
        let _ = session
            .inbound
            .send((due, Bytes::copy_from_slice(&buf[..n])));
    }
}

async fn open_session(
    front: &Arc<UdpSocket>,
    node: u64,
    peer: u64,
    src: SocketAddr,
    target: SocketAddr,
    table: &LinkTable,
    seed: u64,
) -> io::Result<Session> {
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    back.connect(target).await?;
    let (inbound, inbound_rx) = mpsc::unbounded_channel();
    let (outbound, outbound_rx) = mpsc::unbounded_channel();
    let deliver_in = {
        let back = back.clone();
        tokio::spawn(deliver(inbound_rx, move |bytes| {
            let back = back.clone();
            async move { back.send(&bytes).await.map(|_| ()) }
        }))
    };
    let deliver_out = {
        let front = front.clone();
        tokio::spawn(deliver(outbound_rx, move |bytes| {
            let front = front.clone();
            async move { front.send_to(&bytes, src).await.map(|_| ()) }
        }))
    };
    let replies = tokio::spawn(reply_loop(
        back,
        node,
        peer,
        outbound,
        table.clone(),
        seed ^ u64::from(src.port()),
    ));
    Ok(Session {
        inbound,
        last_due: Instant::now(),
        tasks: vec![deliver_in, deliver_out, replies],
    })
}

/// Node → peer: reads the node's replies on the back socket and queues them.
async fn reply_loop(
    back: Arc<UdpSocket>,
    node: u64,
    peer: u64,
    outbound: Queue,
    table: LinkTable,
    seed: u64,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut last_due = Instant::now();
    loop {
        let n = match back.recv(&mut buf).await {
            Ok(n) => n,
            Err(_) => {
                // A connected UDP socket reports the node's port as
                // unreachable while the node is down: wait and go on.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let delay = match table.snapshot().evaluate(node, peer, &mut rng) {
            Verdict::Drop => continue,
            Verdict::Deliver(d) => d,
        };
        let due = (Instant::now() + delay).max(last_due);
        last_due = due;
        if outbound
            .send((due, Bytes::copy_from_slice(&buf[..n])))
            .is_err()
        {
            return;
        }
    }
}

/// Sends each queued packet at its due time.
async fn deliver<F, Fut>(mut queue: mpsc::UnboundedReceiver<(Instant, Bytes)>, send: F)
where
    F: Fn(Bytes) -> Fut,
    Fut: Future<Output = io::Result<()>>,
{
    while let Some((due, bytes)) = queue.recv().await {
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        // A send fails while the other side is down; QUIC retransmits.
        let _ = send(bytes).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::BTreeSet;

    use super::*;
    use crate::faults::rules::{LinkEffect, LinkRule, links};

    async fn recv(socket: &UdpSocket, within: Duration) -> Option<Vec<u8>> {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(within, socket.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    /// Node 1 (`a`) talks to node 2 (`b`) through the proxy in front of `b`;
    /// `b` echoes every packet back to where it came from.
    #[tokio::test]
    async fn relays_both_ways_and_follows_the_rules_per_direction() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let peers: HashMap<SocketAddr, u64> =
            [(a.local_addr().unwrap(), 1), (b.local_addr().unwrap(), 2)]
                .into_iter()
                .collect();
        let table = LinkTable::default();
        let proxy = UdpProxy::start(2, b.local_addr().unwrap(), peers, table.clone(), 1)
            .await
            .unwrap();
        let echo = {
            let b = b.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                loop {
                    let (n, from) = b.recv_from(&mut buf).await.unwrap();
                    b.send_to(&buf[..n], from).await.unwrap();
                }
            })
        };
        let short = Duration::from_millis(300);
        a.send_to(b"one", proxy.front).await.unwrap();
        assert_eq!(recv(&a, short).await.unwrap(), b"one");

        // 1 -> 2 dropped: nothing comes back.
        let one_to_two: BTreeSet<_> = links(&[1].into(), &[2].into(), true);
        table.add(vec![LinkRule {
            id: 1,
            links: one_to_two,
            effect: LinkEffect::Drop,
        }]);
        a.send_to(b"two", proxy.front).await.unwrap();
        assert!(recv(&a, short).await.is_none());
        table.remove(1);

        // Only the reply direction 2 -> 1 delayed by 150 ms.
        let two_to_one: BTreeSet<_> = links(&[2].into(), &[1].into(), true);
        table.add(vec![LinkRule {
            id: 2,
            links: two_to_one,
            effect: LinkEffect::Delay {
                ms: 150.0,
                jitter_ms: 0.0,
            },
        }]);
        let sent = Instant::now();
        a.send_to(b"three", proxy.front).await.unwrap();
        assert_eq!(recv(&a, Duration::from_secs(2)).await.unwrap(), b"three");
        let took = sent.elapsed();
        assert!(took >= Duration::from_millis(145), "{took:?}");
        table.clear();
        echo.abort();
    }
}
