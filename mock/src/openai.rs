//! The OpenAI wire format as the fake provider speaks it: the request fields it
//! reads, and the answer bodies it builds. Bodies are serialised straight from
//! borrowed structs, so an answer costs one small buffer.

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};

use super::chat_tools::ChatTool;
use super::tools;

/// The canned words the fake model answers with, one per chunk (cycled).
const WORDS: [&str; 8] = [
    "Hello",
    " from",
    " the",
    " Meridian",
    " mock",
    " provider",
    ",",
    " again",
];

/// Embedding dimensions when the request names none.
pub const DEFAULT_DIMENSIONS: usize = 8;

/// The largest `dimensions` accepted, so one request cannot ask for gigabytes.
pub const MAX_DIMENSIONS: usize = 16_384;

/// The SSE event that closes an OpenAI stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// `POST /v1/chat/completions`: only the fields the mock uses; the rest are
/// accepted and ignored, as a provider would.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The model asked for, echoed back (tests check what the proxy sent).
    pub model: String,
    /// The conversation; only its text counts, for `prompt_tokens`.
    pub messages: Vec<ChatMessage>,
    /// Whether to answer as SSE.
    #[serde(default)]
    pub stream: Option<bool>,
    /// `include_usage` adds the final usage chunk to a stream.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Caps the number of chunks (`finish_reason: "length"` when it bites).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// The newer name of `max_tokens`.
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Tools the model may call ([`crate::chat_tools`]).
    #[serde(default)]
    pub tools: Vec<ChatTool>,
    /// `none`, `auto`, `required`, or `{"type":"function","function":{"name"}}`.
    #[serde(default)]
    pub tool_choice: Option<serde_json::Value>,
}

/// One chat message: its role matters only to tool use (a `tool` message
/// last is a result to quote).
#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, ...
    #[serde(default)]
    pub role: Option<String>,
    /// Text, or a list of parts (only text parts count).
    #[serde(default)]
    pub content: Option<Content>,
}

/// Message content: a string or a list of typed parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Multi-part content; parts without text (images) count nothing.
    Parts(Vec<ContentPart>),
}

impl Content {
    /// Its text, parts joined.
    pub fn text(&self) -> String {
        match self {
            Content::Text(text) => text.clone(),
            Content::Parts(parts) => parts.iter().filter_map(|p| p.text.as_deref()).collect(),
        }
    }
}

/// One part of multi-part content.
#[derive(Debug, Deserialize)]
pub struct ContentPart {
    /// The part's text, if it is a text part.
    #[serde(default)]
    pub text: Option<String>,
}

