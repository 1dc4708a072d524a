//! Token usage and cost of an answer: the request's log line, the client's
//! `x-meridian-cost-usd` header and a stream's `usage.cost`, the cost
//! counters.
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
//!
//! Tokens read from a provider's prompt cache are counted apart, as each API
//! reports them: OpenAI's `prompt_tokens_details.cached_tokens` and the
//! Responses API's `input_tokens_details.cached_tokens` are part of the input
//! count; Anthropic's `cache_read_input_tokens` and
//! `cache_creation_input_tokens` are not, and are added to it. Tokens written
//! to Anthropic's cache are billed at the input price (this project has no
//! cache-write price).
//!
//! A [`Cost`] is exact: prices are taken in millionths of a dollar per
//! million tokens, so a cost is a whole number of picodollars (1e-12 USD),
//! and it is written as a plain decimal ([`Cost`]'s `Display`).

use std::fmt;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use serde::Deserialize;

use crate::routing::Price;

mod tail;
pub mod unasked;
pub mod unreported;

use tail::Tail;

/// The header of a plain answer that says what it cost, in dollars
/// ([`Cost`]'s decimal), at the prices of the target that answered.
pub const COST_HEADER: http::HeaderName = http::HeaderName::from_static("x-meridian-cost-usd");

/// Tokens an answer used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens, those read from the prompt cache included.
    pub prompt_tokens: u64,
    /// Output tokens (0 for embeddings).
    pub completion_tokens: u64,
    /// Of the input tokens, those read from the provider's prompt cache.
    pub cached_tokens: u64,
}

impl Usage {
    /// What the tokens cost at the target's prices; `None` when the target
    /// has no price, so that no figure is made up.
    pub fn cost(&self, price: &Price) -> Option<Cost> {
        if !price.is_known() {
            return None;
        }
        let input = micros(price.input_per_mtok);
        let cached_price = price.cached_input_per_mtok.map_or(input, micros);
        let cached = self.cached_tokens.min(self.prompt_tokens);
        let uncached = self.prompt_tokens - cached;
        // Tokens × millionths of a dollar per million tokens: picodollars.
        let pico = u128::from(uncached) * input
            + u128::from(cached) * cached_price
            + u128::from(self.completion_tokens) * micros(price.output_per_mtok);
        Some(Cost { pico })
    }

    /// Every count, each the larger of the two: counts in a stream only
    /// grow, and each event may carry only some of them.
    pub fn merge(self, other: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.max(other.prompt_tokens),
            completion_tokens: self.completion_tokens.max(other.completion_tokens),
            cached_tokens: self.cached_tokens.max(other.cached_tokens),
        }
    }
}

impl Price {
    /// Whether any price is set: a target with none has no cost to tell.
    pub fn is_known(&self) -> bool {
        self.input_per_mtok > 0.0
            || self.output_per_mtok > 0.0
            || self.cached_input_per_mtok.is_some_and(|p| p > 0.0)
    }
}

/// A price per million tokens in millionths of a dollar, rounded (prices
/// are validated as finite and not negative; anything else counts as 0).
fn micros(per_mtok: f64) -> u128 {
    if per_mtok.is_finite() && per_mtok > 0.0 {
        // Saturating: a price above u128's range is not a price.
        (per_mtok * 1_000_000.0).round() as u128
    } else {
        0
    }
}

/// What an answer cost, exactly, in picodollars (1e-12 USD).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cost {
    pico: u128,
}

impl Cost {
    /// Picodollars in a dollar.
    const PICO: u128 = 1_000_000_000_000;

    /// The cost in picodollars (1e-12 USD).
    pub fn picodollars(self) -> u128 {
        self.pico
    }

    /// The cost in nanodollars, rounded: what the Prometheus counters add
    /// up (a u64 of them holds 18 billion dollars).
    pub fn nanodollars(self) -> u64 {
        u64::try_from((self.pico + 500) / 1000).unwrap_or(u64::MAX)
    }

    /// The cost in dollars as a float, for the log line.
    pub fn usd(self) -> f64 {
        self.pico as f64 / Self::PICO as f64
    }
}

