//! Free loopback ports. A port is bound, read and released, so another
//! process may take it before the node binds it; callers that can use port
//! 0 (and read the address back from the ready line) should.

use std::net::{SocketAddr, TcpListener, UdpSocket};

use crate::HarnessError;

/// A free loopback TCP address (bound, then released).
pub fn free_tcp() -> Result<SocketAddr, HarnessError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| HarnessError::io("bind a TCP port", e))?;
    listener
        .local_addr()
        .map_err(|e| HarnessError::io("bind a TCP port", e))
}

/// A free loopback UDP address (bound, then released): Raft ports, which
/// must be known in advance because `cluster.members` lists them.
pub fn free_udp() -> Result<SocketAddr, HarnessError> {
    let socket =
        UdpSocket::bind("127.0.0.1:0").map_err(|e| HarnessError::io("bind a UDP port", e))?;
    socket
        .local_addr()
        .map_err(|e| HarnessError::io("bind a UDP port", e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn ports_are_loopback_and_not_zero() {
        for addr in [super::free_tcp().unwrap(), super::free_udp().unwrap()] {
            assert!(addr.ip().is_loopback());
            assert_ne!(addr.port(), 0);
        }
    }
}
