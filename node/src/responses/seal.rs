//! Binding a stored response's id to the key that made it.
//!
//! A response stored at a provider is readable with the provider key that
//! made it, and Meridian holds that key for every team, so the id a client
//! is handed is all that can say whose the response is. With the cluster's
//! response-id secret (`[responses] secret_env`, the same on every node),
//! each id handed out carries an HMAC-SHA256 of the client key's name, the
//! upstream and the upstream's own id: `{upstream}~{mac}~{id}`. A client
//! cannot make the MAC for another key without the secret (a MAC keyed with
//! the client's own key could be made by that client for any id), and any
//! node checks it with no state shared but the secret. Provider keys play
//! no part, so regions with different keys for one upstream, and a
//! rotated provider key, keep every id valid.
//!
//! Without the secret ids are `{upstream}~{id}`, valid for any key. A node
//! with the secret refuses those (they bind nobody), and a node without it
//! refuses bound ids rather than pass a MAC on to an upstream as part of an
//! id.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

use super::{MAX_UPSTREAM, SEPARATOR, check_own, id_byte};

/// The MAC's length as id text: 32 bytes, URL-safe base64 without padding.
const MAC_CHARS: usize = 43;

/// Separates what the MAC covers from any other use of the secret.
const DOMAIN: &[u8] = b"meridian response id v1";

/// The cluster's response-id secret, as the HMAC key it is used as, and
/// the one before it while the cluster rotates.
pub struct Seal {
    current: hmac::Key,
    previous: Option<hmac::Key>,
}

/// Never prints the secret.
impl fmt::Debug for Seal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seal(..)")
    }
}

impl Seal {
    /// The seal of `secret`, the value of `[responses] secret_env`.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            current: hmac::Key::new(hmac::HMAC_SHA256, secret),
            previous: None,
        }
    }

    /// The same seal still taking the ids made with `secret`
    /// (`[responses] previous_secret_env`), so a rotation breaks no id
    /// handed out before it; new ids are made with the current secret.
    pub fn with_previous(mut self, secret: &[u8]) -> Self {
        self.previous = Some(hmac::Key::new(hmac::HMAC_SHA256, secret));
        self
    }

    /// The MAC of an id's triple, with the current secret.
    fn tag(&self, key: &str, upstream: &str, id: &str) -> hmac::Tag {
        hmac::sign(&self.current, &message(key, upstream, id))
    }

    /// Whether `mac` (id text) is the MAC of the triple, with the current
    /// secret or the previous one; `hmac::verify` compares in constant time.
    fn verify(&self, key: &str, upstream: &str, id: &str, mac: &str) -> bool {
        let Ok(mac) = URL_SAFE_NO_PAD.decode(mac) else {
            return false;
        };
        let message = message(key, upstream, id);
        std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|secret| hmac::verify(secret, &message, &mac).is_ok())
    }
}

/// What an id's MAC covers: each part length-prefixed, so no two (key,
/// upstream, id) triples read as the same bytes.
fn message(key: &str, upstream: &str, id: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(DOMAIN.len() + 24 + key.len() + upstream.len() + id.len());
    message.extend_from_slice(DOMAIN);
    for part in [key, upstream, id] {
        message.extend_from_slice(&(part.len() as u64).to_be_bytes());
        message.extend_from_slice(part.as_bytes());
    }
    message
}

/// Whose response ids a request hands out and may name: the calling key,
/// and the cluster's seal when it has one. Borrowed, so a request that
/// never touches the Responses API pays nothing for it.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    seal: Option<&'a Seal>,
    key: &'a str,
}

impl<'a> Owner<'a> {
    /// The ids of `key` (the client key's name), bound when `seal` is set.
    pub fn new(seal: Option<&'a Seal>, key: &'a str) -> Self {
        Self { seal, key }
    }

    /// Ids bound to no key: a node without the response-id secret.
    pub fn unbound() -> Self {
        Self::new(None, "")
    }

    /// The id a client sees for `upstream`'s response `id`.
    pub fn tag(&self, upstream: &str, id: &str) -> String {
        let mut tagged = String::with_capacity(upstream.len() + MAC_CHARS + 2 + id.len());
        tagged.push_str(upstream);
        tagged.push(SEPARATOR);
        if let Some(seal) = self.seal {
            URL_SAFE_NO_PAD.encode_string(seal.tag(self.key, upstream, id), &mut tagged);
            tagged.push(SEPARATOR);
        }
        tagged.push_str(id);
        tagged
    }

