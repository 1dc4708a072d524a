//! Tool use as the fake model plays it, for both wire formats: when a request
//! declares tools and the user just spoke, the model calls one; when the last
//! message is a tool's result, the model quotes it back, so a round-trip test
//! can see the result reached the model. Pure logic: no sockets, no clocks.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::openai::chunk_text;

/// What the fake model answers a request with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Turn {
    /// The canned words.
    Text,
    /// A call of the named tool with these JSON arguments.
    Call {
        /// The tool's name.
        name: String,
        /// The arguments, a JSON object as text.
        arguments: String,
    },
    /// Text quoting a tool's result (`The tool said: ...`).
    Quote(String),
}

/// A tool's parameters: a JSON schema, of which only `required` and each
/// required property's `type` matter.
#[derive(Debug, Default, Deserialize)]
pub struct Schema {
    /// Property names the arguments must hold.
    #[serde(default)]
    pub required: Vec<String>,
    /// Property schemas by name.
    #[serde(default)]
    pub properties: Map<String, Value>,
}

/// One declared tool, borrowed from either wire format.
#[derive(Clone, Copy, Debug)]
pub struct Tool<'a> {
    /// The tool's name.
    pub name: &'a str,
    /// Its parameters, if declared.
    pub schema: Option<&'a Schema>,
}

/// What the request's `tool_choice` allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice<'a> {
    /// The model may call a tool (`auto`, `any`, `required`, or absent).
    Auto,
    /// The model must not call one.
    None,
    /// The model must call this one.
    Named(&'a str),
}

/// The conversation's last message, as far as tool use cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Last {
    /// The user's own words.
    UserText,
    /// A tool's result, its text content.
    ToolResult(String),
    /// Anything else (an assistant turn, nothing at all).
    Other,
}

/// Why a request's tool use is refused; the message goes back to the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ToolError {
    /// `tool_choice` names a tool `tools` does not declare.
    #[error("tool_choice names the tool {0:?}, which tools does not declare")]
    UnknownTool(String),
}

/// Decides the turn: quote a tool result, call a tool, or say the canned words.
pub fn decide(tools: &[Tool<'_>], choice: Choice<'_>, last: Last) -> Result<Turn, ToolError> {
    if let Last::ToolResult(result) = last {
        return Ok(Turn::Quote(format!("The tool said: {result}")));
    }
    if last != Last::UserText || tools.is_empty() {
        return Ok(Turn::Text);
    }
    let tool = match (choice, tools.first()) {
        (Choice::None, _) | (Choice::Auto, None) => return Ok(Turn::Text),
        (Choice::Auto, Some(first)) => *first,
        (Choice::Named(name), _) => *tools
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| ToolError::UnknownTool(name.to_owned()))?,
    };
    Ok(Turn::Call {
        name: tool.name.to_owned(),
        arguments: arguments(tool.schema),
    })
}

/// Arguments holding each required property, set to a placeholder of its type.
pub fn arguments(schema: Option<&Schema>) -> String {
    let mut args = Map::new();
    for name in schema.map_or(&[][..], |s| &s.required) {
        let property = schema.and_then(|s| s.properties.get(name));
        args.insert(name.clone(), placeholder(property));
    }
    Value::Object(args).to_string()
}

