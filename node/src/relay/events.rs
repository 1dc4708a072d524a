//! Where one SSE event ends, so the relay forwards whole events only.
//!
//! Frames are forwarded as soon as they hold whole SSE events, so a client
//! never receives half an event; the rare frame that ends mid-event is held
//! until the rest arrives. These two functions find the cut: a fast check
//! that a frame already ends on an event boundary (forwarded without
//! copying) and the end of the last complete event in what is held; and
//! [`whole_events`], which holds back what follows the last one.

use bytes::BytesMut;

/// The longest SSE event boundary (`\r\n\r\n`).
pub(super) const BOUNDARY_MAX: usize = 4;

/// Appends `data` to what is `held` and takes out the whole events now
/// there, leaving the start of the next one held; `None` when no event has
/// ended yet. What was held has no boundary (it is what followed the last
/// one), so only the new bytes, with the three before them that could start
/// one, are searched: an event that never ends costs linear time.
pub(super) fn whole_events(held: &mut BytesMut, data: &[u8]) -> Option<BytesMut> {
    let from = held.len().saturating_sub(BOUNDARY_MAX - 1);
    held.extend_from_slice(data);
    let cut = from + last_boundary(&held[from..])?;
    Some(held.split_to(cut))
}

/// Whether `data` ends where an SSE event ends (the fast path that forwards
/// a frame without copying). Public for the property tests in
/// `node/tests/fuzz.rs`, not for use elsewhere.
#[doc(hidden)]
pub fn ends_with_boundary(data: &[u8]) -> bool {
    data.ends_with(b"\n\n") || data.ends_with(b"\r\n\r\n") || data.ends_with(b"\r\r")
}

/// The end of the last complete event in `data`. Public for the property
/// tests in `node/tests/fuzz.rs`, not for use elsewhere.
#[doc(hidden)]
pub fn last_boundary(data: &[u8]) -> Option<usize> {
    let lf = memchr::memmem::rfind(data, b"\n\n").map(|i| i + 2);
    let crlf = memchr::memmem::rfind(data, b"\r\n\r\n").map(|i| i + 4);
    // CR line endings, as `ends_with_boundary` accepts them; a CR CR LF is
    // a CR line end and a CRLF empty line.
    let cr = memchr::memmem::rfind(data, b"\r\r").map(|i| match data.get(i + 2) {
        Some(b'\n') => i + 3,
        _ => i + 2,
    });
    lf.max(crlf).max(cr)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn boundaries() {
        assert!(ends_with_boundary(b"data: x\n\n"));
        assert!(ends_with_boundary(b"data: x\r\n\r\n"));
        assert!(!ends_with_boundary(b"data: x\n"));
        assert_eq!(last_boundary(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(last_boundary(b"data: a\r\n\r\ndata: b\r\n\r\n"), Some(22));
        assert_eq!(last_boundary(b"data: a"), None);
    }

    #[test]
    fn whole_events_hold_back_the_rest() {
        let mut held = BytesMut::new();
        assert_eq!(whole_events(&mut held, b"data: a\r"), None);
        // The boundary straddles the two pieces.
        let out = whole_events(&mut held, b"\n\r\ndata: b").unwrap();
        assert_eq!(&out[..], b"data: a\r\n\r\n");
        assert_eq!(&held[..], b"data: b");
        assert_eq!(whole_events(&mut held, b"\n"), None);
        assert_eq!(&whole_events(&mut held, b"\n").unwrap()[..], b"data: b\n\n");
        assert!(held.is_empty());
    }
}
