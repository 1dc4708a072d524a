//! A client's request head read off the wire, and an answer's head written
//! onto it. Pure: bytes in, values out.
//!
//! The client is not trusted. Every rule here that refuses a request is one
//! a client (or something in front of this node) could otherwise use to
//! make the node read a body the wrong length and take the rest of it for
//! a second request: the length is taken from one unambiguous place
//! (RFC 9112, section 6.3), and anything else is a 400 that closes the
//! connection.

use bytes::{BufMut, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

use crate::upstream::h1::{content_length, has_token, within};

/// The largest request head read (nginx's default for large headers is
/// 4 x 8 KB; hyper's is larger, but no SDK sends a head near this).
pub(super) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The most header fields a request may have (hyper's default as well).
const MAX_HEADERS: usize = 100;

/// Why a request head was refused; the connection is closed after the
/// answer, since what follows on it cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The head grew past [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`].
    #[error(
        "The request's head is too large: at most {MAX_HEAD_BYTES} bytes and {MAX_HEADERS} fields."
    )]
    TooLarge,
    /// Not an HTTP/1.x request line and fields.
    #[error("The request is not valid HTTP/1.1: {0}.")]
    Bad(&'static str),
    /// The head says the body's length in a way that cannot be trusted.
    #[error("The request's body framing is invalid: {0}.")]
    Framing(&'static str),
}

impl HeadError {
    /// The status the client is answered with.
    pub(super) fn status(self) -> StatusCode {
        match self {
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::Bad(_) | HeadError::Framing(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// How a request's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFraming {
    /// After this many bytes (none: no body).
    Length(u64),
    /// At the chunked encoding's last chunk.
    Chunked,
}

/// A request head, taken off the connection's buffer.
#[derive(Debug)]
pub(super) struct Head {
    pub request: Request<()>,
    pub framing: BodyFraming,
    /// Whether the client allows another request on the connection.
    pub keep_alive: bool,
    /// Whether the client waits for a `100 Continue` before its body.
    pub expect_continue: bool,
}

/// Parses the request head at the start of `buf`: `None` until it is
/// whole. A whole head is taken off `buf` (what is left is the start of
/// the body), and its target and field values are slices of it, not
/// copies.
pub(super) fn parse(buf: &mut BytesMut) -> Result<Option<Head>, HeadError> {
    // Empty lines before a request line are allowed (RFC 9112, 2.2).
    let blank = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if blank > 0 {
        let _ = buf.split_to(blank);
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Bad("not a request line and fields")),
    };
    if len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let method = parsed
        .method
        .ok_or(HeadError::Bad("no method"))
        .and_then(|m| Method::from_bytes(m.as_bytes()).map_err(|_| HeadError::Bad("the method")))?;
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(HeadError::Bad("the version")),
    };
    let target = parsed.path.ok_or(HeadError::Bad("no target"))?;
    let target = within(buf, target.as_bytes()).map_err(|_| HeadError::Bad("the target"))?;
    let mut spans = [(target, target); MAX_HEADERS];
    let count = parsed.headers.len();
    for (span, field) in spans.iter_mut().zip(parsed.headers.iter()) {
        *span = (
            within(buf, field.name.as_bytes()).map_err(|_| HeadError::Bad("a field name"))?,
            within(buf, field.value).map_err(|_| HeadError::Bad("a field value"))?,
        );
    }
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target.range()))
        .map_err(|_| HeadError::Bad("the target"))?;
    let mut headers = HeaderMap::with_capacity(count);
    for (name, value) in &spans[..count] {
        let name = HeaderName::from_bytes(&head[name.range()])
            .map_err(|_| HeadError::Bad("a field name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(value.range()))
            .map_err(|_| HeadError::Bad("a field value"))?;
        headers.append(name, value);
    }
    let http10 = version == Version::HTTP_10;
    let framing = framing(&headers, http10)?;
    let keep_alive = if http10 {
        has_token(&headers, &CONNECTION, "keep-alive")
    } else {
        !has_token(&headers, &CONNECTION, "close")
    };
    let expect_continue = !http10
        && headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Some(Head {
        request,
        framing,
        keep_alive,
        expect_continue,
    }))
}

/// The request body's framing (RFC 9112, section 6.3). Stricter than the
/// RFC where it leaves a choice: a request with both a `transfer-encoding`
/// and a `content-length`, or with a coding after `chunked`, is refused
/// rather than read one way when something in front of the node may have
/// read it the other.
fn framing(headers: &HeaderMap, http10: bool) -> Result<BodyFraming, HeadError> {
    if headers.contains_key(TRANSFER_ENCODING) {
        if http10 {
            return Err(HeadError::Framing(
                "transfer-encoding in an HTTP/1.0 request",
            ));
        }
        if headers.contains_key(CONTENT_LENGTH) {
            return Err(HeadError::Framing(
                "both transfer-encoding and content-length",
            ));
        }
        let mut codings = 0usize;
        let mut last_chunked = false;
        for value in headers.get_all(TRANSFER_ENCODING) {
            let value = value
                .to_str()
                .map_err(|_| HeadError::Framing("transfer-encoding"))?;
            for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                if last_chunked {
                    return Err(HeadError::Framing("a coding after chunked"));
                }
                codings += 1;
                last_chunked = coding.eq_ignore_ascii_case("chunked");
            }
        }
        return match (codings, last_chunked) {
            (1, true) => Ok(BodyFraming::Chunked),
            (0, _) => Err(HeadError::Framing("an empty transfer-encoding")),
            _ => Err(HeadError::Framing("a transfer-encoding other than chunked")),
        };
    }
    let length = content_length(headers).map_err(HeadError::Framing)?;
    Ok(BodyFraming::Length(length.unwrap_or(0)))
}

