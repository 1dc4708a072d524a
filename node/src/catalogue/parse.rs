//! Pure: a provider's model list, page by page, into the names a catalogue
//! holds. Both shapes read the same way:
//!
//! - OpenAI (and every compatible server): `{"object": "list", "data":
//!   [{"id": "gpt-4o", …}, …]}`, one page.
//! - Anthropic: `{"data": [{"id": "claude-…", "type": "model", …}, …],
//!   "has_more": true, "last_id": "…"}`; the next page is asked for with
//!   `after_id=<last_id>`.
//!
//! What a hostile or broken provider can send, and what becomes of it:
//! a body that is not JSON, or has no `data` array, refuses the page (and so
//! the whole fetch: nothing is committed, the catalogue stays). An entry
//! that is not an object, has no string `id`, or whose id is not a valid
//! catalogue name (empty, over 256 characters, spaces or control
//! characters, [`check_model_name`]) is skipped and counted. A list longer
//! than [`MAX_CATALOGUE_MODELS`], one that pages without end, or one with no
//! usable model at all is refused whole: a truncated or emptied catalogue
//! would turn good addressed names into 404s.

use std::collections::BTreeSet;

use proto::config::check_model_name;
use proto::state::MAX_CATALOGUE_MODELS;
use serde_json::Value;

/// The most pages one fetch follows: Anthropic pages hold up to 1000, so
/// this reaches [`MAX_CATALOGUE_MODELS`] with room to spare, and a provider
/// that always says `has_more` cannot keep the leader asking.
pub const MAX_PAGES: usize = 100;

/// Why a fetched list is not committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body is not a JSON object.
    #[error("the model list is not JSON: {0}")]
    NotJson(String),
    /// The body has no `data` array.
    #[error("the model list has no `data` array")]
    NoData,
    /// `has_more` is true but no usable `last_id` says where to go on.
    #[error("the model list says has_more but gives no usable last_id")]
    NoCursor,
    /// The list goes on past [`MAX_CATALOGUE_MODELS`].
    #[error("the model list holds more than {MAX_CATALOGUE_MODELS} models")]
    TooMany,
    /// The list pages past [`MAX_PAGES`], or names a page it already gave.
    #[error("the model list pages without end (more than {MAX_PAGES} pages, or a repeated cursor)")]
    Endless,
    /// Not one entry had a usable id.
    #[error("the model list names no usable model ({skipped} entries skipped)")]
    Empty {
        /// Entries skipped.
        skipped: usize,
    },
}

/// One page, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The usable model ids, in the provider's order.
    pub models: Vec<String>,
    /// Entries skipped (not an object, no string id, not a valid name).
    pub skipped: usize,
    /// Where the next page starts (`after_id`), when there is one.
    pub next: Option<String>,
}

/// Reads one page of either shape.
pub fn page(body: &[u8]) -> Result<Page, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        // serde_json's message names a line and column, never the body.
        ParseError::NotJson(e.to_string())
    })?;
    let Some(data) = value.get("data").and_then(Value::as_array) else {
        return Err(ParseError::NoData);
    };
    let mut read = Page::default();
    for entry in data {
        match entry.get("id").and_then(Value::as_str) {
            Some(id) if check_model_name("id", id).is_ok() => read.models.push(id.to_owned()),
            _ => read.skipped += 1,
        }
    }
    if value.get("has_more").and_then(Value::as_bool) == Some(true) {
        let cursor = value
            .get("last_id")
            .and_then(Value::as_str)
            .filter(|id| check_model_name("last_id", id).is_ok())
            .ok_or(ParseError::NoCursor)?;
        read.next = Some(cursor.to_owned());
    }
    Ok(read)
}

/// The pages of one fetch, gathered: feed each page to [`Gather::add`],
/// which says whether to ask for another, then [`Gather::finish`].
#[derive(Debug, Default)]
pub struct Gather {
    models: BTreeSet<String>,
    cursors: BTreeSet<String>,
    pages: usize,
    skipped: usize,
}

impl Gather {
    /// Adds a page; `Ok(Some(cursor))` asks for the page after `cursor`.
    pub fn add(&mut self, page: Page) -> Result<Option<String>, ParseError> {
        self.pages += 1;
        self.skipped += page.skipped;
        self.models.extend(page.models);
        if self.models.len() > MAX_CATALOGUE_MODELS {
            return Err(ParseError::TooMany);
        }
        match page.next {
            None => Ok(None),
            Some(cursor) => {
                if self.pages >= MAX_PAGES || !self.cursors.insert(cursor.clone()) {
                    return Err(ParseError::Endless);
                }
                Ok(Some(cursor))
            }
        }
    }

