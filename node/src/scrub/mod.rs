//! Keeping provider keys, and hostile client values, out of what leaves the
//! node.
//!
//! Upstreams are untrusted: a provider (or anything at a `base_url`) may
//! echo the key it was sent in an error message, an error body, a stream
//! event or even an answer, and that text reaches clients, log lines, the
//! failover events and the dashboard. The node knows every provider key it
//! holds, so [`Scrubber`] removes those exact values, in every encoding an
//! encoder on the way may have given them (URL encoding, JSON and HTML
//! escapes), from every body and text on those paths. [`redact_keys`]
//! (in `pattern`), a pattern match for things that look like credentials,
//! stays as a second net for upstream messages.
//!
//! What it cannot see: a key cut across two SSE events (each event is
//! forwarded, scrubbed, as soon as it is whole, and holding events back to
//! join them would delay every stream), or written in an encoding not listed
//! in `key_pattern` (base64 of the key, say).
//!
//! [`LogText`] (in `log_text`) is the other half of what may reach a log
//! line: a value the client chose, escaped and cut.

mod log_text;
mod pattern;

pub use log_text::{LOG_VALUE_MAX, LogText};
pub use pattern::redact_keys;

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use regex::bytes::{NoExpand, Regex, RegexBuilder};
use sha2::{Digest, Sha256};
use tracing::warn;

/// What a secret is replaced with, by value or by pattern.
pub const REDACTED: &str = "[redacted]";

/// Keys shorter than this are not matched by value: a short value would
/// turn the scrubber into a wildcard over ordinary text ("abc" in every
/// answer). No provider issues keys that short; the node warns about one.
pub const MIN_KEY_LEN: usize = 8;

/// Removes the node's provider keys from text, in any of their encodings.
/// Built with each routing snapshot from the keys it holds (and kept from
/// the previous one when they did not change); cheap to call when there are
/// none.
#[derive(Default)]
pub struct Scrubber {
    /// One alternation over every key, each character in each of its
    /// encodings; `None` when the node holds no key long enough to match.
    matcher: Option<Regex>,
    /// SHA-256 of the keys matched, to tell a rebuild whether they changed
    /// without keeping another copy of them.
    fingerprint: [u8; 32],
    /// How many keys are matched.
    keys: usize,
}

/// Never prints the matcher: its pattern is the keys.
impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber")
            .field("keys", &self.keys)
            .finish()
    }
}

impl Scrubber {
    /// A scrubber for `keys`; keys shorter than [`MIN_KEY_LEN`] bytes are
    /// left out (see there).
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self::build(&matchable(keys))
    }

    fn build(keys: &[&str]) -> Self {
        if keys.is_empty() {
            return Self {
                fingerprint: fingerprint(keys),
                ..Self::default()
            };
        }
        let pattern = keys
            .iter()
            .map(|k| key_pattern(k))
            .collect::<Vec<_>>()
            .join("|");
        let matcher = RegexBuilder::new(&pattern)
            .unicode(false)
            .size_limit(64 << 20)
            .build()
            .or_else(|e| {
                // Every piece is escaped, so this is a size limit at worst:
                // fall back to the values as written rather than to nothing.
                warn!(error = %e, "provider keys too many to match in every encoding; matching them as written");
                let literal = keys
                    .iter()
                    .map(|k| regex::escape(k))
                    .collect::<Vec<_>>()
                    .join("|");
                RegexBuilder::new(&literal).unicode(false).build()
            })
            .ok();
        Self {
            matcher,
            fingerprint: fingerprint(keys),
            keys: keys.len(),
        }
    }

    /// A scrubber for the provider keys the routing table's upstreams send
    /// (`held`: upstream id and key): `previous` itself when it matches the
    /// same keys (building the matcher takes about a millisecond a key),
    /// else a new one, with a warning for each key too short to match.
    pub fn for_keys(held: &[(&Arc<str>, &str)], previous: Option<&Arc<Self>>) -> Arc<Self> {
        let keys = matchable(held.iter().map(|(_, k)| *k));
        if let Some(previous) = previous
            && previous.fingerprint == fingerprint(&keys)
        {
            return previous.clone();
        }
        for (id, key) in held {
            if key.len() < MIN_KEY_LEN {
                warn!(upstream = %id, min_bytes = MIN_KEY_LEN, "the provider key of this upstream is too short to be scrubbed by value from what the node sends and logs");
            }
        }
        Arc::new(Self::build(&keys))
    }

    /// Whether there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `body` without the node's keys; the same buffer, not a copy, when it
    /// holds none.
    pub fn bytes(&self, body: Bytes) -> Bytes {
        let Some(matcher) = &self.matcher else {
            return body;
        };
        match matcher.replace_all(&body, NoExpand(REDACTED.as_bytes())) {
            Cow::Borrowed(_) => body,
            Cow::Owned(scrubbed) => Bytes::from(scrubbed),
        }
    }

    /// `text` without the node's keys.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(matcher) = &self.matcher else {
            return Cow::Borrowed(text);
        };
        match matcher.replace_all(text.as_bytes(), NoExpand(REDACTED.as_bytes())) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // A match is whole characters of valid UTF-8 (keys are ASCII in
            // a header), replaced by ASCII: the result is UTF-8 too.
            Cow::Owned(scrubbed) => Cow::Owned(String::from_utf8_lossy(&scrubbed).into_owned()),
        }
    }

    /// A header value an upstream sent, without the node's keys.
    pub fn header(&self, value: &HeaderValue) -> HeaderValue {
        let Some(matcher) = &self.matcher else {
            return value.clone();
        };
        match matcher.replace_all(value.as_bytes(), NoExpand(REDACTED.as_bytes())) {
            Cow::Borrowed(_) => value.clone(),
            // Visible ASCII replaced by visible ASCII: still a header value.
            Cow::Owned(scrubbed) => HeaderValue::from_maybe_shared(Bytes::from(scrubbed))
                .unwrap_or_else(|_| HeaderValue::from_static(REDACTED)),
        }
    }

    /// An upstream's message without the node's keys, then through the
    /// pattern net of [`redact_keys`].
    pub fn message(&self, text: &str) -> String {
        redact_keys(&self.text(text))
    }
}

