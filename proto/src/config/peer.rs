//! A peer's Raft address: `host:port`, where the host is an IP literal or a
//! DNS name. A StatefulSet pod keeps its name when it is rescheduled but not
//! its IP, so peers are dialled by name and the name is resolved again at
//! every dial (raft's network client does that); here only its form is
//! checked, never whether it resolves: a pod not yet scheduled has no
//! address, and dialling it is retried. A name is how a peer is found, not
//! who it is: the node id in its certificate is (docs/threat-model.md).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// The longest DNS name (RFC 1035: 255 octets on the wire, 253 as text).
pub const MAX_NAME_LEN: usize = 253;
/// The longest label of a DNS name (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// Why a text is not a peer address; the words an operator reads after the
/// field name (`cluster.members[1]`, `raft_addr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerAddrError {
    /// Nothing at all, or only the port.
    #[error("no host: expected host:port")]
    NoHost,
    /// No `:port` after the host.
    #[error("no port: expected host:port")]
    NoPort,
    /// The port is not a number from 1 to 65535 (0 asks the OS for any port,
    /// which no peer can dial).
    #[error("the port must be a number from 1 to 65535")]
    Port,
    /// More than one `:`: an IPv6 address without brackets is ambiguous
    /// with the port.
    #[error("more than one `:`: an IPv6 address is written in brackets, [addr]:port")]
    Brackets,
    /// The host is longer than a DNS name may be.
    #[error("the host name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    /// The host is neither an IP address nor a DNS name.
    #[error(
        "the host is neither an IP address nor a DNS name (labels of 1 to 63 of a-z 0-9 -, \
         not starting or ending with -, separated by dots)"
    )]
    Host,
}

/// Where a peer's Raft transport listens, as operators write it: an IP
/// literal (`10.0.0.2:7080`, `[::1]:7080`) or a DNS name
/// (`meridian-us-0.meridian-us-raft.meridian.svc.cluster.local:7080`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl PeerAddr {
    /// The host as a TLS server name or resolver takes it: an IP address
    /// without brackets, or the DNS name.
    pub fn host(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address, when the host is an IP literal (no resolution).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        Self {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(ip) => SocketAddr::new(*ip, self.port).fmt(f),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

impl FromStr for PeerAddr {
    type Err = PeerAddrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return match addr.port() {
                0 => Err(PeerAddrError::Port),
                _ => Ok(addr.into()),
            };
        }
        let (host, port) = text.rsplit_once(':').ok_or(PeerAddrError::NoPort)?;
        if host.is_empty() {
            return Err(PeerAddrError::NoHost);
        }
        let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        if bracketed.is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok()) {
            // A good IPv6 literal that did not parse above: the port is bad.
            return Err(PeerAddrError::Port);
        }
        if host.starts_with('[') || host.contains(':') {
            return Err(PeerAddrError::Brackets);
        }
        let port = parse_port(port)?;
        check_dns_name(host)?;
        Ok(Self {
            host: Host::Name(host.to_owned()),
            port,
        })
    }
}

/// 1 to 65535, digits only (no sign, no spaces).
fn parse_port(text: &str) -> Result<u16, PeerAddrError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PeerAddrError::Port);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(PeerAddrError::Port),
        Ok(port) => Ok(port),
    }
}

