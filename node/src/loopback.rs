//! What a listener open without credentials (on loopback only) accepts
//! from a browser.
//!
//! Without an admin token, or without client keys, anything that can reach
//! a loopback listener may use it: that is the point of a development
//! node. A web page the operator opens can reach it too, from their own
//! browser: a cross-site request (a form or `fetch` posting to
//! `127.0.0.1`) writes without reading the answer, and DNS rebinding (a
//! name of the attacker's that later resolves to `127.0.0.1`) reads and
//! writes as a same-origin page. Both carry a mark a local tool never
//! does: the rebound request names the attacker's host in `Host`, and the
//! cross-site one its page in `Origin`. So such a listener answers only
//! requests whose `Host` and `Origin` (each when present) name a loopback
//! host.

use std::net::IpAddr;

use http::{HeaderMap, header};

/// A request header that named a host other than this machine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// `Host`: the request was addressed to another name (DNS rebinding).
    Host,
    /// `Origin`: a page of another site sent it.
    Origin,
}

impl Foreign {
    /// The header's name, as a refusal names it.
    pub fn header(self) -> &'static str {
        match self {
            Foreign::Host => "Host",
            Foreign::Origin => "Origin",
        }
    }
}

/// Refuses a request that a page of another site could have sent: a
/// `Host` or an `Origin` that is not a loopback host.
pub fn check(headers: &HeaderMap) -> Result<(), Foreign> {
    for host in headers.get_all(header::HOST) {
        let loopback = host.to_str().is_ok_and(loopback_authority);
        if !loopback {
            return Err(Foreign::Host);
        }
    }
    for origin in headers.get_all(header::ORIGIN) {
        let loopback = origin.to_str().ok().is_some_and(|o| {
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .is_some_and(loopback_authority)
        });
        if !loopback {
            return Err(Foreign::Origin);
        }
    }
    Ok(())
}

/// Whether `authority` (`host` or `host:port`, an IPv6 host in brackets)
/// names this machine: `localhost` or a loopback address.
fn loopback_authority(authority: &str) -> bool {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, tail)) => match tail.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return false,
            },
            None => return false,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok
        && (host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn local_tools_are_answered() {
        for pairs in [
            &[][..],
            &[("host", "127.0.0.1:9091")],
            &[("host", "localhost")],
            &[("host", "LOCALHOST:80")],
            &[("host", "127.8.9.10:1")],
            &[("host", "[::1]:9091")],
            &[("host", "[::1]")],
            &[
                ("host", "127.0.0.1:9091"),
                ("origin", "http://127.0.0.1:9091"),
            ],
            &[("host", "localhost:9091"), ("origin", "https://localhost")],
        ] {
            assert!(check(&headers(pairs)).is_ok(), "{pairs:?}");
        }
    }

    #[test]
    fn pages_of_other_sites_are_refused() {
        for (pairs, which) in [
            (&[("host", "evil.example")][..], Foreign::Host),
            (&[("host", "evil.example:9091")], Foreign::Host),
            (&[("host", "localhost.evil.example")], Foreign::Host),
            (&[("host", "127.0.0.1.nip.io:9091")], Foreign::Host),
            (&[("host", "10.0.0.1:9091")], Foreign::Host),
            (&[("host", "0.0.0.0:9091")], Foreign::Host),
            (&[("host", "[::1]x")], Foreign::Host),
            (&[("host", "[::1")], Foreign::Host),
            (&[("host", "127.0.0.1:")], Foreign::Host),
            (&[("host", "127.0.0.1:99999999")], Foreign::Host),
            (&[("host", "127.0.0.1:80:80")], Foreign::Host),
            (&[("host", "")], Foreign::Host),
            (
                &[("host", "127.0.0.1"), ("host", "evil.example")],
                Foreign::Host,
            ),
            (
                &[("host", "127.0.0.1"), ("origin", "http://evil.example")],
                Foreign::Origin,
            ),
            (&[("origin", "null")], Foreign::Origin),
            (&[("origin", "file://")], Foreign::Origin),
            (
                &[("origin", "http://127.0.0.1.evil.example")],
                Foreign::Origin,
            ),
            (&[("origin", "http://localhost:9091/path")], Foreign::Origin),
            (&[("origin", "ftp://localhost")], Foreign::Origin),
        ] {
            assert_eq!(check(&headers(pairs)), Err(which), "{pairs:?}");
        }
    }
}
