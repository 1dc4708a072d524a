//! Where to dial a peer: its `host:port` resolved afresh at every dial, so
//! that a peer addressed by DNS name (a StatefulSet pod, whose IP changes
//! when it is rescheduled) is found at its new address on the next redial.
//! The name only finds the peer; the node id in the certificate it presents
//! says who it is (see `client.rs`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

/// The `host` of `host:port` (brackets of an IPv6 literal removed), which
/// the peer's certificate must name.
pub(super) fn host(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The addresses a lookup found, or why it failed.
pub type Lookup<'a> = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// How peer names become addresses at each dial: the system's resolver
/// ([`SystemResolver`]) in a node; tests substitute one whose answers
/// change, as a rescheduled pod's do.
pub trait Resolve: Send + Sync + 'static {
    /// Every address `addr` (`host:port`) stands for now.
    fn lookup<'a>(&'a self, addr: &'a str) -> Lookup<'a>;
}

/// The operating system's resolver (`getaddrinfo`: /etc/hosts, then DNS),
/// asked afresh each time; no cache of ours.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(&'a self, addr: &'a str) -> Lookup<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host(addr).await?.collect()) })
    }
}

/// Resolves `addr` now with `resolver` and picks the address the endpoint
/// bound at `local` can reach. The error is the sentence a log line or
/// `members list` shows.
pub(super) async fn resolve(
    resolver: &dyn Resolve,
    addr: &str,
    local: Option<SocketAddr>,
) -> Result<SocketAddr, String> {
    let resolved = resolver
        .lookup(addr)
        .await
        .map_err(|e| format!("cannot resolve `{}`: {e}", host(addr)))?;
    pick(resolved.into_iter(), local).ok_or_else(|| match local {
        Some(SocketAddr::V4(_)) => format!(
            "`{}` resolves to no IPv4 address, and the Raft listener is IPv4",
            host(addr)
        ),
        _ => format!("`{}` resolves to no address", host(addr)),
    })
}

/// The first resolved address of the endpoint's family: a socket bound to
/// an IPv4 address cannot send to an IPv6 one, and a dual-stack cluster's
/// DNS may list the AAAA record first. An IPv6 (dual-stack) endpoint, or
/// one whose address is unknown, takes the first of any family.
fn pick(
    resolved: impl Iterator<Item = SocketAddr>,
    local: Option<SocketAddr>,
) -> Option<SocketAddr> {
    let mut resolved = resolved;
    match local {
        Some(SocketAddr::V4(_)) => resolved.find(SocketAddr::is_ipv4),
        _ => resolved.next(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn hosts() {
        assert_eq!(host("127.0.0.1:7080"), "127.0.0.1");
        assert_eq!(host("[::1]:7080"), "::1");
        assert_eq!(host("n1.example:7080"), "n1.example");
    }

    #[test]
    fn an_ipv4_endpoint_dials_the_first_ipv4_address() {
        let both = addrs(&["[fd00::5]:7080", "10.0.0.5:7080", "10.0.0.6:7080"]);
        let v4 = Some("0.0.0.0:7080".parse().unwrap());
        let v6 = Some("[::]:7080".parse().unwrap());
        assert_eq!(pick(both.clone().into_iter(), v4), Some(both[1]));
        assert_eq!(pick(both.clone().into_iter(), v6), Some(both[0]));
        assert_eq!(pick(both.clone().into_iter(), None), Some(both[0]));
        assert_eq!(pick(addrs(&["[fd00::5]:7080"]).into_iter(), v4), None);
        assert_eq!(pick(Vec::new().into_iter(), v6), None);
    }

    #[tokio::test]
    async fn a_name_is_resolved_at_each_call() {
        let local = Some("127.0.0.1:0".parse().unwrap());
        for _ in 0..2 {
            let found = resolve(&SystemResolver, "localhost:7080", local)
                .await
                .unwrap();
            assert_eq!(found, "127.0.0.1:7080".parse().unwrap());
        }
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_a_clear_error() {
        // `.invalid` never resolves (RFC 2606).
        let e = resolve(&SystemResolver, "no-such-node.invalid:7080", None)
            .await
            .unwrap_err();
        assert!(
            e.starts_with("cannot resolve `no-such-node.invalid`: "),
            "{e}"
        );
        let e = resolve(&SystemResolver, "localhost", None)
            .await
            .unwrap_err();
        assert!(e.starts_with("cannot resolve"), "{e}");
    }
}
