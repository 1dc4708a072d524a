//! The answer to a request that no upstream answered: the error in the
//! client's own API (so its SDK raises the class it knows), with the
//! attempts it took and, where waiting helps, `Retry-After`.

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Request, Response};

use super::ids::count_header;
use super::{JSON, ProxyBody, X_ATTEMPTS};
use crate::error::ProxyError;
use crate::routing::Dialect;
use crate::server::RequestBody;

/// A known path called with a method it does not take.
pub(super) fn not_allowed(req: &Request<RequestBody>, allowed: &'static str) -> ProxyError {
    ProxyError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        allowed,
    }
}

/// The client's answer to a request no upstream answered: the error in
/// the client's API, how many attempts it took, and when to retry.
pub(super) fn error_response(
    error: &ProxyError,
    attempts: usize,
    dialect: Dialect,
) -> Response<ProxyBody> {
    let (status, body) = match dialect {
        Dialect::OpenAi => (error.status(), error.body()),
        Dialect::Anthropic => error.anthropic(),
    };
    let mut response = ProxyBody::bytes(body).answer(status);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, JSON.clone());
    headers.insert(X_ATTEMPTS.clone(), count_header(attempts));
    if let Some(wait) = error.retry_after() {
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from(crate::error::retry_secs(&wait)),
        );
    }
    if let ProxyError::MethodNotAllowed { allowed, .. } = error {
        headers.insert(http::header::ALLOW, HeaderValue::from_static(allowed));
    }
    response
}
