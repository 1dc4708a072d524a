//! Reading and rewriting a client's JSON body without re-serialising it.
//!
//! The proxy needs three things from a body: the `model` (to route), `stream`
//! (to relay chunk by chunk) and where the model string sits, so it can put
//! the provider's model name there. Parsing into borrowed raw values validates
//! the whole document once and gives the byte span of `model`; the rewrite is
//! then a single copy with that span replaced, whatever the body's size.

use std::borrow::Cow;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ProxyError;

/// What the router needs to know about a request body.
#[derive(Debug, PartialEq)]
pub struct Probe<'a> {
    /// The model the client asked for.
    pub model: Cow<'a, str>,
    /// Whether the client asked for server-sent events.
    pub stream: bool,
    /// Byte range of the `model` value (quotes included) in the body.
    pub model_span: Range<usize>,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
}

/// Validates a body as a JSON object and finds its `model` and `stream`.
pub fn probe(body: &[u8]) -> Result<Probe<'_>, ProxyError> {
    // serde_json skips the strings of fields it ignores without checking
    // their UTF-8: check the whole body, so that what is forwarded is JSON.
    std::str::from_utf8(body).map_err(|e| ProxyError::BadRequest {
        message: format!(
            "The request body is not valid JSON: invalid UTF-8 at byte {}",
            e.valid_up_to()
        ),
        param: None,
    })?;
    let fields: Fields<'_> = serde_json::from_slice(body).map_err(|e| {
        let message = if e.is_data() && e.to_string().starts_with("invalid type") {
            format!("The request body must be a JSON object: {e}")
        } else if e.is_data() {
            format!("Invalid request body: {e}")
        } else {
            format!("The request body is not valid JSON: {e}")
        };
        let param = e.is_data().then_some("stream").filter(|_| {
            let text = e.to_string();
            text.contains("bool") || text.contains("stream")
        });
        ProxyError::BadRequest { message, param }
    })?;
    let raw = fields.model.ok_or_else(|| ProxyError::BadRequest {
        message: "you must provide a model parameter".into(),
        param: Some("model"),
    })?;
    let model: Cow<'_, str> =
        serde_json::from_str(raw.get()).map_err(|_| ProxyError::BadRequest {
            message: "`model` must be a string".into(),
            param: Some("model"),
        })?;
    if model.is_empty() {
        return Err(ProxyError::BadRequest {
            message: "`model` must not be empty".into(),
            param: Some("model"),
        });
    }
    let start = span_start(body, raw.get().as_bytes());
    Ok(Probe {
        model,
        stream: fields.stream.unwrap_or(false),
        model_span: start..start + raw.get().len(),
    })
}

/// Where `inner`, a sub-slice of `outer`, begins. serde_json hands back raw
/// values that borrow from the input, so this is an address difference.
fn span_start(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

/// The body with the bytes at `span` replaced by `replacement`, which must be
/// a complete JSON value (for a model name, a quoted JSON string).
pub fn splice(body: &[u8], span: Range<usize>, replacement: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() - span.len() + replacement.len());
    out.put_slice(&body[..span.start]);
    out.put_slice(replacement);
    out.put_slice(&body[span.end..]);
    out.freeze()
}

/// A model name as a JSON string, prepared once per target and spliced in per request.
pub fn json_string(value: &str) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn bad(body: &str) -> (String, Option<&'static str>) {
        match probe(body.as_bytes()) {
            Err(ProxyError::BadRequest { message, param }) => (message, param),
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn finds_model_and_stream() {
        let body = br#"{"messages":[{"role":"user","content":"hi"}],"model":"fast","stream":true}"#;
        let p = probe(body).unwrap();
        assert_eq!(p.model, "fast");
        assert!(p.stream);
        assert_eq!(&body[p.model_span.clone()], br#""fast""#);
    }

    #[test]
    fn rewrite_replaces_only_the_model() {
        let body = br#"{ "model" : "fast", "messages": [{"role":"user","content":"model fast"}] }"#;
        let p = probe(body).unwrap();
        let out = splice(body, p.model_span, &json_string("deepseek-chat"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "deepseek-chat");
        assert_eq!(v["messages"][0]["content"], "model fast");
    }

    #[test]
    fn escaped_model_names_are_decoded() {
        let body = br#"{"model":"a\"b\u0041"}"#;
        let p = probe(body).unwrap();
        assert_eq!(p.model, "a\"bA");
        assert!(!p.stream);
    }

    #[test]
    fn provider_names_with_quotes_stay_valid_json() {
        let body = br#"{"model":"x"}"#;
        let p = probe(body).unwrap();
        let out = splice(body, p.model_span, &json_string("we\"ird"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "we\"ird");
    }

    #[test]
    fn malformed_bodies_are_refused_with_reasons() {
        assert!(bad("{not json").0.contains("not valid JSON"));
        assert!(bad("[1,2]").0.contains("JSON object"));
        assert_eq!(bad(r#"{"messages":[]}"#).1, Some("model"));
        assert_eq!(bad(r#"{"model":42}"#).1, Some("model"));
        assert_eq!(bad(r#"{"model":""}"#).1, Some("model"));
        assert_eq!(bad(r#"{"model":"x","stream":"yes"}"#).1, Some("stream"));
        assert!(
            bad(r#"{"model":"x"} trailing"#)
                .0
                .contains("not valid JSON")
        );
        assert!(bad("").0.contains("not valid JSON"));
    }

    #[test]
    fn duplicate_model_is_refused() {
        assert!(bad(r#"{"model":"a","model":"b"}"#).0.contains("duplicate"));
    }
}