/// `"mock"`, `1`, `true`, `[]` or `{}` by the property's `type` (the first
/// non-null one of a list); a string when it declares none.
fn placeholder(property: Option<&Value>) -> Value {
    let kind = match property.and_then(|p| p.get("type")) {
        Some(Value::String(kind)) => kind.as_str(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("string"),
        _ => "string",
    };
    match kind {
        "integer" | "number" => Value::from(1),
        "boolean" => Value::Bool(true),
        "array" => Value::Array(Vec::new()),
        "object" => Value::Object(Map::new()),
        _ => Value::from("mock"),
    }
}

/// Splits `text` into `parts` pieces of about equal length (at least two when
/// it has two characters), so a streamed call arrives in fragments.
pub fn fragments(text: &str, parts: u32) -> Vec<&str> {
    let chars = text.chars().count();
    let parts = (parts.max(2) as usize).min(chars.max(1));
    let mut pieces = Vec::with_capacity(parts);
    let mut rest = text;
    for i in 0..parts {
        let take = (chars * (i + 1) / parts) - (chars * i / parts);
        let at = rest
            .char_indices()
            .nth(take)
            .map_or(rest.len(), |(at, _)| at);
        let (piece, tail) = rest.split_at(at);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// The pieces a text answer streams, one per chunk, and whether `max_tokens`
/// cut it short: the canned words (`chunks` of them), or a quote split at
/// its words (the remainder in the last of at most `chunks`).
pub fn text_pieces(
    quote: Option<&str>,
    chunks: u32,
    max_tokens: Option<u32>,
) -> (Vec<Cow<'_, str>>, bool) {
    let chunks = chunks.max(1);
    let mut pieces: Vec<Cow<'_, str>> = match quote {
        None => (0..chunks).map(|i| Cow::Borrowed(chunk_text(i))).collect(),
        Some(text) => {
            let mut words: Vec<Cow<'_, str>> =
                text.split_inclusive(' ').map(Cow::Borrowed).collect();
            if words.len() > chunks as usize {
                let tail: String = words.drain(chunks as usize - 1..).collect();
                words.push(Cow::Owned(tail));
            }
            words
        }
    };
    if pieces.is_empty() {
        pieces.push(Cow::Borrowed(""));
    }
    match max_tokens {
        Some(max) if (max.max(1) as usize) < pieces.len() => {
            pieces.truncate(max.max(1) as usize);
            (pieces, true)
        }
        _ => (pieces, false),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    fn schema(json: Value) -> Schema {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_user_turn_calls_the_first_or_the_named_tool() {
        let weather = schema(json!({
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                           "metric": {"type": ["boolean", "null"]}, "tags": {"type": "array"},
                           "extra": {"type": "object"}, "note": {}},
            "required": ["city", "days", "metric", "tags", "extra", "note"]
        }));
        let tools = [
            Tool {
                name: "weather",
                schema: Some(&weather),
            },
            Tool {
                name: "time",
                schema: None,
            },
        ];
        let Turn::Call { name, arguments } = decide(&tools, Choice::Auto, Last::UserText).unwrap()
        else {
            panic!("no call");
        };
        assert_eq!(name, "weather");
        let args: Value = serde_json::from_str(&arguments).unwrap();
        assert_eq!(
            args,
            json!({"city": "mock", "days": 1, "metric": true, "tags": [], "extra": {}, "note": "mock"})
        );
        let named = decide(&tools, Choice::Named("time"), Last::UserText).unwrap();
        assert_eq!(
            named,
            Turn::Call {
                name: "time".into(),
                arguments: "{}".into()
            }
        );
        assert_eq!(
            decide(&tools, Choice::None, Last::UserText).unwrap(),
            Turn::Text
        );
        assert_eq!(
            decide(&tools, Choice::Auto, Last::Other).unwrap(),
            Turn::Text
        );
        assert_eq!(
            decide(&[], Choice::Auto, Last::UserText).unwrap(),
            Turn::Text
        );
        assert_eq!(
            decide(&tools, Choice::Named("nope"), Last::UserText),
            Err(ToolError::UnknownTool("nope".into()))
        );
    }

    #[test]
    fn a_tool_result_is_quoted() {
        let turn = decide(&[], Choice::Auto, Last::ToolResult("22 C".into())).unwrap();
        assert_eq!(turn, Turn::Quote("The tool said: 22 C".into()));
    }

    #[test]
    fn fragments_cover_the_text_in_at_least_two_pieces() {
        assert_eq!(fragments("{}", 8), ["{", "}"]);
        assert_eq!(fragments("{\"a\":\"é\"}", 3).concat(), "{\"a\":\"é\"}");
        assert_eq!(fragments("{\"a\":\"é\"}", 3).len(), 3);
        assert_eq!(fragments("abcdef", 1), ["abc", "def"]);
        assert_eq!(fragments("", 4), [""]);
    }

    #[test]
    fn text_pieces_are_canned_words_or_the_quote() {
        let (pieces, cut) = text_pieces(None, 3, None);
        assert_eq!(pieces.concat(), "Hello from the");
        assert!(!cut);
        let (pieces, cut) = text_pieces(None, 8, Some(2));
        assert_eq!(pieces.len(), 2);
        assert!(cut);
        let (pieces, _) = text_pieces(Some("The tool said: it is 22 C"), 3, None);
        assert_eq!(pieces, ["The ", "tool ", "said: it is 22 C"]);
        let (pieces, _) = text_pieces(Some(""), 3, None);
        assert_eq!(pieces, [""]);
    }
}
