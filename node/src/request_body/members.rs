//! Finding a few top-level members of a JSON object, with their byte spans,
//! without building a tree: the same borrowed-raw-value technique as
//! [`request_body`](crate::request_body), for any member names. A response
//! object can be large (its whole output and, with `include`, its input);
//! rewriting an id in it is then one copy with the id's span replaced.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// One occurrence of a wanted member: which name (its index in the list
/// asked for), its value as written, and where that value sits.
#[derive(Debug)]
pub(crate) struct Member<'a> {
    /// Index into the names passed to [`find`].
    pub name: usize,
    /// The value, as written in the document.
    pub raw: &'a RawValue,
    /// Byte range of the value in the document.
    pub span: Range<usize>,
}

/// Every top-level member of the JSON object `doc` whose name is one of
/// `names`, in document order (a name written twice is found twice, so the
/// caller decides what a duplicate means). `None` when `doc` is not a JSON
/// object. An escaped name (`"i\u0064"`) is decoded before it is compared,
/// as every JSON parser downstream will read it.
pub(crate) fn find<'a>(doc: &'a [u8], names: &[&str]) -> Option<Vec<Member<'a>>> {
    let mut de = serde_json::Deserializer::from_slice(doc);
    let found = de.deserialize_map(ObjectVisitor { names }).ok()?;
    de.end().ok()?;
    Some(
        found
            .into_iter()
            .map(|(name, raw)| {
                let start = span_start(doc, raw.get().as_bytes());
                Member {
                    name,
                    raw,
                    span: start..start + raw.get().len(),
                }
            })
            .collect(),
    )
}

/// Where `inner`, a sub-slice of `outer`, begins. serde_json hands back raw
/// values that borrow from the input, so this is an address difference.
fn span_start(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

/// `doc` with each span replaced by its bytes, in one copy. The spans must
/// not overlap; they may come in any order.
pub(crate) fn splice_all(doc: &[u8], mut edits: Vec<(Range<usize>, Bytes)>) -> Bytes {
    edits.sort_by_key(|(span, _)| span.start);
    let grown: usize = edits.iter().map(|(_, bytes)| bytes.len()).sum();
    let mut out = BytesMut::with_capacity(doc.len() + grown);
    let mut at = 0;
    for (span, bytes) in edits {
        if span.start < at || span.end > doc.len() {
            continue;
        }
        out.put_slice(&doc[at..span.start]);
        out.put_slice(&bytes);
        at = span.end;
    }
    out.put_slice(&doc[at..]);
    out.freeze()
}

/// Accepts only a JSON object, keeping the wanted members and skipping the
/// rest unparsed.
struct ObjectVisitor<'n> {
    names: &'n [&'n str],
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = Vec<(usize, &'de RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Vec::new();
        while let Some(name) = map.next_key_seed(NameSeed { names: self.names })? {
            match name {
                Some(i) => found.push((i, map.next_value::<&RawValue>()?)),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// A member name, matched against the wanted ones without allocating.
struct NameSeed<'n> {
    names: &'n [&'n str],
}

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl Visitor<'_> for NameSeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.names.iter().position(|wanted| *wanted == name))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn finds_members_and_their_spans() {
        let doc = br#"{ "id" : "a", "x": {"id":"inner"}, "i\u0064":"b", "n":1 }"#;
        let found = find(doc, &["id", "n"]).unwrap();
        let seen: Vec<(usize, &[u8])> = found
            .iter()
            .map(|m| (m.name, &doc[m.span.clone()]))
            .collect();
        assert_eq!(
            seen,
            vec![(0, &br#""a""#[..]), (0, &br#""b""#[..]), (1, &b"1"[..])]
        );
    }

    #[test]
    fn only_an_object_is_searched() {
        for doc in [&b"[1]"[..], b"\"id\"", b"{", b"{} x", b"", b"null"] {
            assert!(find(doc, &["id"]).is_none(), "{doc:?}");
        }
        assert!(find(b" {} ", &["id"]).unwrap().is_empty());
    }

    #[test]
    fn splices_in_any_order() {
        let doc = b"0123456789";
        let out = splice_all(
            doc,
            vec![
                (7..8, Bytes::from_static(b"seven")),
                (1..3, Bytes::from_static(b"x")),
            ],
        );
        assert_eq!(&out[..], b"0x3456seven89");
        assert_eq!(&splice_all(doc, Vec::new())[..], doc);
    }
}
