//! The top-level `usage` of a JSON answer, read from the answer's end.
//!
//! OpenAI chat, Anthropic Messages and the Responses API all write an
//! answer's `usage` among its last members, after the reply's text. Parsing
//! the whole answer to reach it made the read grow with the reply (381 ns for
//! a 310-byte answer, 3.5 µs for a 32 KB one, `per_request` bench); here
//! the last `"usage"` key is found by a substring search from the end, its
//! value is parsed, and what follows it is checked to be the rest of the
//! outermost object: members at that same level, its closing brace, then
//! only whitespace. Anything else (no such key, a nested one, `null`, a
//! value or a tail that does not parse) is `None`, and the caller parses
//! the whole answer instead.
//!
//! Why a match is a key: in valid JSON a quote inside a string is escaped,
//! so a `"usage"` whose first quote is not escaped (an even run of
//! backslashes before it) opens a string, and a string followed by a colon
//! is a key. What comes before the key is not checked: the answer is the
//! upstream's, and its usage is what the upstream says either way. Two
//! top-level `usage` members (which the whole parse refuses) read as the
//! last, as most JSON parsers read them.

use std::sync::LazyLock;

use memchr::memmem::FinderRev;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Deserializer;

use super::RawUsage;

/// The key's searcher, built once (see `USAGE_KEY`).
static KEY: LazyLock<FinderRev<'static>> = LazyLock::new(|| FinderRev::new(b"\"usage\""));

/// What the answer's end shows of the outermost object's `usage`.
pub(super) enum Tail {
    /// The usage, read.
    Usage(RawUsage),
    /// `"usage": null`, as every chunk of an OpenAI stream but the last
    /// carries it when the client asks for the usage.
    Null,
    /// Nothing the end can vouch for: parse the whole answer.
    Unknown,
}

/// The outermost object's `usage`, when the answer's end shows it plainly.
pub(super) fn top_level(body: &[u8]) -> Tail {
    let mut end = body.len();
    while let Some(at) = KEY.rfind(&body[..end]) {
        end = at;
        if escaped(body, at) {
            continue; // the end of a string's text, not a key
        }
        let colon = skip_ws(body, at + KEY.needle().len());
        if body.get(colon) != Some(&b':') {
            continue; // the string "usage" as a value
        }
        return match value::<Option<RawUsage>>(body, colon + 1) {
            Some((usage, after)) if rest_of_outermost(body, after).is_some() => {
                usage.map_or(Tail::Null, Tail::Usage)
            }
            _ => Tail::Unknown,
        };
    }
    Tail::Unknown
}

/// Whether the quote at `at` is escaped: an odd run of backslashes before it.
fn escaped(body: &[u8], at: usize) -> bool {
    body[..at].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// The first position from `at` that is not JSON whitespace.
fn skip_ws(body: &[u8], at: usize) -> usize {
    at + body
        .get(at..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count()
}

/// One JSON value from `at` (after any whitespace), and where it ends.
fn value<'de, T: Deserialize<'de>>(body: &'de [u8], at: usize) -> Option<(T, usize)> {
    let mut values = Deserializer::from_slice(body.get(at..)?).into_iter::<T>();
    let value = values.next()?.ok()?;
    Some((value, at + values.byte_offset()))
}

/// `Some` when `body` from `at` is the rest of an object's members, the
/// object's closing brace, then nothing but whitespace.
fn rest_of_outermost(body: &[u8], mut at: usize) -> Option<()> {
    loop {
        at = skip_ws(body, at);
        match body.get(at)? {
            b'}' => return (skip_ws(body, at + 1) == body.len()).then_some(()),
            b',' => {
                let key = skip_ws(body, at + 1);
                if body.get(key) != Some(&b'"') {
                    return None;
                }
                let (IgnoredAny, after_key) = value(body, key)?;
                let colon = skip_ws(body, after_key);
                if body.get(colon) != Some(&b':') {
                    return None;
                }
                let (IgnoredAny, after_value) = value(body, colon + 1)?;
                at = after_value;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
#[path = "tail_tests.rs"]
mod tests;
