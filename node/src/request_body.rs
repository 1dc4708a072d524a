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
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::ProxyError;

pub(crate) mod members;

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

/// The body's `model` and `stream` members, as written, and the first of
/// them that appeared twice (to be refused by name).
#[derive(Default)]
struct Fields<'a> {
    model: Option<&'a RawValue>,
    stream: Option<&'a RawValue>,
    duplicate: Option<&'static str>,
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// Accepts only a JSON object (a derived struct would take an array as a
/// tuple of its fields), skipping every member but `model` and `stream`.
struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        while let Some(name) = map.next_key::<Member>()? {
            let (slot, field) = match name {
                Member::Model => (&mut fields.model, "model"),
                Member::Stream => (&mut fields.stream, "stream"),
                Member::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.replace(map.next_value()?).is_some() {
                fields.duplicate.get_or_insert(field);
            }
        }
        Ok(fields)
    }
}

/// A member name, matched without allocating (an escaped name such as
/// `"mod\u0065l"` arrives decoded, and is `model`).
enum Member {
    Model,
    Stream,
    Other,
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(MemberVisitor)
    }
}

struct MemberVisitor;

impl Visitor<'_> for MemberVisitor {
    type Value = Member;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Member, E> {
        Ok(match name {
            "model" => Member::Model,
            "stream" => Member::Stream,
            _ => Member::Other,
        })
    }
}

fn bad(message: impl Into<String>, param: Option<&'static str>) -> ProxyError {
    ProxyError::BadRequest {
        message: message.into(),
        param,
    }
}

/// Validates a body as a JSON object and finds its `model` and `stream`.
/// Every refusal names the member at fault in `param` (none when the body
/// as a whole is wrong).
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
        // With the visitor above, the only data error is the top-level
        // type; everything else is syntax.
        if e.is_data() {
            bad(format!("The request body must be a JSON object: {e}"), None)
        } else {
            bad(format!("The request body is not valid JSON: {e}"), None)
        }
    })?;
    if let Some(field) = fields.duplicate {
        return Err(bad(format!("duplicate field `{field}`"), Some(field)));
    }
    let raw = fields
        .model
        .ok_or_else(|| bad("you must provide a model parameter", Some("model")))?;
    // Borrowed from the body unless it has escapes to decode (serde reads a
    // `Cow` into an owned `String` whatever it holds).
    let model: Cow<'_, str> = match serde_json::from_str::<&str>(raw.get()) {
        Ok(plain) => Cow::Borrowed(plain),
        Err(_) => Cow::Owned(
            serde_json::from_str::<String>(raw.get())
                .map_err(|_| bad("`model` must be a string", Some("model")))?,
        ),
    };
    if model.is_empty() {
        return Err(bad("`model` must not be empty", Some("model")));
    }
    let stream = match fields.stream {
        None => false,
        Some(raw) => serde_json::from_str::<Option<bool>>(raw.get())
            .map_err(|_| bad("`stream` must be a boolean", Some("stream")))?
            .unwrap_or(false),
    };
    let start = span_start(body, raw.get().as_bytes());
    Ok(Probe {
        model,
        stream,
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
        assert!(matches!(p.model, Cow::Borrowed(_)), "read in place");
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
        for (body, model) in [
            (r#"{"model":"\u00e9t\u00e9"}"#, "été"),
            (r#"{"model":"\\"}"#, "\\"),
            (r#"{"model":"\ud83d\ude00"}"#, "😀"),
        ] {
            assert_eq!(probe(body.as_bytes()).unwrap().model, model, "{body}");
        }
        // Not a string, escaped or not: refused as before.
        for body in [
            r#"{"model":1}"#,
            r#"{"model":null}"#,
            r#"{"model":"\ud800"}"#,
        ] {
            assert_eq!(
                bad(body),
                ("`model` must be a string".into(), Some("model")),
                "{body}"
            );
        }
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

    #[test]
    fn only_an_object_is_a_body() {
        for body in [
            r#"["m", true]"#,
            r#"["m"]"#,
            r#"[{"model":"m"}]"#,
            r#""m""#,
            "1",
            "null",
            "true",
            "[]",
        ] {
            let (message, param) = bad(body);
            assert!(message.contains("JSON object"), "{body}: {message}");
            assert_eq!(param, None, "{body}");
        }
    }

    #[test]
    fn every_refusal_names_its_member() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"model":"a","model":"b"}"#, Some("model")),
            (r#"{"model":"a","mod\u0065l":"b"}"#, Some("model")),
            (r#"{"model":["m"]}"#, Some("model")),
            (r#"{"model":null}"#, Some("model")),
            (r#"{"model":{"stream":true}}"#, Some("model")),
            (r#"{"stream":true}"#, Some("model")),
            (r#"{"model":"m","stream":"yes"}"#, Some("stream")),
            (r#"{"model":"m","stream":1}"#, Some("stream")),
            (r#"{"model":"m","stream":{"model":"x"}}"#, Some("stream")),
            (
                r#"{"model":"m","stream":true,"stream":false}"#,
                Some("stream"),
            ),
            (r#"{"model":"bool","messages":"stream"}"#, None),
        ];
        for (body, param) in cases {
            match probe(body.as_bytes()) {
                Err(ProxyError::BadRequest {
                    param: got,
                    message,
                }) => {
                    assert_eq!(got, *param, "{body}: {message}")
                }
                Ok(p) => assert!(param.is_none(), "{body} passed: {p:?}"),
                Err(e) => panic!("{body}: {e}"),
            }
        }
        // `null` is no stream, as OpenAI reads it.
        assert!(!probe(br#"{"model":"m","stream":null}"#).unwrap().stream);
    }
}