    /// The upstream and its own id in a client-given id, or why it is not
    /// one Meridian handed out to this key. The own id goes into an
    /// upstream URL path, so nothing that could change the path or the
    /// query passes ([`check_own`]).
    pub fn untag<'t>(&self, tagged: &'t str) -> Result<(&'t str, &'t str), &'static str> {
        let (upstream, rest) = tagged
            .split_once(SEPARATOR)
            .ok_or("it carries no upstream tag")?;
        if upstream.is_empty() || upstream.len() > MAX_UPSTREAM || !upstream.bytes().all(id_byte) {
            return Err("its upstream tag is not an upstream id");
        }
        let Some(seal) = self.seal else {
            if rest.contains(SEPARATOR) {
                return Err(
                    "it is bound to a key, and this node has no `[responses] secret_env` to \
                     check it with",
                );
            }
            check_own(rest)?;
            return Ok((upstream, rest));
        };
        let (mac, own) = rest.split_once(SEPARATOR).ok_or(
            "it is bound to no key (made before `[responses] secret_env` was set, or by a node \
             without it)",
        )?;
        if mac.len() != MAC_CHARS {
            return Err("its key binding is not one this gateway makes");
        }
        check_own(own)?;
        if !seal.verify(self.key, upstream, own, mac) {
            return Err("it was not handed out to this key");
        }
        Ok((upstream, own))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An owner whose seal lives as long as the test (leaked: a test's
    /// few bytes).
    fn owner(secret: &str, key: &'static str) -> Owner<'static> {
        let seal: &'static Seal = Box::leak(Box::new(Seal::new(secret.as_bytes())));
        Owner::new(Some(seal), key)
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_bound_id_reads_back_for_its_key_only() {
        let alice = owner(SECRET, "alice");
        let id = alice.tag("openai-east", "resp_123");
        let parts: Vec<&str> = id.split('~').collect();
        assert_eq!(parts.len(), 3, "{id}");
        assert_eq!(parts[0], "openai-east");
        assert_eq!(parts[1].len(), MAC_CHARS);
        assert_eq!(parts[2], "resp_123");
        assert_eq!(alice.untag(&id), Ok(("openai-east", "resp_123")));

        // Another key, another secret, no secret: each refuses it.
        assert_eq!(
            owner(SECRET, "bob").untag(&id),
            Err("it was not handed out to this key")
        );
        assert_eq!(
            owner("another secret of enough length!!", "alice").untag(&id),
            Err("it was not handed out to this key")
        );
        assert!(Owner::unbound().untag(&id).is_err());
    }

    #[test]
    fn an_unbound_id_is_refused_where_ids_are_bound() {
        let unbound = Owner::unbound().tag("u", "resp_1");
        assert_eq!(unbound, "u~resp_1");
        assert_eq!(Owner::unbound().untag(&unbound), Ok(("u", "resp_1")));
        assert!(owner(SECRET, "alice").untag(&unbound).is_err());
    }

    #[test]
    fn the_mac_binds_every_part() {
        let alice = owner(SECRET, "alice");
        let id = alice.tag("u", "resp_1");
        let mac = id.split('~').nth(1).unwrap_or_default();
        // The same MAC moved to another upstream or another own id.
        for forged in [
            format!("v~{mac}~resp_1"),
            format!("u~{mac}~resp_2"),
            format!("u~{mac}~resp_1x"),
        ] {
            assert_eq!(
                alice.untag(&forged),
                Err("it was not handed out to this key")
            );
        }
        // Length prefixes: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(
            owner(SECRET, "ab").tag("c", "x"),
            owner(SECRET, "a").tag("bc", "x")
        );
    }

    #[test]
    fn hostile_bindings_are_refused() {
        let alice = owner(SECRET, "alice");
        let good = alice.tag("u", "resp_1");
        let mac = good.split('~').nth(1).unwrap_or_default().to_owned();
        let mut flipped = mac.clone().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        let long = "A".repeat(10_000);
        for hostile in [
            "u~~resp_1".to_owned(),
            "u~resp_1".to_owned(),
            format!("u~{}~resp_1", &mac[1..]),
            format!("u~{mac}A~resp_1"),
            format!("u~{flipped}~resp_1"),
            format!("u~{}~resp_1", "=".repeat(MAC_CHARS)),
            format!("u~{}~resp_1", "é".repeat(MAC_CHARS)),
            format!("u~{mac}~"),
            format!("u~{mac}~.."),
            format!("u~{mac}~a/b"),
            format!("u~{mac}~resp_1~x"),
            format!("u~{mac}~{long}"),
            format!("~{mac}~resp_1"),
            format!("{long}~{mac}~resp_1"),
            String::new(),
            "~".to_owned(),
            "~~".to_owned(),
        ] {
            assert!(alice.untag(&hostile).is_err(), "{hostile:?}");
        }
    }

    #[test]
    fn a_rotated_seal_takes_the_ids_of_the_previous_secret() {
        const NEXT: &str = "the-next-cluster-secret-0123456789abcdef";
        let before = owner(SECRET, "alice");
        let old = before.tag("u", "resp_1");
        let rotated: &'static Seal = Box::leak(Box::new(
            Seal::new(NEXT.as_bytes()).with_previous(SECRET.as_bytes()),
        ));
        let alice = Owner::new(Some(rotated), "alice");
        assert_eq!(alice.untag(&old), Ok(("u", "resp_1")));
        // Still bound: another key cannot use it.
        assert!(Owner::new(Some(rotated), "bob").untag(&old).is_err());
        // New ids are made with the next secret, and taken once the
        // previous one is dropped.
        let new = alice.tag("u", "resp_2");
        assert_eq!(new, owner(NEXT, "alice").tag("u", "resp_2"));
        assert_eq!(owner(NEXT, "alice").untag(&new), Ok(("u", "resp_2")));
        assert!(owner(NEXT, "alice").untag(&old).is_err());
    }

    #[test]
    fn the_seal_never_prints_its_secret() {
        let seal =
            Seal::new(SECRET.as_bytes()).with_previous(b"an-older-secret-of-enough-length-xx");
        assert_eq!(format!("{seal:?}"), "Seal(..)");
        assert!(!format!("{:?}", owner(SECRET, "k")).contains(SECRET));
    }
}
