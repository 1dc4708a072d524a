//! `/v1/responses/{id}` and what hangs below it: `GET` (the response),
//! `DELETE`, `POST .../cancel`, `GET .../input_items`. They read or change
//! the mock's stored responses and are answered at once, without faults.

use http::{Method, Response, StatusCode, Uri};

use super::body::{self, Body};
use super::data::Rejected;
use super::responses::{ResponsesError, Store};
use super::stats::Outcome;

/// The answer to one `/v1/responses/{id}...` call.
pub fn answer(store: &Store, method: &Method, uri: &Uri) -> (Outcome, Response<Body>) {
    let rest = uri
        .path()
        .strip_prefix("/v1/responses/")
        .unwrap_or_default();
    let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let result = match (method, tail) {
        _ if id.is_empty() => return not_found(method, uri),
        (&Method::GET, "") => store.get(id).map(|r| r.body()),
        (&Method::DELETE, "") => store.delete(id),
        (&Method::POST, "cancel") => store.cancel(id),
        (&Method::GET, "input_items") => {
            let order = uri
                .query()
                .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("order=")));
            store.get(id).map(|r| r.input_items_body(order))
        }
        _ => return not_found(method, uri),
    };
    match result {
        Ok(bytes) => (Outcome::Ok, body::json(StatusCode::OK, bytes)),
        Err(e) => {
            let (outcome, response) = error(&e);
            (outcome, response)
        }
    }
}

/// The error of a failed Responses call, for [`crate::data`].
pub(crate) fn rejected(e: &ResponsesError) -> Rejected {
    let (outcome, response) = error(e);
    Rejected::Respond(outcome, Box::new(response))
}

/// An OpenAI error answer for `e` (`param` and `code` as OpenAI sets them).
fn error(e: &ResponsesError) -> (Outcome, Response<Body>) {
    let message = e.to_string();
    let (status, param, code) = match e {
        ResponsesError::PreviousNotFound(_) => (
            StatusCode::NOT_FOUND,
            Some("previous_response_id"),
            Some("previous_response_not_found"),
        ),
        ResponsesError::NotFound(_) => (StatusCode::NOT_FOUND, None, None),
        ResponsesError::NotBackground => (StatusCode::BAD_REQUEST, None, None),
    };
    let envelope =
        proto::api::openai::ErrorEnvelope::new(&message, "invalid_request_error", param, code);
    let outcome = if status == StatusCode::NOT_FOUND {
        Outcome::NotFound
    } else {
        Outcome::BadRequest
    };
    (
        outcome,
        body::json(status, super::openai::json_body(&envelope)),
    )
}

fn not_found(method: &Method, uri: &Uri) -> (Outcome, Response<Body>) {
    (Outcome::NotFound, body::not_found(method, uri.path()))
}