/// Plain decimal dollars: no exponent, at most 12 digits after the point
/// (exact), trailing zeros dropped: `0.000123`, `0.45`, `0`, `12`. Valid as
/// a header value and as a JSON number.
impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.pico / Self::PICO, self.pico % Self::PICO);
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{frac:012}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// A `usage` object of any API, as it is written: every figure may be
/// absent or `null`.
#[derive(Deserialize)]
struct RawUsage {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: Option<u64>,
    /// OpenAI chat's; its `cached_tokens` are part of `prompt_tokens`.
    #[serde(default, alias = "input_tokens_details")]
    prompt_tokens_details: Option<Details>,
    /// Anthropic's: not part of its `input_tokens`.
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    /// Anthropic's: not part of its `input_tokens`, billed as input here.
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<RawUsage> for Usage {
    fn from(raw: RawUsage) -> Self {
        let read = raw.cache_read_input_tokens.unwrap_or(0);
        let cached = raw
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
            .saturating_add(read);
        Usage {
            prompt_tokens: raw
                .prompt_tokens
                .unwrap_or(0)
                .saturating_add(read)
                .saturating_add(raw.cache_creation_input_tokens.unwrap_or(0)),
            completion_tokens: raw.completion_tokens.unwrap_or(0),
            cached_tokens: cached,
        }
    }
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<RawUsage>,
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
    usage: Option<RawUsage>,
}

/// The searchers of the words looked for in every answer and stream event
/// are built once: `memmem::find` builds one on every call, which on a
/// stream chunk costs more than the search (`NESTS`' three, 100 ns a chunk;
/// this one, 29 -> 7.6 ns for a chunk without a usage).
static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));

/// Whether `bytes` hold the text `"usage"` anywhere: the test every stream
/// event passes before anything parses it.
pub(crate) fn mentions_usage(bytes: &[u8]) -> bool {
    USAGE_KEY.find(bytes).is_some()
}

/// The words of a `usage` that may sit one level down: the keys that
/// hold one, and the escape a key could be spelled with.
static NESTS: LazyLock<[Finder<'static>; 3]> = LazyLock::new(|| {
    [
        Finder::new(b"\"message\""),
        Finder::new(b"\"response\""),
        Finder::new(b"\\u"),
    ]
});

/// The `usage` of a JSON answer body, if it has one: from the answer's end
/// when it shows it plainly ([`tail`]), else from the whole answer.
pub fn from_json(body: &[u8]) -> Option<Usage> {
    match tail::top_level(body) {
        Tail::Usage(raw) => return Some(raw.into()),
        // A null usage, and no other place one could be: no `message` or
        // `response` key (nor a key spelled with escapes) anywhere.
        Tail::Null if nothing_nested(body) => return None,
        Tail::Null | Tail::Unknown => {}
    }
    whole(body)
}

/// The `usage` of a JSON answer, from the whole answer: top level first,
/// then one level down (`message`, `response`).
fn whole(body: &[u8]) -> Option<Usage> {
    let with = serde_json::from_slice::<WithUsage>(body).ok()?;
    with.usage
        .or_else(|| with.message.and_then(|m| m.usage))
        .or_else(|| with.response.and_then(|r| r.usage))
        .map(Usage::from)
}

/// Whether the outermost `usage` of `json` is `null` and no other can be in
/// it: what every chunk of an OpenAI stream but the last says when the
/// client asks for the usage, told without parsing the chunk.
pub(crate) fn surely_null(json: &[u8]) -> bool {
    matches!(tail::top_level(json), Tail::Null) && nothing_nested(json)
}

/// No `message` or `response` key anywhere (nor a key spelled with escapes),
/// so no `usage` one level down.
fn nothing_nested(json: &[u8]) -> bool {
    NESTS.iter().all(|word| word.find(json).is_none())
}

