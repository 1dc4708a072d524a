//! Token usage and cost of an answer, for the request's log line.
//!
//! Plain answers carry `usage` in their JSON body; streams carry it in their
//! last chunk when the client asked `stream_options.include_usage`. Chunks are
//! only parsed when they contain the word, so a stream costs one substring
//! search per chunk.

use serde::Deserialize;

use crate::routing::Price;

/// Tokens an answer used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    /// Input tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Output tokens (0 for embeddings).
    #[serde(default)]
    pub completion_tokens: u64,
}

impl Usage {
    /// What the tokens cost at the target's prices, in dollars.
    pub fn cost(&self, price: &Price) -> f64 {
        (self.prompt_tokens as f64 * price.input_per_mtok
            + self.completion_tokens as f64 * price.output_per_mtok)
            / 1_000_000.0
    }
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<Usage>,
}

/// The `usage` of a JSON answer body, if it has one.
pub fn from_json(body: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<WithUsage>(body).ok()?.usage
}

/// The `usage` carried by any `data:` line of complete SSE events.
pub fn from_sse(events: &[u8]) -> Option<Usage> {
    memchr::memmem::find(events, b"\"usage\"")?;
    events
        .rsplit(|b| *b == b'\n')
        .filter_map(|line| line.strip_prefix(b"data:"))
        .filter(|data| memchr::memmem::find(data, b"\"usage\"").is_some())
        .find_map(|data| from_json(data.trim_ascii()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn cost_uses_both_prices() {
        let usage = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 500_000,
        };
        let price = Price {
            input_per_mtok: 0.15,
            output_per_mtok: 0.60,
        };
        assert!((usage.cost(&price) - 0.45).abs() < 1e-12);
    }

    #[test]
    fn reads_usage_from_a_plain_answer() {
        let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
        assert_eq!(
            from_json(body),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 3
            })
        );
        assert_eq!(from_json(br#"{"usage":null}"#), None);
        assert_eq!(from_json(b"not json"), None);
        // Embeddings report no completion tokens.
        assert_eq!(
            from_json(br#"{"usage":{"prompt_tokens":4,"total_tokens":4}}"#),
            Some(Usage {
                prompt_tokens: 4,
                completion_tokens: 0
            })
        );
    }

    #[test]
    fn reads_usage_from_the_last_chunk_of_a_stream() {
        let events = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n\
data: [DONE]\n\n";
        assert_eq!(
            from_sse(events),
            Some(Usage {
                prompt_tokens: 9,
                completion_tokens: 2
            })
        );
        assert_eq!(from_sse(b"data: {\"choices\":[]}\n\n"), None);
    }
}
