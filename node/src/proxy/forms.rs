//! The request as each kind of target in its route is sent it: the
//! client's body for targets that speak the client's API, a translation
//! for those that speak the other one. Each form is made once per request,
//! before any attempt, so a request that cannot be translated is refused
//! (400 naming the field) before anything reaches an upstream, and a
//! failover across kinds costs no second translation. An OpenAI stream
//! always asks for its usage ([`crate::usage::unasked`]), so that what it
//! used is charged whether or not the client asked to see it.

use std::ops::Range;

use bytes::Bytes;
use proto::config::{UpstreamConfig, UpstreamKind};

use crate::error::ProxyError;
use crate::request_body::probe;
use crate::routing::{Endpoint, Route, Translation};
use crate::translate::{TranslateError, chat_to_messages, messages_to_chat};
use crate::usage::unasked;

/// `max_tokens` sent to a native Anthropic target when an OpenAI client
/// set none (Anthropic requires it): every Claude model can produce this
/// many, so it never turns a valid request into a refusal.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// One form of the request.
pub(super) struct Form {
    /// The endpoint on the upstream.
    pub endpoint: Endpoint,
    /// How the upstream's answer comes back to the client's API.
    pub translation: Translation,
    /// The body, with a model name to be replaced by each target's.
    pub body: Bytes,
    /// Where that model name is in `body`.
    pub model_span: Range<usize>,
    /// The client asked for the final usage chunk of a stream (read when
    /// an OpenAI stream is made from an Anthropic one).
    pub include_usage: bool,
    /// The node asked an OpenAI stream for the usage the client did not:
    /// the usage chunk is read, then taken out of the client's stream.
    pub strip_usage: bool,
}

/// The forms a request takes for the kinds of target in its route.
pub(super) struct Forms {
    endpoint: Endpoint,
    openai: Option<Form>,
    anthropic: Option<Form>,
}

impl Forms {
    /// The forms `body` (whose `model` is at `model_span`; a stream when
    /// `stream`) takes for the targets of `route`; an error when no target
    /// can take it.
    pub fn new(
        endpoint: Endpoint,
        body: &Bytes,
        model_span: Range<usize>,
        stream: bool,
        route: &Route,
    ) -> Result<Self, ProxyError> {
        let mut forms = Forms {
            endpoint,
            openai: None,
            anthropic: None,
        };
        let mut refused: Option<TranslateError> = None;
        for target in route.tiers.iter().flatten() {
            let config = &target.upstream.config;
            let slot = match config.kind {
                UpstreamKind::Openai | UpstreamKind::Azure => &mut forms.openai,
                UpstreamKind::Anthropic => &mut forms.anthropic,
            };
            if slot.is_some() {
                continue;
            }
            let Some((on, translation)) = endpoint.on(config) else {
                continue;
            };
            match form(on, translation, body, &model_span, stream) {
                Ok(form) => *slot = Some(form),
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
        }
        let served = route
            .tiers
            .iter()
            .flatten()
            .any(|t| forms.for_upstream(&t.upstream.config).is_some());
        if served {
            return Ok(forms);
        }
        Err(match refused {
            Some(e) => ProxyError::Untranslatable(e),
            None => not_served(endpoint, &route.name),
        })
    }

    /// Checks that `upstream`, which holds the response a follow-up names,
    /// is a target of `route` that can take it: a conversation cannot move
    /// to another upstream, and a route without that one cannot reach it.
    pub fn pin(&self, upstream: &str, route: &Route) -> Result<(), ProxyError> {
        let reachable = route.tiers.iter().flatten().any(|t| {
            &*t.upstream.id == upstream && self.for_upstream(&t.upstream.config).is_some()
        });
        if reachable {
            Ok(())
        } else {
            Err(ProxyError::BadRequest {
                message: format!(
                    "previous_response_id names a response held by upstream `{upstream}`, which \
                     is not a Responses target of the model `{}`; continue it with a model \
                     routed to that upstream.",
                    route.name
                ),
                param: Some("previous_response_id"),
            })
        }
    }

    /// The form for `upstream`, if it can answer this request at all.
    pub fn for_upstream(&self, upstream: &UpstreamConfig) -> Option<&Form> {
        self.endpoint.on(upstream)?;
        match upstream.kind {
            UpstreamKind::Openai | UpstreamKind::Azure => self.openai.as_ref(),
            UpstreamKind::Anthropic => self.anthropic.as_ref(),
        }
    }
}

/// The form for one kind: the body as it is (an OpenAI stream made to ask
/// for its usage), or translated.
fn form(
    endpoint: Endpoint,
    translation: Translation,
    body: &Bytes,
    model_span: &Range<usize>,
    stream: bool,
) -> Result<Form, TranslateError> {
    // Translations are made for a placeholder model, whose place is then
    // found as in the client's body, so each target's name is spliced in.
    const PLACEHOLDER: &str = "m";
    let usage_chunk = matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions);
    let asked = match translation {
        Translation::None if stream && usage_chunk => unasked::ask(body),
        _ => None,
    };
    let (body, include_usage) = match (translation, asked) {
        (Translation::None, Some(asked)) => {
            let model_span = probe(&asked.body)
                .map_err(|e| {
                    TranslateError::new("", format!("the usage request is not valid: {e}"))
                })?
                .model_span;
            return Ok(Form {
                endpoint,
                translation,
                body: asked.body,
                model_span,
                include_usage: asked.client_asked,
                strip_usage: !asked.client_asked,
            });
        }
        (Translation::None | Translation::TagResponses, _) => {
            return Ok(Form {
                endpoint,
                translation,
                body: body.clone(),
                model_span: model_span.clone(),
                include_usage: false,
                strip_usage: false,
            });
        }
        (Translation::MessagesToChat, _) => (messages_to_chat::request(body, PLACEHOLDER)?, false),
        (Translation::ChatToMessages, _) => {
            let translated = chat_to_messages::request(body, PLACEHOLDER, DEFAULT_MAX_TOKENS)?;
            (translated.body, translated.include_usage)
        }
    };
    let model_span = probe(&body)
        .map_err(|e| TranslateError::new("", format!("the translation is not valid: {e}")))?
        .model_span;
    Ok(Form {
        endpoint,
        translation,
        body,
        model_span,
        include_usage,
        strip_usage: false,
    })
}

/// Why a route cannot answer an endpoint, and what would fix it.
fn not_served(endpoint: Endpoint, route: &str) -> ProxyError {
    let (message, not_found) = match endpoint {
        Endpoint::CountTokens => (
            format!(
                "The model `{route}` has no native Anthropic target, so it cannot count tokens: \
                 /v1/messages/count_tokens is served by routes with a kind = \"anthropic\" upstream."
            ),
            true,
        ),
        Endpoint::Responses => (
            format!(
                "The model `{route}` has no target that serves the Responses API: mark an \
                 OpenAI upstream of it with responses = true, or use /v1/chat/completions."
            ),
            false,
        ),
        other => (
            format!(
                "The model `{route}` has no target that serves {}: its upstreams speak another API.",
                other.suffix()
            ),
            false,
        ),
    };
    ProxyError::NotServed { message, not_found }
}