/// `stream_options` of a streaming request.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` and no choices.
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/completions` (legacy).
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    /// The model asked for, echoed back.
    pub model: String,
    /// The prompt, for `prompt_tokens`.
    pub prompt: Input,
    /// Whether to answer as SSE.
    #[serde(default)]
    pub stream: Option<bool>,
    /// `include_usage` adds the final usage chunk to a stream.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Caps the number of chunks.
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    /// The model asked for, echoed back.
    pub model: String,
    /// What to embed: one vector per item.
    pub input: Input,
    /// `float` (default) or `base64` (the official Python SDK's default).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Vector length; [`DEFAULT_DIMENSIONS`] when absent.
    #[serde(default)]
    pub dimensions: Option<usize>,
}

/// A prompt or an embedding input: text or tokens, one or many.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One token array.
    Tokens(Vec<u64>),
    /// Several token arrays.
    TokenLists(Vec<Vec<u64>>),
}

/// One item of an [`Input`], borrowed.
#[derive(Clone, Copy, Debug)]
pub enum Item<'a> {
    /// A text.
    Text(&'a str),
    /// A token array.
    Tokens(&'a [u64]),
}

impl Input {
    /// The items, one per vector (embeddings) or prompt (completions).
    pub fn items(&self) -> Vec<Item<'_>> {
        match self {
            Input::Text(text) => vec![Item::Text(text)],
            Input::Texts(texts) => texts.iter().map(|t| Item::Text(t)).collect(),
            Input::Tokens(tokens) => vec![Item::Tokens(tokens)],
            Input::TokenLists(lists) => lists.iter().map(|t| Item::Tokens(t)).collect(),
        }
    }

    /// Token count of the whole input, at least 1.
    pub fn tokens(&self) -> u32 {
        let sum: u64 = self.items().iter().map(|item| item.tokens()).sum();
        at_least_one(sum)
    }
}

impl Item<'_> {
    fn tokens(&self) -> u64 {
        match self {
            Item::Text(text) => text_tokens(text.chars().count()),
            Item::Tokens(tokens) => tokens.len() as u64,
        }
    }
}

impl ChatRequest {
    /// Token count of the messages: their characters / 4, rounded up, at least 1.
    pub fn prompt_tokens(&self) -> u32 {
        let chars: usize = self
            .messages
            .iter()
            .filter_map(|m| m.content.as_ref())
            .map(|content| match content {
                Content::Text(text) => text.chars().count(),
                Content::Parts(parts) => parts
                    .iter()
                    .filter_map(|p| p.text.as_deref())
                    .map(|t| t.chars().count())
                    .sum(),
            })
            .sum();
        at_least_one(text_tokens(chars))
    }
}

/// The mock's tokenizer: four characters a token, rounded up.
fn text_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

fn at_least_one(tokens: u64) -> u32 {
    u32::try_from(tokens).unwrap_or(u32::MAX).max(1)
}

/// The text of content chunk `i`.
pub fn chunk_text(i: u32) -> &'static str {
    WORDS[i as usize % WORDS.len()]
}

/// The whole answer of a non-streamed completion: the chunks' texts joined, so
/// a stream and a plain answer say the same thing.
pub fn answer_text(chunks: u32) -> String {
    (0..chunks).map(chunk_text).collect()
}

/// Frames one SSE event: `data: <json>\n\n`.
pub fn sse_event<T: Serialize>(payload: &T) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"data: ");
    // Serialising these plain structs into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut buf, payload);
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

/// Serialises a JSON body.
pub fn json_body<T: Serialize>(payload: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(payload).unwrap_or_default())
}

/// An OpenAI error body: `{"error":{"message","type","param":null,"code"}}`.
pub fn error_body(message: &str, kind: &str, code: Option<&str>) -> Bytes {
    json_body(&proto::api::openai::ErrorEnvelope::new(
        message, kind, None, code,
    ))
}

/// The `GET /v1/models` body, built once at start.
pub fn models_body(models: &[String]) -> Bytes {
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<Model<'a>>,
    }
    #[derive(Serialize)]
    struct Model<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        owned_by: &'static str,
    }
    json_body(&List {
        object: "list",
        data: models
            .iter()
            .map(|id| Model {
                id,
                object: "model",
                created: 0,
                owned_by: "meridian-mock",
            })
            .collect(),
    })
}

/// Which completion API an answer is for: the two share everything but shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
}

/// Token counts of an answer.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Usage {
    /// Tokens of the request.
    pub prompt_tokens: u32,
    /// Tokens of the answer: one per chunk.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

/// An answer id: `chatcmpl-mock-N` or `cmpl-mock-N`, written without allocating.
#[derive(Clone, Copy, Debug)]
struct Id {
    api: Api,
    n: u64,
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.api {
            Api::Chat => "chatcmpl",
            Api::Completions => "cmpl",
        };
        write!(f, "{prefix}-mock-{}", self.n)
    }
}

/// Everything needed to write one completion answer, plain or as a stream.
#[derive(Clone, Debug)]
pub struct Completion {
    /// Chat or legacy completions.
    pub api: Api,
    /// The request number (for the id).
    pub n: u64,
    /// Unix seconds.
    pub created: u64,
    /// The request's model, echoed.
    pub model: String,
    /// Number of content chunks (= completion tokens), at least 1.
    pub chunks: u32,
    /// `stop`, or `length` when `max_tokens` cut the answer short.
    pub finish_reason: &'static str,
    /// Token counts.
    pub usage: Usage,
    /// The pieces of a quoted tool result, said instead of the canned words.
    pub quote: Option<Vec<String>>,
}

#[derive(Serialize)]
struct ChatMessageOut<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    message: ChatMessageOut<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    content: &'a str,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

/// The envelope shared by every completion body and chunk.
#[derive(Serialize)]
struct Envelope<'a, C> {
    id: Id,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: C,
    /// `None`: no `usage` member. `Some(None)`: `"usage": null`, which
    /// OpenAI writes into every chunk before the last when the client asks
    /// `stream_options.include_usage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