/// The keys worth matching: long enough, each once, longest first (so a
/// key that is a prefix of another does not stop the longer one's match at
/// its own end).
fn matchable<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut keys: Vec<&str> = keys
        .into_iter()
        .filter(|k| k.len() >= MIN_KEY_LEN)
        .collect();
    keys.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    keys.dedup();
    keys
}

/// SHA-256 over the keys, each prefixed by its length.
fn fingerprint(keys: &[&str]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for key in keys {
        hash.update((key.len() as u64).to_le_bytes());
        hash.update(key.as_bytes());
    }
    hash.finalize().into()
}

/// The regular expression of one key: each character as written or, for a
/// character other than a letter or digit, in any encoding a URL, a JSON or
/// an HTML encoder may give it (`%2B`/`%2b`, `%252B` encoded again, `\u002b`
/// or `\/` with any number of backslashes for JSON quoted inside JSON,
/// `&#43;`, `&#x2b;`, `+` for a space), mixed freely within one key. Letters and digits are only
/// ever written as themselves by the encoders that matter; matching their
/// escapes too would buy nothing.
fn key_pattern(key: &str) -> String {
    let mut out = String::with_capacity(key.len() * 4);
    for c in key.chars() {
        if c.is_ascii_alphanumeric() || !c.is_ascii() {
            out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
            continue;
        }
        let b = c as u32;
        let _ = write!(
            out,
            r"(?:{lit}|(?i:%(?:25)*{b:02x}|\\+u00{b:02x}|&#x0*{b:x};)|&#0*{b};",
            lit = regex::escape(c.encode_utf8(&mut [0; 4])),
        );
        match c {
            '/' => out.push_str(r"|\\+/"),
            '"' => out.push_str(r#"|\\+""#),
            '\\' => out.push_str(r"|\\+\\"),
            ' ' => out.push_str(r"|\+"),
            '\t' => out.push_str(r"|\\t"),
            _ => {}
        }
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const SK: &str = "sk-proj-4f9Xq2LmT7vB8nR1cD3eH6kP";
    const B64: &str = "UPSECRETB+x/y=Zq81";

    fn scrubber() -> Scrubber {
        Scrubber::new([SK, B64])
    }

    /// Every way the tests below write a key into text.
    fn encodings(key: &str) -> Vec<String> {
        let pct = |upper: bool| {
            key.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_string()
                    } else if upper {
                        format!("%{:02X}", c as u32)
                    } else {
                        format!("%{:02x}", c as u32)
                    }
                })
                .collect::<String>()
        };
        vec![
            key.to_owned(),
            pct(true),
            pct(false),
            pct(true).replace('%', "%25"),
            // serde_json / most encoders: nothing to escape in a key.
            serde_json::to_string(key)
                .unwrap()
                .trim_matches('"')
                .to_owned(),
            // PHP's json_encode: `\/`.
            key.replace('/', "\\/"),
            // .NET's System.Text.Json: `+` as `\u002B`; Go's: `=`? no, but any
            // non-alphanumeric may come as `\u00XX`, mixed with `\/`.
            key.replace('+', "\\u002B").replace('/', "\\/"),
            key.replace('+', "\\u002b").replace('=', "\\u003d"),
            // Go's html/template.
            key.replace('+', "&#43;")
                .replace('=', "&#61;")
                .replace('/', "&#x2f;"),
            // JSON quoted inside a JSON string.
            key.replace('+', "\\\\u002b").replace('/', "\\\\\\/"),
        ]
    }

    #[test]
    fn keys_go_in_every_encoding() {
        let s = scrubber();
        for key in [SK, B64] {
            for form in encodings(key) {
                for text in [
                    format!("Incorrect API key provided: {form}."),
                    format!("key={form}&x=1"),
                    format!("a\t{form}\tb"),
                    format!("{{\"error\":{{\"message\":\"{form}\"}}}}"),
                    format!("Authorization: Bearer {form}\r\n"),
                    form.clone(),
                ] {
                    let out = s.text(&text);
                    assert!(out.contains(REDACTED), "{text} -> {out}");
                    assert!(!out.contains(&form), "{text} -> {out}");
                    let bytes = s.bytes(Bytes::from(text.clone()));
                    assert_eq!(bytes, out.as_bytes());
                }
            }
        }
    }

    #[test]
    fn header_values_lose_keys_too() {
        let s = scrubber();
        let v = HeaderValue::from_str(&format!("application/json; x={B64}")).unwrap();
        assert_eq!(s.header(&v), "application/json; x=[redacted]");
        let clean = HeaderValue::from_static("text/event-stream");
        assert_eq!(s.header(&clean), clean);
    }

    #[test]
    fn scrubbed_json_stays_json() {
        let s = scrubber();
        let body = format!(
            r#"{{"error":{{"message":"bad key {}","type":"x"}}}}"#,
            B64.replace('/', "\\/").replace('+', "\\u002b")
        );
        let out = s.bytes(Bytes::from(body));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["error"]["message"], "bad key [redacted]");
    }

    #[test]
    fn clean_text_is_not_copied() {
        let s = scrubber();
        let body = Bytes::from_static(b"{\"choices\":[{\"text\":\"sk-proj is a prefix only\"}]}");
        let out = s.bytes(body.clone());
        assert_eq!(out.as_ptr(), body.as_ptr());
        assert!(matches!(s.text("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_key_that_prefixes_another_does_not_hide_it() {
        let s = Scrubber::new(["abcdefgh", "abcdefgh-longer-key"]);
        assert_eq!(s.text("x abcdefgh-longer-key y"), "x [redacted] y");
        assert_eq!(s.text("x abcdefgh y"), "x [redacted] y");
    }

    #[test]
    fn short_keys_are_not_wildcards() {
        let s = Scrubber::new(["abc", "", "1234567"]);
        assert!(s.is_empty());
        assert_eq!(s.text("abc abcdef 1234567"), "abc abcdef 1234567");
        let s = Scrubber::new(["abc", "12345678"]);
        assert_eq!(s.text("abc 12345678"), "abc [redacted]");
    }

    #[test]
    fn debug_never_shows_a_key() {
        let shown = format!("{:?}", scrubber());
        assert!(
            !shown.contains("UPSECRETB") && !shown.contains("sk-proj"),
            "{shown}"
        );
        assert_eq!(shown, "Scrubber { keys: 2 }");
    }

    #[test]
    fn the_same_keys_have_the_same_fingerprint() {
        let a = Scrubber::new([SK, B64, "short"]);
        let b = Scrubber::new([B64, SK, SK]);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, Scrubber::new([SK]).fingerprint);
        assert_ne!(a.fingerprint, Scrubber::default().fingerprint);
    }

    #[test]
    fn no_keys_is_a_no_op() {
        let s = Scrubber::default();
        assert!(s.is_empty());
        assert_eq!(s.message("plain words"), "plain words");
    }

    #[test]
    fn hostile_keys_are_matched_literally() {
        // Regex syntax in a key is a key character, not syntax.
        let key = "a.b*c(d)[e]{f}|g^h$i?j\\k";
        let s = Scrubber::new([key]);
        assert_eq!(s.text(&format!("<{key}>")), "<[redacted]>");
        assert_eq!(
            s.text("aXb*c(d)[e]{f}|g^h$i?j\\k"),
            "aXb*c(d)[e]{f}|g^h$i?j\\k"
        );
    }
}
