//! The replicated configuration through the admin API: upstreams, routes
//! and client keys. Every change is checked against the applied state first
//! (the same `apply` the state machine runs), so an invalid change gets a
//! 4xx naming the field and nothing is proposed; a valid one is acknowledged
//! only after it is committed and applied on this node, so the next request
//! here already sees it. Reads are linearizable unless `?stale=true`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use proto::FieldError;
use proto::config::{RouteConfig, UpstreamConfig, check_secret_strength};
use proto::state::{ClusterState, Command, CommandResponse, KeyRecord, LAST_KEY};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{AdminState, error, write_error};
use crate::auth::hash_key;
use crate::cluster::hex;
use crate::node::routing_built_at;
use crate::routing::check_upstream;

/// The configuration routes.
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/upstreams", get(list_upstreams))
        .route(
            "/admin/v1/upstreams/{id}",
            get(get_upstream).put(put_upstream).delete(delete_upstream),
        )
        .route("/admin/v1/routes", get(list_routes))
        .route(
            "/admin/v1/routes/{*model}",
            get(get_route).put(put_route).delete(delete_route),
        )
        .route("/admin/v1/keys", get(list_keys))
        .route(
            "/admin/v1/keys/{name}",
            get(get_key).put(put_key).delete(delete_key),
        )
}

/// `?stale=true` skips the linearizable read (for a node cut off from its leader).
#[derive(Deserialize)]
pub struct ReadMode {
    #[serde(default)]
    stale: bool,
}

/// The applied state, after a linearizable read unless `stale`.
async fn read(state: &AdminState, mode: &ReadMode) -> Result<ClusterState, Response> {
    if !mode.stale {
        state.cluster.linearizable().await.map_err(write_error)?;
    }
    Ok(state.cluster.applied().state.clone())
}

fn not_found(what: &str, name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("no {what} `{name}`"),
        None,
        "not_found",
    )
}

async fn list_upstreams(State(state): State<AdminState>, Query(mode): Query<ReadMode>) -> Response {
    match read(&state, &mode).await {
        Ok(s) => Json(s.upstreams.values().collect::<Vec<_>>()).into_response(),
        Err(r) => r,
    }
}

async fn get_upstream(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    Query(mode): Query<ReadMode>,
) -> Response {
    match read(&state, &mode).await {
        Ok(s) => s
            .upstreams
            .get(&id)
            .map_or_else(|| not_found("upstream", &id), |u| Json(u).into_response()),
        Err(r) => r,
    }
}

async fn put_upstream(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let upstream = match parse::<UpstreamConfig>(body, "id", &id) {
        Ok(upstream) => upstream,
        Err(r) => return *r,
    };
    // What only this node can check (its [secrets], its files), before
    // anything is proposed; a follower checks here too, then forwards.
    if let Err(e) = upstream
        .validate("upstream")
        .and_then(|()| check_upstream(&upstream, state.secrets.as_ref(), &state.trust.policy))
    {
        return error(
            StatusCode::BAD_REQUEST,
            &e.message,
            Some(&e.field),
            "invalid_config",
        );
    }
    propose(&state, Command::PutUpstream(upstream)).await
}

async fn delete_upstream(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    propose(&state, Command::DeleteUpstream { id }).await
}

async fn list_routes(State(state): State<AdminState>, Query(mode): Query<ReadMode>) -> Response {
    match read(&state, &mode).await {
        Ok(s) => Json(s.routes.values().collect::<Vec<_>>()).into_response(),
        Err(r) => r,
    }
}

async fn get_route(
    State(state): State<AdminState>,
    Path(model): Path<String>,
    Query(mode): Query<ReadMode>,
) -> Response {
    match read(&state, &mode).await {
        Ok(s) => s
            .routes
            .get(&model)
            .map_or_else(|| not_found("route", &model), |r| Json(r).into_response()),
        Err(r) => r,
    }
}

async fn put_route(
    State(state): State<AdminState>,
    Path(model): Path<String>,
    body: Bytes,
) -> Response {
    match parse::<RouteConfig>(body, "model", &model) {
        Ok(route) => propose(&state, Command::PutRoute(route)).await,
        Err(r) => *r,
    }
}

async fn delete_route(State(state): State<AdminState>, Path(model): Path<String>) -> Response {
    propose(&state, Command::DeleteRoute { model }).await
}

async fn list_keys(State(state): State<AdminState>, Query(mode): Query<ReadMode>) -> Response {
    match read(&state, &mode).await {
        // Names only: not even the hash leaves the node.
        Ok(s) => Json(
            s.keys
                .keys()
                .map(|name| json!({ "name": name }))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(r) => r,
    }
}

async fn get_key(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(mode): Query<ReadMode>,
) -> Response {
    match read(&state, &mode).await {
        Ok(s) if s.keys.contains_key(&name) => Json(json!({ "name": name })).into_response(),
        Ok(_) => not_found("key", &name),
        Err(r) => r,
    }
}

/// The body of `PUT /admin/v1/keys/{name}`: the key itself (hashed on
/// arrival, never stored or logged) or its SHA-256 in hex.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    key: Option<String>,
    sha256: Option<String>,
}

async fn put_key(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let body: KeyBody = match parse_value(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let sha256 = match (body.key, body.sha256) {
        (Some(key), None) => match check_secret_strength("key", "the key", &key) {
            Ok(()) => hex(&hash_key(key.trim())),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &e.message,
                    Some("key"),
                    "invalid_config",
                );
            }
        },
        (None, Some(hash)) => hash.to_ascii_lowercase(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give exactly one of `key` or `sha256`",
                Some("key"),
                "invalid_config",
            );
        }
    };
    propose(&state, Command::PutKey(KeyRecord { name, sha256 })).await
}