impl Completion {
    /// Builds the answer to a request with `prompt_tokens`, asking for at
    /// most `max_tokens`, from a behaviour that streams `chunks` chunks.
    pub fn new(
        api: Api,
        n: u64,
        model: String,
        prompt_tokens: u32,
        chunks: u32,
        max_tokens: Option<u32>,
    ) -> Self {
        let chunks = chunks.max(1);
        let (chunks, finish_reason) = match max_tokens {
            Some(max) if max < chunks => (max.max(1), "length"),
            _ => (chunks, "stop"),
        };
        Completion {
            api,
            n,
            created: unix_now(),
            model,
            chunks,
            finish_reason,
            usage: Usage {
                prompt_tokens,
                completion_tokens: chunks,
                total_tokens: prompt_tokens.saturating_add(chunks),
            },
            quote: None,
        }
    }

    /// This answer saying `text` (a quoted tool result) instead of the canned
    /// words: split at its words into at most as many chunks, then capped by
    /// `max_tokens`.
    pub fn quoting(mut self, text: &str, max_tokens: Option<u32>) -> Self {
        let (pieces, cut) = tools::text_pieces(Some(text), self.chunks, max_tokens);
        let chunks = pieces.len() as u32;
        self.chunks = chunks;
        self.finish_reason = if cut { "length" } else { "stop" };
        self.usage.completion_tokens = chunks;
        self.usage.total_tokens = self.usage.prompt_tokens.saturating_add(chunks);
        self.quote = Some(pieces.into_iter().map(|p| p.into_owned()).collect());
        self
    }

    /// The text of chunk `i`.
    fn piece(&self, i: u32) -> &str {
        match &self.quote {
            Some(pieces) => pieces.get(i as usize).map_or("", String::as_str),
            None => chunk_text(i),
        }
    }

    /// The whole answer text.
    fn text(&self) -> String {
        match &self.quote {
            Some(pieces) => pieces.concat(),
            None => answer_text(self.chunks),
        }
    }

    fn envelope<C>(
        &self,
        object: &'static str,
        choices: C,
        usage: Option<Option<Usage>>,
    ) -> Envelope<'_, C> {
        Envelope {
            id: Id {
                api: self.api,
                n: self.n,
            },
            object,
            created: self.created,
            model: &self.model,
            choices,
            usage,
        }
    }

    /// The non-streamed answer body.
    pub fn body(&self) -> Bytes {
        let text = self.text();
        let usage = Some(Some(self.usage));
        match self.api {
            Api::Chat => json_body(&self.envelope(
                "chat.completion",
                [ChatChoice {
                    index: 0,
                    message: ChatMessageOut {
                        role: "assistant",
                        content: &text,
                    },
                    logprobs: None,
                    finish_reason: self.finish_reason,
                }],
                usage,
            )),
            Api::Completions => json_body(&self.envelope(
                "text_completion",
                [TextChoice {
                    text: &text,
                    index: 0,
                    logprobs: None,
                    finish_reason: Some(self.finish_reason),
                }],
                usage,
            )),
        }
    }

    /// SSE event of content chunk `i` (0-based): the first carries the
    /// assistant role, the last the finish reason; each `"usage": null` when
    /// the usage comes after them (`include_usage`).
    pub fn chunk(&self, i: u32, include_usage: bool) -> Bytes {
        let content = self.piece(i);
        let finish_reason = (i + 1 >= self.chunks).then_some(self.finish_reason);
        let usage = include_usage.then_some(None);
        match self.api {
            Api::Chat => sse_event(&self.envelope(
                "chat.completion.chunk",
                [ChunkChoice {
                    index: 0,
                    delta: Delta {
                        role: (i == 0).then_some("assistant"),
                        content,
                    },
                    logprobs: None,
                    finish_reason,
                }],
                usage,
            )),
            Api::Completions => sse_event(&self.envelope(
                "text_completion",
                [TextChoice {
                    text: content,
                    index: 0,
                    logprobs: None,
                    finish_reason,
                }],
                usage,
            )),
        }
    }

    /// SSE event with no choices and the usage (asked with
    /// `stream_options.include_usage`).
    pub fn usage_chunk(&self) -> Bytes {
        let object = match self.api {
            Api::Chat => "chat.completion.chunk",
            Api::Completions => "text_completion",
        };
        sse_event(&self.envelope(object, [(); 0], Some(Some(self.usage))))
    }
}

