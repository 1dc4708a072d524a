//! HTTP/1.1 on the wire for the worker-owned upstream connections
//! ([`super::owned`]): the request's head written out, the answer's head
//! parsed, and how the answer's body is framed. Pure: bytes in, values out.
//!
//! The upstream is not trusted. Every rule here that refuses an answer is
//! one an upstream (or something in front of it) could otherwise use to
//! make this node read a body the wrong length and hand the next request's
//! answer to the wrong client: the length is only ever taken from one
//! unambiguous place (RFC 9112, section 6.3), and a connection whose
//! framing was anything but plain is never reused.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

#[cfg(test)]
mod tests;

/// The largest answer head read: hyper's limit for a head is larger, but no
/// provider sends one near this, and every byte of it is held per request.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The most header fields an answer may have (hyper's default as well).
const MAX_HEADERS: usize = 100;

/// The longest chunk-size line (with its extensions) or trailer field.
const MAX_LINE_BYTES: usize = 4 * 1024;

/// The most bytes of trailer fields after a chunked body: read, then dropped.
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Why an exchange with an upstream over an owned connection failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// Reading or writing the socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The upstream closed the connection before a whole answer's head.
    #[error("connection closed before an answer's head")]
    ClosedBeforeHead,
    /// The upstream closed the connection before the body's end.
    #[error("connection closed before the answer's end")]
    ClosedMidBody,
    /// The head grew past [`MAX_HEAD_BYTES`].
    #[error("the answer's head is over {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    /// The head is not an HTTP/1.x answer.
    #[error("the answer's head is invalid: {0}")]
    BadHead(&'static str),
    /// The head says the body's length in a way that cannot be trusted.
    #[error("the answer's framing is invalid: {0}")]
    BadFraming(&'static str),
    /// A chunked body broke its format.
    #[error("the answer's chunked body is invalid: {0}")]
    BadChunk(&'static str),
}

/// How an answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// After this many bytes (none for HEAD, 204 and 304).
    Length(u64),
    /// At the chunked encoding's last chunk.
    Chunked,
    /// When the upstream closes the connection.
    UntilClose,
}

/// A final answer's head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection may carry another request once the body is
    /// read to its end.
    pub reusable: bool,
}

/// What the bytes read so far hold.
#[derive(Debug)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// An interim (1xx) answer of this many bytes, to skip.
    Interim(usize),
    /// The final answer's head, now taken off the buffer.
    Final(Head),
}

/// Writes a request's head: the request line in origin form, `host`, the
/// request's own fields, and the body's length. A `content-length` or
/// `transfer-encoding` the request carries is not written: the length
/// written is the body's own, so the two can never disagree.
pub fn encode_head(
    method: &Method,
    target: &str,
    host: &HeaderValue,
    headers: &HeaderMap,
    body_len: usize,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(if target.is_empty() { "/" } else { target }.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == http::header::HOST {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if body_len > 0 || !matches!(*method, Method::GET | Method::HEAD) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses the answer's head at the start of `buf`. `head_request` says the
/// request was a HEAD, whose answer has no body whatever its fields say.
///
/// A final head is taken off `buf` (what is left is the start of the body)
/// and its field values are slices of it, not copies: an answer's fields
/// cost no allocation each.
pub fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Parsed, H1Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut fields);
    let len = match answer.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(H1Error::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(H1Error::BadHead("over 100 header fields"));
        }
        Err(_) => return Err(H1Error::BadHead("not an HTTP/1.x status line and fields")),
    };
    if len > MAX_HEAD_BYTES {
        return Err(H1Error::HeadTooLarge);
    }
    let code = answer.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| H1Error::BadHead("status code"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(H1Error::BadFraming(
            "101 Switching Protocols was not asked for",
        ));
    }
    if status.is_informational() {
        return Ok(Parsed::Interim(len));
    }
    let http10 = answer.version == Some(0);
    // Where each field lies in the head: the parser borrows `buf`, and the
    // values can only share the head's bytes once it has let go of them.
    let mut spans = [Span::default(); MAX_HEADERS];
    let count = answer.headers.len();
    for (span, field) in spans.iter_mut().zip(answer.headers.iter()) {
        *span = Span {
            name: within(buf, field.name.as_bytes())?,
            value: within(buf, field.value)?,
        };
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    for span in &spans[..count] {
        let name = HeaderName::from_bytes(&head[span.name.range()])
            .map_err(|_| H1Error::BadHead("a field name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(span.value.range()))
            .map_err(|_| H1Error::BadHead("a field value"))?;
        headers.append(name, value);
    }
    let (framing, plain) = framing(&headers, status, head_request, http10)?;
    let reusable = plain && !http10 && !has_token(&headers, &CONNECTION, "close");
    Ok(Parsed::Final(Head {
        status,
        headers,
        framing,
        reusable,
    }))
}

/// A field's name and value, as offsets into its head.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    name: Offsets,
    value: Offsets,
}

/// Where a slice starts and ends in the buffer it was parsed from (the
/// head is at most [`MAX_HEAD_BYTES`], so `u32` holds any offset).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Offsets {
    start: u32,
    end: u32,
}

impl Offsets {
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Where `part`, a slice the parser returned, lies in `whole`. An empty
/// slice may point anywhere and is taken as empty at the start.
pub(crate) fn within(whole: &[u8], part: &[u8]) -> Result<Offsets, H1Error> {
    if part.is_empty() {
        return Ok(Offsets::default());
    }
    let start = part.as_ptr().addr().wrapping_sub(whole.as_ptr().addr());
    let end = start
        .checked_add(part.len())
        .filter(|&end| end <= whole.len());
    match (u32::try_from(start), end.map(u32::try_from)) {
        (Ok(start), Some(Ok(end))) => Ok(Offsets { start, end }),
        _ => Err(H1Error::BadHead("a field outside its head")),
    }
}

/// The body's framing (RFC 9112, section 6.3), and whether it leaves the
/// connection fit for another request.
fn framing(
    headers: &HeaderMap,
    status: StatusCode,
    head_request: bool,
    http10: bool,
) -> Result<(Framing, bool), H1Error> {
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Length(0), true));
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        if http10 {
            return Err(H1Error::BadFraming(
                "transfer-encoding in an HTTP/1.0 answer",
            ));
        }
        let mut codings = Vec::new();
        for value in headers.get_all(TRANSFER_ENCODING) {
            let value = value
                .to_str()
                .map_err(|_| H1Error::BadFraming("transfer-encoding"))?;
            codings.extend(value.split(',').map(str::trim).filter(|c| !c.is_empty()));
        }
        let chunked = |c: &&str| c.eq_ignore_ascii_case("chunked");
        let Some((last, before)) = codings.split_last() else {
            return Err(H1Error::BadFraming("an empty transfer-encoding"));
        };
        if before.iter().any(chunked) {
            return Err(H1Error::BadFraming("chunked applied twice or not last"));
        }
        // Both fields: transfer-encoding wins, and the connection is closed
        // after, as a message someone may have tampered with.
        let plain = !headers.contains_key(CONTENT_LENGTH);
        return Ok(if chunked(last) {
            (Framing::Chunked, plain)
        } else {
            (Framing::UntilClose, false)
        });
    }
    Ok(
        match content_length(headers).map_err(H1Error::BadFraming)? {
            Some(n) => (Framing::Length(n), true),
            None => (Framing::UntilClose, false),
        },
    )
}

