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

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Deserializer;

use super::RawUsage;

const KEY: &[u8] = b"\"usage\"";

/// The outermost object's `usage`, when the answer's end shows it plainly.
pub(super) fn top_level(body: &[u8]) -> Option<RawUsage> {
    let mut end = body.len();
    loop {
        let at = memchr::memmem::rfind(&body[..end], KEY)?;
        end = at;
        if escaped(body, at) {
            continue; // the end of a string's text, not a key
        }
        let colon = skip_ws(body, at + KEY.len());
        if body.get(colon) != Some(&b':') {
            continue; // the string "usage" as a value
        }
        let (usage, after) = value::<Option<RawUsage>>(body, colon + 1)?;
        return rest_of_outermost(body, after).and(usage);
    }
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
