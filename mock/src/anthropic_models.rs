//! `GET /v1/models` in Anthropic's shape, for a request that carries an
//! `anthropic-version` header (as a native Anthropic client, or Meridian's
//! catalogue discovery for a `kind = "anthropic"` upstream, sends).

use bytes::Bytes;
use serde::Serialize;

use super::openai::json_body;

/// The body, built once at start: one page holding every model,
/// `has_more: false`.
pub fn models_body(models: &[String]) -> Bytes {
    #[derive(Serialize)]
    struct List<'a> {
        data: Vec<Model<'a>>,
        has_more: bool,
        first_id: Option<&'a str>,
        last_id: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Model<'a> {
        id: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
        display_name: &'a str,
        created_at: &'static str,
    }
    json_body(&List {
        data: models
            .iter()
            .map(|id| Model {
                id,
                kind: "model",
                display_name: id,
                created_at: "2025-01-01T00:00:00Z",
            })
            .collect(),
        has_more: false,
        first_id: models.first().map(String::as_str),
        last_id: models.last().map(String::as_str),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_model_list_has_anthropic_shape() {
        let body: serde_json::Value =
            serde_json::from_slice(&models_body(&["a".into(), "b".into()])).unwrap();
        assert_eq!(body["data"][0]["id"], "a");
        assert_eq!(body["data"][1]["type"], "model");
        assert_eq!(body["has_more"], false);
        assert_eq!(body["last_id"], "b");
    }
}