/// How an answer's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AnswerFraming {
    /// No body at all: a HEAD request's answer, 1xx, 204 and 304.
    Empty,
    /// A body of this many bytes.
    Length(u64),
    /// Chunked: a relayed stream to an HTTP/1.1 client.
    Chunked,
    /// Ended by closing the connection: a stream to an HTTP/1.0 client.
    UntilClose,
}

impl AnswerFraming {
    /// The framing of an answer with `status` to a request with `method`
    /// and `version`, whose body knows its length (`exact`) or not.
    pub(super) fn of(
        status: StatusCode,
        method: &Method,
        version: Version,
        exact: Option<u64>,
    ) -> Self {
        if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || method == Method::HEAD
        {
            return AnswerFraming::Empty;
        }
        match exact {
            Some(n) => AnswerFraming::Length(n),
            None if version == Version::HTTP_10 => AnswerFraming::UntilClose,
            None => AnswerFraming::Chunked,
        }
    }
}

/// Writes an answer's head. The framing fields are the node's own: a
/// `content-length`, `transfer-encoding` or `connection` the answer
/// carries is not written (except a HEAD answer's `content-length`, which
/// describes the body a GET would have), so what the head says can never
/// disagree with what follows it.
pub(super) fn encode(
    status: StatusCode,
    headers: &HeaderMap,
    framing: AnswerFraming,
    keep_alive: bool,
    http10: bool,
    date: &[u8],
    out: &mut BytesMut,
) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in headers {
        let framing_field = name == TRANSFER_ENCODING
            || name == CONNECTION
            || (name == CONTENT_LENGTH && framing != AnswerFraming::Empty);
        if framing_field || name.as_str() == "keep-alive" {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    if !headers.contains_key(DATE) {
        out.put_slice(b"date: ");
        out.put_slice(date);
        out.put_slice(b"\r\n");
    }
    match framing {
        AnswerFraming::Length(n) => {
            out.put_slice(b"content-length: ");
            out.put_slice(itoa::Buffer::new().format(n).as_bytes());
            out.put_slice(b"\r\n");
        }
        AnswerFraming::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
        AnswerFraming::Empty | AnswerFraming::UntilClose => {}
    }
    if !keep_alive || framing == AnswerFraming::UntilClose {
        out.put_slice(b"connection: close\r\n");
    } else if http10 {
        out.put_slice(b"connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
}
