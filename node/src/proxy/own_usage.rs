//! `GET /v1/usage?from=YYYY-MM-DD&to=YYYY-MM-DD&by=day|model|upstream`
//! with a client key: that key's own usage, read from the applied state,
//! in the admin API's body. A `key=` parameter is refused: a key reads
//! only its own.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response};

use super::{Answered, JSON, ProxyBody};
use crate::error::ProxyError;
use crate::tenants::{Tenants, UsageParams};

/// The key's usage over the asked range.
pub(super) fn answer(
    tenants: Option<&Tenants>,
    key: &str,
    query: Option<&str>,
) -> Result<Answered, ProxyError> {
    let params = UsageParams::parse(query.unwrap_or(""), false).map_err(|(param, message)| {
        ProxyError::BadRequest {
            message,
            param: Some(param),
        }
    })?;
    let body = match tenants {
        Some(tenants) => params.answer(&tenants.applied().state.tenancy.usage, Some(key)),
        None => params.answer(&Default::default(), Some(key)),
    };
    let mut response = Response::new(ProxyBody::bytes(Bytes::from(
        serde_json::to_vec(&body).unwrap_or_default(),
    )));
    response.headers_mut().insert(CONTENT_TYPE, JSON.clone());
    Ok(Answered {
        response,
        upstream: HeaderValue::from_static("meridian"),
        attempts: 0,
        fallback: false,
    })
}
