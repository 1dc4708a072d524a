//! The node's own answers about models: `GET /v1/models` (routes and every
//! catalogue model) and `GET /v1/models/{id}`, answered without an upstream.
//! A key with an allowlist sees only the models it may call: the others
//! are neither listed nor retrievable (404, as for an unknown model).

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response};

use super::{Answered, JSON, ProxyBody};
use crate::error::ProxyError;
use crate::routing::RoutingSnapshot;
use crate::tenants::KeyState;

/// `GET /v1/models`: the list built with the snapshot, less what the key
/// may not call.
pub(super) fn list(snapshot: &RoutingSnapshot, key: Option<&KeyState>) -> Answered {
    let body = match key {
        Some(key) if key.has_allowlist() => allowed_only(&snapshot.models_body, key),
        _ => snapshot.models_body.clone(),
    };
    let mut response = Response::new(ProxyBody::bytes(body));
    response.headers_mut().insert(CONTENT_TYPE, JSON.clone());
    Answered {
        response,
        upstream: HeaderValue::from_static("meridian"),
        attempts: 0,
        fallback: false,
    }
}

/// `GET /v1/models/{id}` (the SDKs' `models.retrieve`): the entry of a
/// name a request may send, which may hold `/` (`deepseek/deepseek-chat`,
/// or `deepseek%2Fdeepseek-chat`), or a 404 as a request for it would get.
pub(super) fn retrieve(
    snapshot: &RoutingSnapshot,
    id: &str,
    key: Option<&KeyState>,
) -> Result<Answered, ProxyError> {
    let id = crate::routing::decode_model_id(id);
    if key.is_some_and(|k| !k.allows(&id)) {
        return Err(ProxyError::UnknownModel(id));
    }
    let entry = snapshot.model_entry(&id).map_err(|miss| match miss {
        // Retrieving a model the catalogue lacks or that is not a model
        // name at all: not found, either way.
        crate::routing::Miss::BadModel { .. } => ProxyError::UnknownModel(id.clone()),
        miss => miss.into_error(&id),
    })?;
    let mut response = Response::new(ProxyBody::bytes(Bytes::from(
        serde_json::to_vec(&entry).unwrap_or_default(),
    )));
    response.headers_mut().insert(CONTENT_TYPE, JSON.clone());
    Ok(Answered {
        response,
        upstream: HeaderValue::from_static("meridian"),
        attempts: 0,
        fallback: false,
    })
}

/// The list's entries whose `id` the key may call.
fn allowed_only(list: &Bytes, key: &KeyState) -> Bytes {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(list) else {
        return list.clone();
    };
    if let Some(data) = value.get_mut("data").and_then(|d| d.as_array_mut()) {
        data.retain(|entry| {
            entry
                .get("id")
                .and_then(|id| id.as_str())
                .is_some_and(|id| key.allows(id))
        });
    }
    Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
}
