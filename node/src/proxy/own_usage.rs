//! `GET /v1/usage?from=YYYY-MM-DD&to=YYYY-MM-DD&by=day|model|upstream`
//! with a client key: that key's own usage, read from the applied state,
//! in the admin API's body (`proto::api::tenants`, the one parser and the
//! one answer of both). A `key=` parameter is refused: a key reads only
//! its own.

use std::collections::BTreeMap;

use axum::extract::Query;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, Uri};
use proto::api::tenants::{UsageAnswer, usage_query};
use proto::tenancy::query::usage;

use super::{Answered, JSON, ProxyBody};
use crate::error::ProxyError;
use crate::tenants::Tenants;

/// The key's usage over the asked range.
pub(super) fn answer(
    tenants: Option<&Tenants>,
    key: &str,
    uri: &Uri,
) -> Result<Answered, ProxyError> {
    let Query(params) = Query::<BTreeMap<String, String>>::try_from_uri(uri).map_err(|e| {
        ProxyError::BadRequest {
            message: format!("The query string could not be read: {}", e.body_text()),
            param: Some("query"),
        }
    })?;
    let mut query = usage_query(&params, false).map_err(|e| ProxyError::BadRequest {
        param: Some(match e.field.as_str() {
            "key" => "key",
            "from" => "from",
            "to" => "to",
            "by" => "by",
            _ => "query",
        }),
        message: e.message,
    })?;
    query.key = Some(key.to_owned());
    let rows = match tenants {
        Some(tenants) => usage(&tenants.applied().state.tenancy.usage, &query),
        None => Vec::new(),
    };
    let body = serde_json::to_vec(&UsageAnswer::new(&query, rows)).unwrap_or_default();
    let mut response = Response::new(ProxyBody::bytes(Bytes::from(body)));
    response.headers_mut().insert(CONTENT_TYPE, JSON.clone());
    Ok(Answered {
        response,
        upstream: HeaderValue::from_static("meridian"),
        attempts: 0,
        fallback: false,
    })
}