/// A host name as RFC 1123 has it, which is also what a certificate's DNS
/// SAN and a TLS server name accept: dot-separated labels of letters,
/// digits and hyphens. A last label of digits only is refused, so that a
/// mistyped IPv4 address (`10.0.0.256`) is not taken for a name. No
/// trailing dot: certificate names are written without one.
fn check_dns_name(host: &str) -> Result<(), PeerAddrError> {
    if host.len() > MAX_NAME_LEN {
        return Err(PeerAddrError::TooLong);
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let last_is_number = host
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    if host.split('.').all(label_ok) && !last_is_number {
        Ok(())
    } else {
        Err(PeerAddrError::Host)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PeerAddr, PeerAddrError> {
        text.parse()
    }

    #[test]
    fn ip_literals_keep_their_socket_address_form() {
        for text in [
            "127.0.0.1:7080",
            "10.0.0.2:1",
            "[::1]:65535",
            "[fd00::2]:7080",
        ] {
            let addr = parse(text).unwrap();
            assert_eq!(addr.to_string(), text);
            assert_eq!(addr.socket_addr(), Some(text.parse().unwrap()));
        }
        assert_eq!(parse("[::1]:7080").unwrap().host(), "::1");
    }

    #[test]
    fn dns_names_are_accepted_as_written() {
        for text in [
            "localhost:7080",
            "n1:7080",
            "meridian-us-0.meridian-us-raft.meridian.svc.cluster.local:7080",
            "raft.eu.Example.COM:443",
            "1password.example:7080",
            "a-b.c-d.e:1",
        ] {
            let addr = parse(text).unwrap();
            assert_eq!(addr.to_string(), text);
            assert_eq!(addr.socket_addr(), None);
            assert_eq!(addr.host(), text.rsplit_once(':').unwrap().0);
        }
        assert_eq!(parse("localhost:7080").unwrap().port(), 7080);
    }

    #[test]
    fn the_longest_name_is_accepted_and_one_more_character_is_not() {
        // Exactly 253: three labels of 63, one of 61, three dots.
        let label = "a".repeat(63);
        let name = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(name.len(), MAX_NAME_LEN);
        assert!(parse(&format!("{name}:7080")).is_ok());
        assert_eq!(parse(&format!("{name}c:7080")), Err(PeerAddrError::TooLong));
        assert_eq!(
            parse(&format!("{}.x:7080", "a".repeat(64))),
            Err(PeerAddrError::Host)
        );
        assert_eq!(
            parse(&format!("{}:7080", "a".repeat(100_000))),
            Err(PeerAddrError::TooLong)
        );
    }

    #[test]
    fn hostile_values_are_refused_with_the_reason() {
        let cases: &[(&str, PeerAddrError)] = &[
            ("", PeerAddrError::NoPort),
            (":7080", PeerAddrError::NoHost),
            ("localhost", PeerAddrError::NoPort),
            ("localhost:", PeerAddrError::Port),
            ("localhost:0", PeerAddrError::Port),
            ("127.0.0.1:0", PeerAddrError::Port),
            ("[::1]:0", PeerAddrError::Port),
            ("localhost:65536", PeerAddrError::Port),
            ("localhost:123456", PeerAddrError::Port),
            ("localhost:-1", PeerAddrError::Port),
            ("localhost:+80", PeerAddrError::Port),
            ("localhost: 80", PeerAddrError::Port),
            ("localhost:80 ", PeerAddrError::Port),
            ("local host:7080", PeerAddrError::Host),
            (" localhost:7080", PeerAddrError::Host),
            ("bad_name:7080", PeerAddrError::Host),
            ("-lead.example:7080", PeerAddrError::Host),
            ("trail-.example:7080", PeerAddrError::Host),
            ("a..b:7080", PeerAddrError::Host),
            (".example:7080", PeerAddrError::Host),
            ("example.:7080", PeerAddrError::Host),
            ("10.0.0.256:7080", PeerAddrError::Host),
            ("1.2.3:7080", PeerAddrError::Host),
            ("7080:7080", PeerAddrError::Host),
            ("nöde.example:7080", PeerAddrError::Host),
            ("node\n.example:7080", PeerAddrError::Host),
            ("user@node:7080", PeerAddrError::Host),
            ("node/x:7080", PeerAddrError::Host),
            ("::1:7080", PeerAddrError::Brackets),
            ("[::1]", PeerAddrError::Brackets),
            ("[not-ip]:7080", PeerAddrError::Brackets),
            ("[::1]:x", PeerAddrError::Port),
            ("[::1]:", PeerAddrError::Port),
            ("host:7080:7081", PeerAddrError::Brackets),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).as_ref(), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn every_error_reads_as_a_sentence_for_the_operator() {
        assert_eq!(
            PeerAddrError::Port.to_string(),
            "the port must be a number from 1 to 65535"
        );
        assert!(PeerAddrError::Host.to_string().contains("DNS name"));
    }
}
