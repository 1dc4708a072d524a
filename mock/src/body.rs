//! HTTP plumbing shared by the data and control planes: the body type, the
//! error that aborts a connection on purpose, and small response builders.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::openai;

/// Every response body: a full buffer or a stream of frames.
pub type Body = UnsyncBoxBody<Bytes, MockError>;

/// Why the mock ends a body or a connection abruptly; hyper drops the
/// connection (HTTP/1) or resets the stream (HTTP/2) when it sees one.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// `cut_after_chunks` fired.
    #[error("connection cut on purpose (cut_after_chunks)")]
    Cut,
    /// A stalled request reached its time limit.
    #[error("stalled request gave up after its time limit")]
    StallExpired,
    /// Reading the request failed (the client went away).
    #[error("reading the request: {0}")]
    Read(#[from] hyper::Error),
}

/// What reading a request body can give besides the bytes.
pub enum ReadError {
    /// Over the size limit: answer 413.
    TooLarge,
    /// The connection failed: give up on the request.
    Broken(MockError),
}

/// Reads a whole request body of at most `limit` bytes.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ReadError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => match e.downcast::<hyper::Error>() {
            Ok(e) => Err(ReadError::Broken(MockError::Read(*e))),
            Err(_) => Err(ReadError::TooLarge),
        },
    }
}

/// A body from one buffer.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A JSON response.
pub fn json(status: StatusCode, bytes: Bytes) -> Response<Body> {
    with_type(status, bytes, "application/json")
}

/// A response with the given content type.
pub fn with_type(status: StatusCode, bytes: Bytes, content_type: &'static str) -> Response<Body> {
    response(status, full(bytes), content_type)
}

/// A response with any body (streams included).
pub fn response(status: StatusCode, body: Body, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An OpenAI error JSON response.
pub fn error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response<Body> {
    json(status, openai::error_body(message, kind, code))
}

/// 404 in OpenAI's words.
pub fn not_found(method: &http::Method, path: &str) -> Response<Body> {
    let message = format!("Invalid URL ({method} {path})");
    error(
        StatusCode::NOT_FOUND,
        &message,
        "invalid_request_error",
        None,
    )
}

/// 413 for a body over the limit.
pub fn too_large(limit: usize) -> Response<Body> {
    let message = format!("request body over {limit} bytes");
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &message,
        "invalid_request_error",
        None,
    )
}

/// 400 for a body that does not parse.
pub fn bad_json(detail: &dyn std::fmt::Display) -> Response<Body> {
    let message = format!("We could not parse the JSON body of your request: {detail}");
    error(
        StatusCode::BAD_REQUEST,
        &message,
        "invalid_request_error",
        None,
    )
}