async fn delete_key(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    propose(&state, Command::DeleteKey { name }).await
}

/// A JSON body as `T`, with the path's name filled in (or checked against
/// the body's), and serde's complaint turned into a 400 naming the field.
fn parse<T: DeserializeOwned>(body: Bytes, key: &str, name: &str) -> Result<T, Box<Response>> {
    let mut value = json_body(&body)?;
    let Some(object) = value.as_object_mut() else {
        return Err(not_an_object());
    };
    if let Some(Value::String(given)) = object.get(key)
        && given != name
    {
        let message = format!("`{key}` in the body ({given}) differs from the path ({name})");
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            &message,
            Some(key),
            "invalid_config",
        )));
    }
    object.insert(key.to_owned(), Value::String(name.to_owned()));
    typed(value)
}

/// The body as JSON, whatever its content type says (curl's `-d` sends a form type).
fn json_body(body: &[u8]) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        let message = format!("the body is not JSON: {e}");
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &message,
            None,
            "invalid_config",
        ))
    })
}

fn parse_value<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    typed(json_body(body)?)
}

/// `value` as `T`; a mismatch names the field by its path in the body
/// (`tiers[0][1].input_per_mtok`), whatever kind of mismatch it is.
fn typed<T: DeserializeOwned>(value: Value) -> Result<T, Box<Response>> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // A missing field is not in the path (it was never reached): serde
        // names it. An unknown one is the path's last step already.
        let field = match inner.split('`').nth(1) {
            Some(name) if inner.starts_with("missing field") => match path.as_str() {
                "." => name.to_owned(),
                parent => format!("{parent}.{name}"),
            },
            _ => path,
        };
        let message = format!("{field}: {inner}");
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &message,
            Some(&field),
            "invalid_config",
        ))
    })
}

fn not_an_object() -> Box<Response> {
    Box::new(error(
        StatusCode::BAD_REQUEST,
        "the body must be a JSON object",
        None,
        "invalid_config",
    ))
}

/// A delete that must not be proposed: 404 for a name the state does not
/// hold (nothing to do, so nothing goes into the log), 409 for the last
/// client key (without one the data plane would open on loopback).
fn refuse_delete(current: &ClusterState, command: &Command) -> Option<Response> {
    let (what, name, known) = match command {
        Command::DeleteUpstream { id } => ("upstream", id, current.upstreams.contains_key(id)),
        Command::DeleteRoute { model } => ("route", model, current.routes.contains_key(model)),
        Command::DeleteKey { name } => ("key", name, current.keys.contains_key(name)),
        _ => return None,
    };
    if !known {
        return Some(not_found(what, name));
    }
    if matches!(command, Command::DeleteKey { .. }) && current.keys.len() == 1 {
        return Some(error(
            StatusCode::CONFLICT,
            LAST_KEY,
            Some("name"),
            "last_key",
        ));
    }
    None
}

/// Checks a command against the applied state, proposes it, and answers
/// once it is committed and applied here.
async fn propose(state: &AdminState, command: Command) -> Response {
    // Check against a current state, so a change acknowledged a moment ago
    // on another node counts (a write racing this one is caught at apply).
    if let Err(e) = state.cluster.linearizable().await {
        return write_error(e);
    }
    let current = state.cluster.applied().state.clone();
    if let Some(refused) = refuse_delete(&current, &command) {
        return refused;
    }
    let mut trial = current;
    if let CommandResponse::Rejected(FieldError { field, message }) = trial.apply(&command) {
        return error(
            StatusCode::BAD_REQUEST,
            &message,
            Some(&field),
            "invalid_config",
        );
    }
    match state.cluster.write(command).await {
        Ok(CommandResponse::Applied { changed }) => {
            // Read your writes: this node applies the entry and rebuilds its
            // routing table before the change is acknowledged.
            if let Err(e) = state.cluster.linearizable().await {
                return write_error(e);
            }
            let index = state.cluster.applied().last_applied.map(|l| l.index);
            routing_built_at(
                &mut state.routing_built.clone(),
                index,
                Duration::from_secs(2),
            )
            .await;
            Json(json!({ "changed": changed, "applied_index": index })).into_response()
        }
        // Another change won a race between our check and the commit.
        Ok(CommandResponse::Rejected(FieldError { field, message })) => {
            error(StatusCode::CONFLICT, &message, Some(&field), "conflict")
        }
        Err(e) => write_error(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn field(body: Value) -> String {
        let response = typed::<RouteConfig>(body).map(|_| ()).unwrap_err();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = runtime
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 16))
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        v["error"]["param"].as_str().unwrap().to_owned()
    }

    #[test]
    fn every_mismatch_names_its_field_path() {
        let target = json!({"upstream": "a", "model": "x"});
        assert_eq!(field(json!({"model": "m", "tiers": "fast"})), "tiers");
        assert_eq!(
            field(
                json!({"model": "m", "tiers": [[target.clone(), {"upstream": "a", "model": "y", "pirce": 1}]]})
            ),
            "tiers[0][1].pirce"
        );
        assert_eq!(
            field(
                json!({"model": "m", "tiers": [[{"upstream": "a", "model": "y", "input_per_mtok": "free"}]]})
            ),
            "tiers[0][0].input_per_mtok"
        );
        assert_eq!(
            field(json!({"model": "m", "tiers": [], "surprise": 1})),
            "surprise"
        );
        assert_eq!(field(json!({"tiers": []})), "model");
        assert_eq!(
            field(json!({"model": "m", "tiers": [[{"model": "y"}]]})),
            "tiers[0][0].upstream"
        );
    }
}