/// Why an embedding request is refused.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    /// `encoding_format` other than `float` or `base64`.
    #[error("encoding_format must be \"float\" or \"base64\", got {0:?}")]
    Format(String),
    /// `dimensions` of 0 or above [`MAX_DIMENSIONS`].
    #[error("dimensions must be within 1..={MAX_DIMENSIONS}, got {0}")]
    Dimensions(usize),
}

/// The `POST /v1/embeddings` body: one deterministic unit vector per input item.
pub fn embeddings_body(request: &EmbeddingRequest) -> Result<Bytes, EmbeddingError> {
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(EmbeddingError::Format(other.to_owned())),
    };
    let dimensions = request.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
    if !(1..=MAX_DIMENSIONS).contains(&dimensions) {
        return Err(EmbeddingError::Dimensions(dimensions));
    }

    #[derive(Serialize)]
    #[serde(untagged)]
    enum Vector {
        Floats(Vec<f32>),
        Base64(String),
    }
    #[derive(Serialize)]
    struct Data {
        object: &'static str,
        index: usize,
        embedding: Vector,
    }
    #[derive(Serialize)]
    struct EmbeddingUsage {
        prompt_tokens: u32,
        total_tokens: u32,
    }
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<Data>,
        model: &'a str,
        usage: EmbeddingUsage,
    }

    let data = request
        .input
        .items()
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let vector = embed(item, dimensions);
            let embedding = if base64 {
                Vector::Base64(f32_base64(&vector))
            } else {
                Vector::Floats(vector)
            };
            Data {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let tokens = request.input.tokens();
    Ok(json_body(&List {
        object: "list",
        data,
        model: &request.model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}

/// A unit vector derived from a hash of the item: the same input always
/// embeds the same, different inputs (almost surely) differently.
pub fn embed(item: Item<'_>, dimensions: usize) -> Vec<f32> {
    let mut state = match item {
        Item::Text(text) => fnv1a(text.bytes()),
        Item::Tokens(tokens) => fnv1a(tokens.iter().flat_map(|t| t.to_le_bytes())),
    };
    let mut vector: Vec<f32> = (0..dimensions)
        .map(|_| {
            let bits = splitmix64(&mut state) >> 40; // 24 random bits
            (bits as f32 / (1u64 << 23) as f32) - 1.0 // in [-1, 1)
        })
        .collect();
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    } else if let Some(first) = vector.first_mut() {
        *first = 1.0;
    }
    vector
}

/// The `encoding_format: "base64"` form: the little-endian f32 array, base64.
pub fn f32_base64(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::{Value, json};

    fn parse_event(event: &[u8]) -> Value {
        let text = std::str::from_utf8(event).unwrap();
        let payload = text
            .strip_prefix("data: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .unwrap();
        assert!(!payload.contains('\n'), "one line per event: {text:?}");
        serde_json::from_str(payload).unwrap()
    }

    fn chat(json: Value) -> ChatRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn prompt_tokens_count_characters_over_four() {
        let one = chat(json!({"model": "m", "messages": [{"role": "user", "content": "abcde"}]}));
        assert_eq!(one.prompt_tokens(), 2);
        let parts = chat(json!({"model": "m", "messages": [
            {"role": "system", "content": "abcd"},
            {"role": "user", "content": [{"type": "text", "text": "éé"}, {"type": "image_url", "image_url": {"url": "x"}}]},
        ]}));
        assert_eq!(parts.prompt_tokens(), 2); // 6 characters
        let empty = chat(json!({"model": "m", "messages": []}));
        assert_eq!(empty.prompt_tokens(), 1);
    }

    #[test]
    fn inputs_count_tokens() {
        let input: Input = serde_json::from_value(json!(["abcd", "abcdefgh"])).unwrap();
        assert_eq!(input.tokens(), 3);
        let input: Input = serde_json::from_value(json!([1, 2, 3])).unwrap();
        assert_eq!(input.tokens(), 3);
        let input: Input = serde_json::from_value(json!([[1, 2], [3]])).unwrap();
        assert_eq!(input.items().len(), 2);
        assert_eq!(input.tokens(), 3);
    }

    #[test]
    fn sse_events_are_framed_one_per_event() {
        let event = sse_event(&json!({"a": "line\nbreak"}));
        assert!(event.starts_with(b"data: {"));
        assert!(event.ends_with(b"}\n\n"));
        assert_eq!(parse_event(&event)["a"], "line\nbreak");
    }

    #[test]
    fn chat_stream_chunks_carry_role_first_and_finish_last() {
        let completion = Completion::new(Api::Chat, 7, "m".into(), 3, 3, None);
        let first = parse_event(&completion.chunk(0, false));
        assert_eq!(first["id"], "chatcmpl-mock-7");
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(first["choices"][0]["finish_reason"], Value::Null);
        let last = parse_event(&completion.chunk(2, false));
        assert!(last["choices"][0]["delta"].get("role").is_none());
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        let usage = parse_event(&completion.usage_chunk());
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 6);
    }

    #[test]
    fn plain_answers_join_the_chunks() {
        let chat = Completion::new(Api::Chat, 1, "m".into(), 5, 3, None);
        let body: Value = serde_json::from_slice(&chat.body()).unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["content"], answer_text(3));
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
        );

        let text = Completion::new(Api::Completions, 2, "m".into(), 1, 8, Some(2));
        let body: Value = serde_json::from_slice(&text.body()).unwrap();
        assert_eq!(body["id"], "cmpl-mock-2");
        assert_eq!(body["object"], "text_completion");
        assert_eq!(body["choices"][0]["text"], "Hello from");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(body["usage"]["completion_tokens"], 2);
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embed(Item::Text("hello"), 16);
        assert_eq!(a, embed(Item::Text("hello"), 16));
        assert_ne!(a, embed(Item::Text("hellp"), 16));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let encoded = f32_base64(&[1.0, -0.5]);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(bytes, [0, 0, 128, 63, 0, 0, 0, 191]);
    }

    #[test]
    fn embeddings_body_honours_format_and_dimensions() {
        let request: EmbeddingRequest = serde_json::from_value(json!({
            "model": "e", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 4
        }))
        .unwrap();
        let body: Value = serde_json::from_slice(&embeddings_body(&request).unwrap()).unwrap();
        assert_eq!(body["data"][1]["index"], 1);
        let encoded = body["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(bytes.len(), 16);
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 2, "total_tokens": 2})
        );

        let request: EmbeddingRequest =
            serde_json::from_value(json!({"model": "e", "input": "a"})).unwrap();
        let body: Value = serde_json::from_slice(&embeddings_body(&request).unwrap()).unwrap();
        assert_eq!(
            body["data"][0]["embedding"].as_array().unwrap().len(),
            DEFAULT_DIMENSIONS
        );

        let bad: EmbeddingRequest =
            serde_json::from_value(json!({"model": "e", "input": "a", "encoding_format": "hex"}))
                .unwrap();
        assert!(embeddings_body(&bad).is_err());
    }

    #[test]
    fn error_and_model_bodies_have_openai_shape() {
        let body: Value =
            serde_json::from_slice(&error_body("no", "invalid_request_error", Some("x"))).unwrap();
        assert_eq!(
            body,
            json!({"error": {"message": "no", "type": "invalid_request_error", "param": null, "code": "x"}})
        );
        let body: Value = serde_json::from_slice(&models_body(&["a".into()])).unwrap();
        assert_eq!(
            body,
            json!({"object": "list", "data": [{"id": "a", "object": "model", "created": 0, "owned_by": "meridian-mock"}]})
        );
    }
}
