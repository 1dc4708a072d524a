//! The control plane: tests read and change the behaviour, read the stats and
//! reset the mock over JSON, on a listener of its own that stays up while the
//! data listener refuses connections.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::behavior::Behavior;
use super::body::{self, Body, MockError, ReadError};
use super::openai::json_body;
use super::server::{DataPlane, UpdateError};

/// Largest control request body.
const MAX_BODY: usize = 1 << 20;

/// Answers one control-plane request.
pub(crate) async fn handle(
    plane: Arc<DataPlane>,
    request: Request<Incoming>,
) -> Result<Response<Body>, MockError> {
    let (parts, incoming) = request.into_parts();
    let shared = &plane.shared;
    let response = match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/_mock/healthz") => body::json(
            StatusCode::OK,
            json_body(&serde_json::json!({"status": "ok"})),
        ),
        (&Method::GET, "/_mock/behavior") => behavior(&shared.behavior()),
        (&Method::PUT | &Method::PATCH, "/_mock/behavior") => {
            let bytes = match body::read_body(incoming, MAX_BODY).await {
                Ok(bytes) => bytes,
                Err(ReadError::TooLarge) => return Ok(body::too_large(MAX_BODY)),
                Err(ReadError::Broken(e)) => return Err(e),
            };
            let result = if parts.method == Method::PUT {
                plane.update(|_| Behavior::from_json(&bytes)).await
            } else {
                plane.update(|current| current.patched(&bytes)).await
            };
            updated(result)
        }
        (&Method::GET, "/_mock/stats") => {
            body::json(StatusCode::OK, json_body(&shared.stats.snapshot()))
        }
        (&Method::POST, "/_mock/reset") => {
            let result = plane.update(|_| Ok(shared.initial.clone())).await;
            shared.stats.reset();
            shared.responses.clear();
            updated(result)
        }
        (method, path) => body::not_found(method, path),
    };
    Ok(response)
}

fn behavior(behavior: &Behavior) -> Response<Body> {
    body::json(StatusCode::OK, json_body(behavior))
}

fn updated(result: Result<Arc<Behavior>, UpdateError>) -> Response<Body> {
    match result {
        Ok(new) => behavior(&new),
        Err(UpdateError::Invalid(e)) => body::error(
            StatusCode::BAD_REQUEST,
            &e.to_string(),
            "invalid_request_error",
            None,
        ),
        Err(e @ UpdateError::Bind(_)) => body::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
            "server_error",
            None,
        ),
    }
}
