//! The pattern net: [`redact_keys`] replaces anything that looks like a
//! credential in an upstream's message.
//!
//! It runs after [`Scrubber`](super::Scrubber) has removed the keys the node
//! holds, as a second net for upstream messages: it also catches keys the
//! node does not hold, such as the masked key a provider names in its 401.

use super::REDACTED;

/// An upstream's error message with anything that looks like a credential
/// replaced: providers echo part of a rejected key ("Incorrect API key
/// provided: sk-proj-****abcd"), and the message goes into client answers,
/// logs and the dashboard. A word is a credential if it starts like a
/// provider key (`sk-`, `key-`, `Bearer`'s argument) or is a long run of
/// key characters. Words are split on any whitespace and on `=`/`:` (so
/// `key=VALUE` and `key:VALUE` are two words).
pub fn redact_keys(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut after_bearer = false;
    let mut rest = message;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '=' || c == ':')
            .unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        if !word.is_empty() {
            let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '*');
            let keyish = bare.len() >= 24
                && bare.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*' | '.' | '+' | '/')
                });
            if after_bearer || bare.starts_with("sk-") || bare.starts_with("key-") || keyish {
                out.push_str(REDACTED);
            } else {
                out.push_str(word);
            }
            after_bearer = bare.eq_ignore_ascii_case("bearer");
        }
        let mut chars = after.chars();
        if let Some(sep) = chars.next() {
            out.push(sep);
        }
        rest = chars.as_str();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn upstream_messages_lose_anything_like_a_key() {
        assert_eq!(
            redact_keys("Incorrect API key provided: sk-proj-****abcd. You can find yours."),
            "Incorrect API key provided: [redacted] You can find yours."
        );
        assert_eq!(
            redact_keys("bad token Bearer abc123 rejected"),
            "bad token Bearer [redacted] rejected"
        );
        assert_eq!(
            redact_keys("key 0123456789abcdef0123456789abcdef is invalid"),
            "key [redacted] is invalid"
        );
        assert_eq!(
            redact_keys("key=0123456789abcdef0123456789abcdef\tnext"),
            "key=[redacted]\tnext"
        );
        assert_eq!(
            redact_keys("The model `gpt-4o-mini` is overloaded"),
            "The model `gpt-4o-mini` is overloaded"
        );
        assert_eq!(redact_keys(""), "");
        assert_eq!(redact_keys("  a  b "), "  a  b ");
    }
}
