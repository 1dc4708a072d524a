//! Where one SSE event ends, so the relay forwards whole events only.
//!
//! Frames are forwarded as soon as they hold whole SSE events, so a client
//! never receives half an event; the rare frame that ends mid-event is held
//! until the rest arrives. These two functions find the cut: a fast check
//! that a frame already ends on an event boundary (forwarded without
//! copying) and the end of the last complete event in what is held.

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
}
