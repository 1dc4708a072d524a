//! What an answer whose usage was never reported used, by estimate.
//!
//! An upstream reports a stream's usage at its end. When the client leaves
//! well before it (past the relay's drain grace), or the upstream ends the
//! stream without one (an OpenAI-compatible server that ignores
//! `stream_options`, or one that writes no valid figures), no report
//! comes, and a stream counted as free would let a key stream past its
//! credits and token limits. So such a stream is charged an estimate, from
//! what the node saw: the prompt's size, and the events the client was
//! sent. Each reported count is kept where there is one (Anthropic reports
//! the input in its first event). A plain answer without usage is charged
//! an estimate from the sizes of the request and the answer.

use memchr::memmem::Finder;
use std::sync::LazyLock;

use super::Usage;

/// A `data:` line after the first: JSON holds no raw newline, so this
/// occurs only where an event's data line starts.
static DATA_LINE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\ndata:"));

/// The bytes of a body counted as one token: about a tokenizer's (four
/// characters of English a token), so the JSON around the text makes the
/// estimate no lower than the truth.
const PROMPT_BYTES_PER_TOKEN: u64 = 4;

/// The input tokens estimated for a request body of `bytes`.
pub fn prompt_estimate(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(PROMPT_BYTES_PER_TOKEN)
}

/// How many data events `events` (whole SSE events) holds: each content
/// event carries at least one output token.
pub fn data_events(events: &[u8]) -> u64 {
    let first = u64::from(events.starts_with(b"data:"));
    first + DATA_LINE.find_iter(events).count() as u64
}

/// The usage of a stream whose end was not reported: what was `reported`,
/// and where a count was not, the estimate (`prompt` input tokens; an output token for
/// each of the `events` sent).
pub fn estimate(reported: Option<Usage>, prompt: u64, events: u64) -> Usage {
    let reported = reported.unwrap_or_default();
    Usage {
        prompt_tokens: match reported.prompt_tokens {
            0 => prompt,
            n => n,
        },
        completion_tokens: reported.completion_tokens.max(events),
        cached_tokens: reported.cached_tokens,
    }
}

/// The usage of a plain answer that reports none (or none that parses):
/// input from the request's `prompt_bytes`; output, for an answer that
/// `generates` text (not an embedding), from the answer's own bytes, its
/// JSON around the text included, so again no lower than the truth.
pub fn answer_estimate(prompt_bytes: usize, answer_bytes: usize, generates: bool) -> Usage {
    Usage {
        prompt_tokens: prompt_estimate(prompt_bytes),
        completion_tokens: if generates {
            (answer_bytes as u64).div_ceil(PROMPT_BYTES_PER_TOKEN)
        } else {
            0
        },
        cached_tokens: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_events_are_counted_by_their_lines() {
        assert_eq!(data_events(b""), 0);
        assert_eq!(data_events(b"data: {}\n\n"), 1);
        assert_eq!(
            data_events(b"data: {}\n\ndata: {}\r\n\r\ndata: [DONE]\n\n"),
            3
        );
        assert_eq!(
            data_events(
                b"event: content_block_delta\ndata: {}\n\n: ping\n\nevent: x\ndata: {}\n\n"
            ),
            2
        );
        // A `data:` inside a JSON string is not at a line's start.
        assert_eq!(data_events(b"data: {\"t\":\"data: no\"}\n\n"), 1);
    }

    #[test]
    fn what_was_reported_is_kept_and_the_rest_estimated() {
        assert_eq!(
            estimate(None, 25, 7),
            Usage {
                prompt_tokens: 25,
                completion_tokens: 7,
                cached_tokens: 0
            }
        );
        // Anthropic's `message_start`: the input exact, one output token.
        let started = Usage {
            prompt_tokens: 1200,
            completion_tokens: 1,
            cached_tokens: 1000,
        };
        assert_eq!(
            estimate(Some(started), 25, 40),
            Usage {
                prompt_tokens: 1200,
                completion_tokens: 40,
                cached_tokens: 1000
            }
        );
        assert_eq!(estimate(Some(started), 25, 0), started);
    }

    #[test]
    fn a_plain_answer_is_estimated_from_both_bodies() {
        let usage = |prompt_tokens, completion_tokens| Usage {
            prompt_tokens,
            completion_tokens,
            cached_tokens: 0,
        };
        assert_eq!(answer_estimate(400, 1001, true), usage(100, 251));
        // An embedding's vectors are no output.
        assert_eq!(answer_estimate(400, 80_000, false), usage(100, 0));
        assert_eq!(answer_estimate(0, 0, true), usage(0, 0));
    }

    #[test]
    fn the_prompt_estimate_rounds_up() {
        assert_eq!(prompt_estimate(0), 0);
        assert_eq!(prompt_estimate(1), 1);
        assert_eq!(prompt_estimate(400), 100);
        assert_eq!(prompt_estimate(401), 101);
        assert_eq!(prompt_estimate(usize::MAX), (usize::MAX as u64).div_ceil(4));
    }
}
