//! The identifiers on every answer: the request id (the client's when it
//! is sane, else a fresh one) and the attempt count.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use super::X_REQUEST_ID;

/// The client's `x-request-id` when it is a sane token, else a new one.
pub(super) fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID)
        && (1..=128).contains(&v.len())
        && v.as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    {
        return v.clone();
    }
    // 128 random bits from the thread-local generator (seeded from the OS,
    // reseeded periodically): unique without a syscall per request.
    let id: u128 = rand::random();
    // In a buffer that is shared, not copied, by the clones the upstream
    // request, the answer and the log take of it: one allocation.
    HeaderValue::from_maybe_shared(Bytes::from_owner(hex(id)))
        .unwrap_or(HeaderValue::from_static("unknown"))
}

/// `id` as 32 lowercase hex digits.
fn hex(id: u128) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = DIGITS[((id >> (124 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// A count as a header value, without allocating for the usual few.
pub(super) fn count_header(n: usize) -> HeaderValue {
    const SMALL: [&str; 5] = ["0", "1", "2", "3", "4"];
    match SMALL.get(n) {
        Some(text) => HeaderValue::from_static(text),
        None => HeaderValue::from(n),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn request_ids_are_kept_when_sane() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(
            &X_REQUEST_ID,
            HeaderValue::from_static("bad id with spaces"),
        );
        let fresh = request_id(&h);
        assert_eq!(fresh.len(), 32);
        assert_ne!(fresh, request_id(&HeaderMap::new()));
    }

    #[test]
    fn a_fresh_id_is_its_number_in_hex() {
        for id in [0, 1, 0xabc, u128::MAX, u128::MAX / 3, 1 << 127] {
            assert_eq!(&hex(id)[..], format!("{id:032x}").as_bytes());
        }
    }

    #[test]
    fn counts_read_the_same_either_way() {
        for n in [0, 1, 4, 5, 12] {
            assert_eq!(count_header(n), HeaderValue::from(n));
        }
    }
}