/// The `usage` carried by the `data:` lines of complete SSE events, merged.
pub fn from_sse(events: &[u8]) -> Option<Usage> {
    if !mentions_usage(events) {
        return None;
    }
    events
        .split(|b| *b == b'\n')
        .filter_map(|line| line.strip_prefix(b"data:"))
        .filter(|data| mentions_usage(data))
        .filter_map(|data| from_json(data.trim_ascii()))
        .reduce(Usage::merge)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn usage(prompt: u64, completion: u64, cached: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: cached,
        }
    }

    fn price(input: f64, output: f64, cached: Option<f64>) -> Price {
        Price {
            input_per_mtok: input,
            output_per_mtok: output,
            cached_input_per_mtok: cached,
        }
    }

    #[test]
    fn cost_uses_both_prices() {
        let cost = usage(1_000_000, 500_000, 0).cost(&price(0.15, 0.60, None));
        assert_eq!(cost.unwrap().to_string(), "0.45");
        assert!((cost.unwrap().usd() - 0.45).abs() < 1e-12);
    }

    #[test]
    fn cached_tokens_take_the_cached_price_or_the_input_price() {
        // 1,000 input tokens of which 400 cached, 100 output.
        let u = usage(1_000, 100, 400);
        let with = u.cost(&price(2.5, 10.0, Some(1.25))).unwrap();
        // 600 × 2.5 + 400 × 1.25 + 100 × 10 = 3,000 millionths.
        assert_eq!(with.to_string(), "0.003");
        let without = u.cost(&price(2.5, 10.0, None)).unwrap();
        assert_eq!(without.to_string(), "0.0035");
        // A count of cached tokens above the input's is cut to it.
        let odd = usage(10, 0, 50).cost(&price(1.0, 0.0, Some(0.5))).unwrap();
        assert_eq!(odd.to_string(), "0.000005");
    }

    #[test]
    fn no_price_no_cost() {
        assert_eq!(usage(5, 5, 0).cost(&Price::default()), None);
        assert_eq!(usage(5, 5, 0).cost(&price(0.0, 0.0, Some(0.0))), None);
        // A price known and nothing used: a true zero.
        assert_eq!(
            usage(0, 0, 0)
                .cost(&price(1.0, 0.0, None))
                .map(|c| c.to_string()),
            Some("0".into())
        );
        assert!(price(0.0, 0.0, Some(0.1)).is_known());
    }

    #[test]
    fn a_cost_is_written_exactly_without_an_exponent() {
        // One token at $0.075 per million: 7.5e-8 dollars.
        let c = usage(1, 0, 0).cost(&price(0.075, 0.0, None)).unwrap();
        assert_eq!(c.to_string(), "0.000000075");
        assert_eq!(c.picodollars(), 75_000);
        assert_eq!(c.nanodollars(), 75);
        // 12 tokens in, 3 out at 0.07 / 0.25 is 1.59e-6.
        let c = usage(12, 3, 0).cost(&price(0.07, 0.25, None)).unwrap();
        assert_eq!(c.to_string(), "0.00000159");
        let big = usage(3_000_000, 0, 0)
            .cost(&price(15.0, 0.0, None))
            .unwrap();
        assert_eq!(big.to_string(), "45");
        // The smallest: one token at a millionth of a dollar per million.
        let tiny = usage(1, 0, 0).cost(&price(0.000001, 0.0, None)).unwrap();
        assert_eq!(tiny.to_string(), "0.000000000001");
        assert_eq!(tiny.nanodollars(), 0);
    }

    #[test]
    fn reads_usage_from_a_plain_answer() {
        let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
        assert_eq!(from_json(body), Some(usage(12, 3, 0)));
        assert_eq!(from_json(br#"{"usage":null}"#), None);
        assert_eq!(from_json(b"not json"), None);
        // Embeddings report no completion tokens.
        assert_eq!(
            from_json(br#"{"usage":{"prompt_tokens":4,"total_tokens":4}}"#),
            Some(usage(4, 0, 0))
        );
    }

    #[test]
    fn reads_cached_tokens_in_each_shape() {
        // OpenAI chat: cached tokens are part of the prompt's.
        let chat = br#"{"usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,
            "prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},
            "completion_tokens_details":{"reasoning_tokens":0}}}"#;
        assert_eq!(from_json(chat), Some(usage(2006, 300, 1920)));
        let null_details =
            br#"{"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":null}}"#;
        assert_eq!(from_json(null_details), Some(usage(5, 1, 0)));
        // Anthropic: reads from and writes to the cache are not in
        // `input_tokens`; both are input, the reads are cached.
        let anthropic = br#"{"type":"message","content":[],"usage":{"input_tokens":50,
            "cache_creation_input_tokens":200,"cache_read_input_tokens":1000,"output_tokens":30}}"#;
        assert_eq!(from_json(anthropic), Some(usage(1250, 30, 1000)));
        let nulls = br#"{"usage":{"input_tokens":5,"cache_creation_input_tokens":null,"cache_read_input_tokens":null,"output_tokens":1}}"#;
        assert_eq!(from_json(nulls), Some(usage(5, 1, 0)));
        // The Responses API: cached tokens are part of `input_tokens`.
        let responses = br#"{"object":"response","usage":{"input_tokens":300,
            "input_tokens_details":{"cached_tokens":256},"output_tokens":20,
            "output_tokens_details":{"reasoning_tokens":0},"total_tokens":320}}"#;
        assert_eq!(from_json(responses), Some(usage(300, 20, 256)));
        // Priced, each gives the same split.
        let p = price(1.0, 2.0, Some(0.1));
        assert_eq!(
            from_json(anthropic).unwrap().cost(&p).unwrap().to_string(),
            // 250 × 1 + 1000 × 0.1 + 30 × 2 = 410 millionths
            "0.00041"
        );
    }

    #[test]
    fn reads_usage_from_the_last_chunk_of_a_stream() {
        let events = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":8}}}\n\n\
data: [DONE]\n\n";
        assert_eq!(from_sse(events), Some(usage(9, 2, 8)));
        assert_eq!(from_sse(b"data: {\"choices\":[]}\n\n"), None);
    }

    #[test]
    fn reads_anthropic_and_responses_usage() {
        let plain =
            br#"{"type":"message","content":[],"usage":{"input_tokens":7,"output_tokens":4}}"#;
        assert_eq!(from_json(plain), Some(usage(7, 4, 0)));
        let events = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n";
        assert_eq!(from_sse(events), Some(usage(125, 15, 100)));
        let completed = b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"usage\":{\"input_tokens\":3,\"output_tokens\":9,\"total_tokens\":12}}}\n\n";
        assert_eq!(from_sse(completed), Some(usage(3, 9, 0)));
    }
}
