//! The node's own answers about models: `GET /v1/models` (routes and every
//! catalogue model) and `GET /v1/models/{id}`, answered without an upstream.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response};

use super::{Answered, JSON, ProxyBody};
use crate::error::ProxyError;
use crate::routing::RoutingSnapshot;

/// `GET /v1/models`: the list built with the snapshot.
pub(super) fn list(snapshot: &RoutingSnapshot) -> Answered {
    let mut response = Response::new(ProxyBody::bytes(snapshot.models_body.clone()));
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
pub(super) fn retrieve(snapshot: &RoutingSnapshot, id: &str) -> Result<Answered, ProxyError> {
    let id = crate::routing::decode_model_id(id);
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
