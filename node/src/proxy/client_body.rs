//! The client's request body, read whole before any upstream is chosen,
//! within the node's size limit (`proxy.max_request_bytes`) and body
//! timeout: a client that sends slowly, or too much, holds its own
//! connection and nothing else. A body sent in many small pieces (chunks
//! of one byte, h2 frames of one byte) is copied together as it arrives:
//! kept as a list of pieces, each holding the read buffer it was cut
//! from, 32 MiB of one-byte chunks held over a gigabyte.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Request;
use http::header::CONTENT_LENGTH;
use http_body_util::BodyExt;

use crate::error::ProxyError;
use crate::server::RequestBody;

/// The request's body, at most `max` bytes, read within `timeout`. A body
/// that came whole with its head (nearly every request) is taken as it
/// is: no timer, no clock reading, no list to collect it in.
pub(super) async fn read(
    req: Request<RequestBody>,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, ProxyError> {
    let (parts, body) = req.into_parts();
    if let RequestBody::Whole(bytes) = body {
        let bytes = bytes.unwrap_or_default();
        if bytes.len() > max {
            return Err(ProxyError::TooLarge { limit: max });
        }
        return Ok(bytes);
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ProxyError::TooLarge { limit: max });
    }
    match tokio::time::timeout(timeout, joined(body, max)).await {
        Err(_) => Err(ProxyError::BodyTimeout {
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }),
        Ok(result) => result,
    }
}

/// The body's pieces as one, at most `max` bytes. A body in one piece is
/// taken as it came; from the second piece on, each is copied into one
/// buffer and let go, so what a body holds is its own size, not its
/// piece count times the buffers they were cut from.
async fn joined(mut body: RequestBody, max: usize) -> Result<Bytes, ProxyError> {
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ProxyError::BadRequest {
            message: format!("The request body could not be read: {e}"),
            param: None,
        })?;
        // Trailers carry nothing the request is made of.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len = len.saturating_add(data.len());
        if len > max {
            return Err(ProxyError::TooLarge { limit: max });
        }
        match first.take() {
            None if rest.is_empty() => first = Some(data),
            None => rest.extend_from_slice(&data),
            Some(head) => {
                rest.reserve(len);
                rest.extend_from_slice(&head);
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::mpsc;

    use super::*;
    use crate::server::BodyError;

    const LONG: Duration = Duration::from_secs(30);

    fn whole(body: &'static [u8]) -> Request<RequestBody> {
        Request::new(RequestBody::whole(Bytes::from_static(body)))
    }

    /// A body still arriving, with its sender (`None` on it is the end).
    fn fed(
        declared: Option<&str>,
    ) -> (
        Request<RequestBody>,
        mpsc::Sender<Result<Option<Bytes>, BodyError>>,
    ) {
        let (tx, rx) = mpsc::channel(4);
        let mut req = Request::new(RequestBody::Fed { rx, ended: false });
        if let Some(n) = declared {
            req.headers_mut()
                .insert(CONTENT_LENGTH, http::HeaderValue::from_str(n).unwrap());
        }
        (req, tx)
    }

    #[tokio::test]
    async fn a_whole_body_is_taken_as_it_came() {
        let body = read(whole(b"{\"model\":\"m\"}"), 64, LONG).await.unwrap();
        assert_eq!(&body[..], b"{\"model\":\"m\"}");
        let empty = read(whole(b""), 64, LONG).await.unwrap();
        assert!(empty.is_empty());
        // Exactly the limit is allowed; one byte over is not.
        assert_eq!(read(whole(b"12345678"), 8, LONG).await.unwrap().len(), 8);
        let over = read(whole(b"123456789"), 8, LONG).await.unwrap_err();
        assert!(
            matches!(over, ProxyError::TooLarge { limit: 8 }),
            "{over:?}"
        );
    }

    /// The whole body is taken without a timer: on a runtime without a
    /// time driver, where making one panics, it is read all the same.
    #[test]
    fn a_whole_body_needs_no_timer() {
        let untimed = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let body = untimed.block_on(read(whole(b"{}"), 64, LONG)).unwrap();
        assert_eq!(&body[..], b"{}");
    }

    #[tokio::test]
    async fn a_fed_body_is_read_to_its_end() {
        let (req, tx) = fed(None);
        tx.send(Ok(Some(Bytes::from_static(b"ab")))).await.unwrap();
        tx.send(Ok(Some(Bytes::from_static(b"cd")))).await.unwrap();
        tx.send(Ok(None)).await.unwrap();
        assert_eq!(&read(req, 64, LONG).await.unwrap()[..], b"abcd");
    }

    /// A piece of body that counts itself alive while anything holds it.
    struct Counted(Arc<AtomicUsize>);

    impl AsRef<[u8]> for Counted {
        fn as_ref(&self) -> &[u8] {
            b"x"
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A hostile client sends its body a byte at a time: each piece is let
    /// go once copied, so what the read holds does not grow with the
    /// number of pieces (a list of them held every one, and the read
    /// buffer each was cut from).
    #[tokio::test]
    async fn a_body_in_many_small_pieces_does_not_hold_them() {
        let live = Arc::new(AtomicUsize::new(0));
        let (req, tx) = fed(None);
        let reading = tokio::spawn(read(req, 1 << 20, LONG));
        for _ in 0..2_000 {
            live.fetch_add(1, Ordering::SeqCst);
            let piece = Bytes::from_owner(Counted(live.clone()));
            tx.send(Ok(Some(piece))).await.unwrap();
        }
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        // At most the channel's four and the one being read are held.
        let held = live.load(Ordering::SeqCst);
        assert!(held <= 5, "{held} pieces held while the body is read");
        tx.send(Ok(None)).await.unwrap();
        let body = reading.await.unwrap().unwrap();
        assert_eq!(body.len(), 2_000);
        assert!(body.iter().all(|&b| b == b'x'));
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_fed_body_over_the_limit_is_refused() {
        // Declared over the limit: refused before a byte is read.
        let (req, _tx) = fed(Some("65"));
        let err = read(req, 64, LONG).await.unwrap_err();
        assert!(matches!(err, ProxyError::TooLarge { limit: 64 }), "{err:?}");
        // Declared within it (or a hostile, unreadable length), sent over.
        for declared in [Some("4"), Some("-1"), Some("99999999999999999999999"), None] {
            let (req, tx) = fed(declared);
            tx.send(Ok(Some(Bytes::from(vec![b'x'; 65]))))
                .await
                .unwrap();
            let err = read(req, 64, LONG).await.unwrap_err();
            assert!(
                matches!(err, ProxyError::TooLarge { limit: 64 }),
                "{declared:?}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_cut_short_is_a_bad_request() {
        let (req, tx) = fed(Some("10"));
        tx.send(Ok(Some(Bytes::from_static(b"abc")))).await.unwrap();
        drop(tx);
        let err = read(req, 64, LONG).await.unwrap_err();
        assert!(matches!(err, ProxyError::BadRequest { .. }), "{err:?}");
    }

    /// The timeout, on tokio's paused clock: a body that stops arriving
    /// times out after exactly `timeout`, not before.
    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_times_out() {
        let (req, tx) = fed(Some("10"));
        tx.send(Ok(Some(Bytes::from_static(b"abc")))).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = read(req, 64, Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(err, ProxyError::BodyTimeout { timeout_ms: 5000 }),
            "{err:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(tx);
    }
}