/// The one length a message's `content-length` fields give (`None`:
/// none given). Each field may list values (`5, 5`); every value must be
/// plain digits and all must agree, else the reason it cannot be trusted.
/// Shared by both sides of the node: an upstream's answers and a client's
/// requests are framed by the same rule.
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, &'static str> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let value = value.to_str().map_err(|_| "content-length")?;
        for item in value.split(',') {
            let n = parse_length(item.trim()).ok_or("content-length")?;
            if length.is_some_and(|seen| seen != n) {
                return Err("content-length values differ");
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// A decimal length: digits only, no sign, no overflow.
fn parse_length(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Whether a comma-separated field holds `token`, in any case.
pub(crate) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|item| item.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// What decoding a chunked body's buffered bytes gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes, taken from the buffer without a copy.
    Data(Bytes),
    /// The buffer ends inside the encoding: read more.
    NeedMore,
    /// The last chunk and the trailer section were read.
    End,
}

/// Where a chunked body's decoding stands between reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Chunked {
    /// Before a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, with this much left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// Past the last chunk, in the trailer section, this many bytes so far.
    Trailers(usize),
    /// The body ended.
    Done,
}

impl Chunked {
    /// Decodes from the front of `buf`, consuming what it decodes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, H1Error> {
        loop {
            match *self {
                Chunked::Done => return Ok(Decoded::End),
                Chunked::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    *self = if size == 0 {
                        Chunked::Trailers(0)
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(H1Error::BadChunk("no CRLF after a chunk's data"));
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers(seen) => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if line.is_empty() {
                        *self = Chunked::Done;
                        return Ok(Decoded::End);
                    }
                    let seen = seen + line.len() + 2;
                    if seen > MAX_TRAILER_BYTES {
                        return Err(H1Error::BadChunk("trailer section too large"));
                    }
                    *self = Chunked::Trailers(seen);
                }
            }
        }
    }
}

/// Takes one CRLF-terminated line from the front of `buf`, without its
/// CRLF; `None` when no whole line is buffered yet.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, H1Error> {
    let window = &buf[..buf.len().min(MAX_LINE_BYTES + 2)];
    match window.iter().position(|&b| b == b'\n') {
        None if buf.len() > MAX_LINE_BYTES => Err(H1Error::BadChunk("a line too long")),
        None => Ok(None),
        Some(0) => Err(H1Error::BadChunk("a bare LF")),
        Some(lf) if buf[lf - 1] != b'\r' => Err(H1Error::BadChunk("a bare LF")),
        Some(lf) => {
            let mut line = buf.split_to(lf + 1);
            line.truncate(lf - 1);
            Ok(Some(line))
        }
    }
}

/// A chunk-size line's size: hex digits, then optional whitespace and
/// extensions (ignored).
fn chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(H1Error::BadChunk("no chunk size"));
    }
    if digits > 16 {
        return Err(H1Error::BadChunk("a chunk size too large"));
    }
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    if !(rest.is_empty() || rest[0] == b';') {
        return Err(H1Error::BadChunk("junk after a chunk size"));
    }
    if rest.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(H1Error::BadChunk("a control byte in a chunk extension"));
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(digit)))
            .ok_or(H1Error::BadChunk("a chunk size too large"))?;
    }
    Ok(size)
}
