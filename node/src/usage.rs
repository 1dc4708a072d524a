//! Token usage and cost of an answer, for the request's log line.
//!
//! Plain answers carry `usage` in their JSON body; streams carry it in their
//! last chunk when the client asked `stream_options.include_usage`. Chunks are
//! only parsed when they contain the word, so a stream costs one substring
//! search per chunk.
//!
//! Every API Meridian speaks is read: OpenAI chat (`prompt_tokens`,
//! `completion_tokens`), Anthropic Messages and the Responses API
//! (`input_tokens`, `output_tokens`), whose usage may sit one level down
//! (`message.usage` in Anthropic's `message_start`, `response.usage` in
//! `response.completed`). An Anthropic stream spreads it over two events
//! (input in `message_start`, output in `message_delta`), so a stream's
//! usages are [merged](Usage::merge).

use serde::Deserialize;

use crate::routing::Price;

/// Tokens an answer used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    /// Input tokens.
    #[serde(default, alias = "input_tokens")]
    pub prompt_tokens: u64,
    /// Output tokens (0 for embeddings).
    #[serde(default, alias = "output_tokens")]
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

impl Usage {
    /// Both counts, each the larger of the two: counts in a stream only
    /// grow, and each event may carry only one of them.
    pub fn merge(self, other: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.max(other.prompt_tokens),
            completion_tokens: self.completion_tokens.max(other.completion_tokens),
        }
    }
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<Usage>,
    /// Anthropic's `message_start` event.
    #[serde(default)]
    message: Option<Nested>,
    /// The Responses API's answer events.
    #[serde(default)]
    response: Option<Nested>,
}

#[derive(Deserialize)]
struct Nested {
    #[serde(default)]
    usage: Option<Usage>,
}

/// The `usage` of a JSON answer body, if it has one.
pub fn from_json(body: &[u8]) -> Option<Usage> {
    let with = serde_json::from_slice::<WithUsage>(body).ok()?;
    with.usage
        .or_else(|| with.message.and_then(|m| m.usage))
        .or_else(|| with.response.and_then(|r| r.usage))
}

/// The `usage` carried by the `data:` lines of complete SSE events, merged.
pub fn from_sse(events: &[u8]) -> Option<Usage> {
    memchr::memmem::find(events, b"\"usage\"")?;
    events
        .split(|b| *b == b'\n')
        .filter_map(|line| line.strip_prefix(b"data:"))
        .filter(|data| memchr::memmem::find(data, b"\"usage\"").is_some())
        .filter_map(|data| from_json(data.trim_ascii()))
        .reduce(Usage::merge)
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

    #[test]
    fn reads_anthropic_and_responses_usage() {
        let plain =
            br#"{"type":"message","content":[],"usage":{"input_tokens":7,"output_tokens":4}}"#;
        assert_eq!(
            from_json(plain),
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 4
            })
        );
        let events = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n";
        assert_eq!(
            from_sse(events),
            Some(Usage {
                prompt_tokens: 25,
                completion_tokens: 15
            })
        );
        let completed = b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"usage\":{\"input_tokens\":3,\"output_tokens\":9,\"total_tokens\":12}}}\n\n";
        assert_eq!(
            from_sse(completed),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 9
            })
        );
    }
}
