//! The OpenAI wire shapes Meridian writes itself rather than relays: the
//! error envelope (the data plane's errors, the SSE error event, and every
//! admin API error), the models list, and token usage.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// `{"error": {"message", "type", "param", "code"}}`: how every error is
/// written, so SDKs raise the error classes they already know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope<'a> {
    /// The error.
    pub error: ErrorObject<'a>,
}

/// The inside of an [`ErrorEnvelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject<'a> {
    /// What went wrong, for a person.
    pub message: Cow<'a, str>,
    /// The class SDKs map to an exception: `invalid_request_error`,
    /// `rate_limit_error`, `server_error`, …
    #[serde(rename = "type", default)]
    pub kind: Cow<'a, str>,
    /// The request field at fault, or `null`.
    pub param: Option<Cow<'a, str>>,
    /// A stable code for programs (`model_not_found`, `no_leader`, …), or `null`.
    pub code: Option<Cow<'a, str>>,
}

impl<'a> ErrorEnvelope<'a> {
    /// An envelope borrowing its strings (the server writes one per error).
    pub fn new(
        message: &'a str,
        kind: &'a str,
        param: Option<&'a str>,
        code: Option<&'a str>,
    ) -> Self {
        Self {
            error: ErrorObject {
                message: Cow::Borrowed(message),
                kind: Cow::Borrowed(kind),
                param: param.map(Cow::Borrowed),
                code: code.map(Cow::Borrowed),
            },
        }
    }
}

/// `GET /v1/models`: the routes a client may name, as OpenAI lists models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `"list"`.
    pub object: String,
    /// The models.
    pub data: Vec<Model>,
}

/// One entry of a [`ModelList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// The name a client sends as `model`.
    pub id: String,
    /// Always `"model"`.
    pub object: String,
    /// Creation time in Unix seconds (0: Meridian does not know it).
    pub created: u64,
    /// Who serves it.
    pub owned_by: String,
}

impl Model {
    /// The entry of `id`, served by `owned_by` (Meridian itself for a
    /// route, the upstream's id for a model addressed as `{upstream}/{model}`).
    pub fn new(id: &str, owned_by: &str) -> Self {
        Self {
            id: id.to_owned(),
            object: "model".to_owned(),
            created: 0,
            owned_by: owned_by.to_owned(),
        }
    }
}

impl ModelList {
    /// The list of `ids`, sorted, each owned by `owned_by`.
    pub fn new<'a>(ids: impl IntoIterator<Item = &'a str>, owned_by: &str) -> Self {
        Self::of(ids.into_iter().map(|id| Model::new(id, owned_by)).collect())
    }

    /// The list of `data`, sorted by id, each id once (the first entry of
    /// an id wins: callers put the routes first, which win over addressed
    /// names).
    pub fn of(mut data: Vec<Model>) -> Self {
        data.sort_by(|a, b| a.id.cmp(&b.id));
        data.dedup_by(|later, first| later.id == first.id);
        Self {
            object: "list".to_owned(),
            data,
        }
    }
}

/// The tokens an answer used (`usage` of a completion, or of a stream's
/// last chunk when the client asked `stream_options.include_usage`).
/// Missing counts read as 0 (embeddings have no completion tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Both.
    #[serde(default)]
    pub total_tokens: u64,
}