    /// The whole list, sorted and without repeats (as the state keeps it),
    /// and how many entries were skipped.
    pub fn finish(self) -> Result<(Vec<String>, usize), ParseError> {
        if self.models.is_empty() {
            return Err(ParseError::Empty {
                skipped: self.skipped,
            });
        }
        Ok((self.models.into_iter().collect(), self.skipped))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    fn read(body: Value) -> Result<Page, ParseError> {
        page(body.to_string().as_bytes())
    }

    #[test]
    fn an_openai_list_is_one_page() {
        let p = read(json!({"object": "list", "data": [
            {"id": "gpt-4o", "object": "model", "owned_by": "openai"},
            {"id": "gpt-4o-mini", "object": "model", "owned_by": "openai"},
        ]}))
        .unwrap();
        assert_eq!(p.models, ["gpt-4o", "gpt-4o-mini"]);
        assert_eq!((p.skipped, p.next), (0, None));
    }

    #[test]
    fn an_anthropic_list_pages_on_last_id() {
        let first = read(json!({
            "data": [{"id": "claude-b", "type": "model", "display_name": "B"}],
            "has_more": true, "first_id": "claude-b", "last_id": "claude-b",
        }))
        .unwrap();
        assert_eq!(first.next.as_deref(), Some("claude-b"));
        let last = read(json!({
            "data": [{"id": "claude-a", "type": "model"}],
            "has_more": false, "first_id": "claude-a", "last_id": "claude-a",
        }))
        .unwrap();
        assert_eq!(last.next, None);
        let mut gather = Gather::default();
        assert_eq!(gather.add(first).unwrap().as_deref(), Some("claude-b"));
        assert_eq!(gather.add(last).unwrap(), None);
        assert_eq!(
            gather.finish().unwrap(),
            (vec!["claude-a".into(), "claude-b".into()], 0)
        );
    }

    #[test]
    fn a_body_without_a_data_array_is_refused() {
        assert!(matches!(
            page(b"<html>busy</html>"),
            Err(ParseError::NotJson(_))
        ));
        assert_eq!(read(json!({"models": []})), Err(ParseError::NoData));
        assert_eq!(read(json!({"data": {"id": "x"}})), Err(ParseError::NoData));
        assert_eq!(read(json!(["a"])), Err(ParseError::NoData));
        let no_cursor = json!({"data": [{"id": "a"}], "has_more": true, "last_id": 7});
        assert_eq!(read(no_cursor), Err(ParseError::NoCursor));
    }

    #[test]
    fn unusable_entries_are_skipped_and_counted() {
        let p = read(json!({"data": [
            {"id": "good"},
            {"id": 42},
            {"id": null},
            {"name": "no-id"},
            "a-string",
            7,
            {"id": ""},
            {"id": "with space"},
            {"id": "bell\u{7}"},
            {"id": "new\nline"},
            {"id": "x".repeat(257)},
            {"id": "also-good"},
        ]}))
        .unwrap();
        assert_eq!(p.models, ["good", "also-good"]);
        assert_eq!(p.skipped, 10);
        let mut gather = Gather::default();
        gather
            .add(read(json!({"data": [{"id": 1}, {"id": ""}]})).unwrap())
            .unwrap();
        assert_eq!(gather.finish(), Err(ParseError::Empty { skipped: 2 }));
    }

    #[test]
    fn a_list_past_the_cap_is_refused_whole() {
        let data: Vec<Value> = (0..=MAX_CATALOGUE_MODELS)
            .map(|i| json!({"id": format!("m{i}")}))
            .collect();
        let mut gather = Gather::default();
        let p = read(json!({ "data": data })).unwrap();
        assert_eq!(gather.add(p), Err(ParseError::TooMany));
        // Repeats count once: a provider that lists one model twice is not too long.
        let twice: Vec<Value> = (0..2).map(|_| json!({"id": "same"})).collect();
        let mut gather = Gather::default();
        gather.add(read(json!({ "data": twice })).unwrap()).unwrap();
        assert_eq!(gather.finish().unwrap().0, ["same"]);
    }

    #[test]
    fn paging_without_end_is_refused() {
        let mut gather = Gather::default();
        let page_at = |cursor: &str| Page {
            models: vec![cursor.to_owned()],
            skipped: 0,
            next: Some(cursor.to_owned()),
        };
        assert!(gather.add(page_at("a")).unwrap().is_some());
        assert_eq!(gather.add(page_at("a")), Err(ParseError::Endless));

        let mut gather = Gather::default();
        let outcome =
            (0..MAX_PAGES).try_for_each(|i| gather.add(page_at(&format!("m{i}"))).map(drop));
        assert_eq!(outcome, Err(ParseError::Endless));
    }
}
