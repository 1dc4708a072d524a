//! The replicated configuration through the admin API: upstreams and
//! routes (client keys are in [`super::keys`], on the helpers here). Every change is checked against the applied state first
//! (the same `apply` the state machine runs), so an invalid change gets a
//! 4xx naming the field and nothing is proposed; a valid one is acknowledged
//! only after it is committed and applied on this node, so the next request
//! here already sees it. Reads are linearizable unless `?stale=true`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use proto::FieldError;
use proto::api::admin::WriteAck;
use proto::config::{RouteConfig, UpstreamConfig};
use proto::state::{ClusterState, Command, CommandResponse};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{AdminError, AdminState};
use crate::routing::check_upstream;
use crate::routing::routing_built_at;

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
}

/// `?stale=true` skips the linearizable read (for a node cut off from its leader).
#[derive(Deserialize)]
pub struct ReadMode {
    #[serde(default)]
    pub(super) stale: bool,
}

/// The applied state, after a linearizable read unless `stale`.
pub(super) async fn read(state: &AdminState, mode: &ReadMode) -> Result<ClusterState, AdminError> {
    if !mode.stale {
        state.cluster.linearizable().await?;
    }
    Ok(state.cluster.applied().state.clone())
}

pub(super) fn not_found(what: &'static str, name: String) -> AdminError {
    AdminError::NotFound { what, name }
}

async fn list_upstreams(
    State(state): State<AdminState>,
    Query(mode): Query<ReadMode>,
) -> Result<Response, AdminError> {
    let s = read(&state, &mode).await?;
    Ok(Json(s.upstreams.values().collect::<Vec<_>>()).into_response())
}

async fn get_upstream(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    Query(mode): Query<ReadMode>,
) -> Result<Response, AdminError> {
    let s = read(&state, &mode).await?;
    match s.upstreams.get(&id) {
        Some(u) => Ok(Json(u).into_response()),
        None => Err(not_found("upstream", id)),
    }
}

async fn put_upstream(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<WriteAck>, AdminError> {
    let upstream = parse::<UpstreamConfig>(body, "id", &id)?;
    // What only this node can check (its [secrets], its files), before
    // anything is proposed; a follower checks here too, then forwards.
    upstream
        .validate("upstream")
        .and_then(|()| check_upstream(&upstream, state.secrets.as_ref(), &state.trust.policy))
        .map_err(|e| AdminError::invalid(e.field, e.message))?;
    propose(&state, Command::PutUpstream(upstream)).await
}

async fn delete_upstream(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<WriteAck>, AdminError> {
    propose(&state, Command::DeleteUpstream { id }).await
}

async fn list_routes(
    State(state): State<AdminState>,
    Query(mode): Query<ReadMode>,
) -> Result<Response, AdminError> {
    let s = read(&state, &mode).await?;
    Ok(Json(s.routes.values().collect::<Vec<_>>()).into_response())
}

async fn get_route(
    State(state): State<AdminState>,
    Path(model): Path<String>,
    Query(mode): Query<ReadMode>,
) -> Result<Response, AdminError> {
    let s = read(&state, &mode).await?;
    match s.routes.get(&model) {
        Some(r) => Ok(Json(r).into_response()),
        None => Err(not_found("route", model)),
    }
}

async fn put_route(
    State(state): State<AdminState>,
    Path(model): Path<String>,
    body: Bytes,
) -> Result<Json<WriteAck>, AdminError> {
    let route = parse::<RouteConfig>(body, "model", &model)?;
    propose(&state, Command::PutRoute(route)).await
}

async fn delete_route(
    State(state): State<AdminState>,
    Path(model): Path<String>,
) -> Result<Json<WriteAck>, AdminError> {
    propose(&state, Command::DeleteRoute { model }).await
}

/// A JSON body as `T`, with the path's name filled in (or checked against
/// the body's), and serde's complaint turned into a 400 naming the field.
fn parse<T: DeserializeOwned>(body: Bytes, key: &str, name: &str) -> Result<T, AdminError> {
    let mut value = json_body(&body)?;
    let Some(object) = value.as_object_mut() else {
        return Err(AdminError::unusable("the body must be a JSON object"));
    };
    if let Some(Value::String(given)) = object.get(key)
        && given != name
    {
        let message = format!("`{key}` in the body ({given}) differs from the path ({name})");
        return Err(AdminError::invalid(key, message));
    }
    object.insert(key.to_owned(), Value::String(name.to_owned()));
    typed(value)
}

/// The body as JSON, whatever its content type says (curl's `-d` sends a form type).
fn json_body(body: &[u8]) -> Result<Value, AdminError> {
    serde_json::from_slice(body)
        .map_err(|e| AdminError::unusable(format!("the body is not JSON: {e}")))
}

pub(super) fn parse_value<T: DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    typed(json_body(body)?)
}

/// `value` as `T`; a mismatch names the field by its path in the body
/// (`tiers[0][1].input_per_mtok`), whatever kind of mismatch it is.
fn typed<T: DeserializeOwned>(value: Value) -> Result<T, AdminError> {
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
        AdminError::invalid(field, message)
    })
}

/// A delete that must not be proposed: 404 for a name the state does not
/// hold (nothing to do, so nothing goes into the log), 409 for the last
/// client key (without one the data plane would open on loopback).
fn refuse_delete(current: &ClusterState, command: &Command) -> Result<(), AdminError> {
    let (what, name, known) = match command {
        Command::DeleteUpstream { id } => ("upstream", id, current.upstreams.contains_key(id)),
        Command::DeleteRoute { model } => ("route", model, current.routes.contains_key(model)),
        Command::DeleteKey { name } => ("key", name, current.keys.contains_key(name)),
        _ => return Ok(()),
    };
    if !known {
        return Err(not_found(what, name.clone()));
    }
    if matches!(command, Command::DeleteKey { .. }) && current.keys.len() == 1 {
        return Err(AdminError::LastKey);
    }
    Ok(())
}

/// Whether `command` would apply to `current`: the refusals the admin API
/// gives before anything is proposed.
fn check(current: &ClusterState, command: &Command) -> Result<(), AdminError> {
    refuse_delete(current, command)?;
    let mut trial = current.clone();
    match trial.apply(command) {
        CommandResponse::Rejected(FieldError { field, message }) => {
            Err(AdminError::invalid(field, message))
        }
        CommandResponse::Applied { .. } => Ok(()),
    }
}

/// Checks a command against the applied state, proposes it, and answers
/// once it is committed and applied here.
pub(super) async fn propose(
    state: &AdminState,
    command: Command,
) -> Result<Json<WriteAck>, AdminError> {
    let (changed, applied_index) = commit(state, command).await?;
    Ok(Json(WriteAck {
        changed,
        applied_index,
    }))
}

/// Checks a command against the applied state, proposes it, and returns
/// once it is committed and applied here (whether it changed the state,
/// and the index this node applied it at): a read of the applied state
/// after it sees the change.
pub(super) async fn commit(
    state: &AdminState,
    command: Command,
) -> Result<(bool, Option<u64>), AdminError> {
    // Checked first against what this node applied, and proposed at once
    // when it passes: the state machine checks every command again at
    // apply, against the state in force, so a stale view here cannot let a
    // wrong change in (a write racing this one is caught there too). This
    // spares a write the read-index round to the leader, two round trips on
    // a WAN. A refusal is only given against a current state: when the
    // check fails here, a linearizable read brings this node up to date (a
    // change acknowledged a moment ago on another node counts) and the
    // check runs again.
    if check(&state.cluster.applied().state, &command).is_err() {
        state.cluster.linearizable().await?;
        check(&state.cluster.applied().state, &command)?;
    }
    let written = state.cluster.write_indexed(command).await?;
    match written.response {
        CommandResponse::Applied { changed } => {
            // Read your writes: this node applies the entry (committed at
            // `written.index`) and rebuilds its routing table before the
            // change is acknowledged.
            state.cluster.applied_at_least(written.index).await?;
            let index = state.cluster.applied().last_applied.map(|l| l.index);
            routing_built_at(
                &mut state.routing_built.clone(),
                index,
                Duration::from_secs(2),
            )
            .await;
            Ok((changed, index))
        }
        // Another change won a race between our check and the commit.
        CommandResponse::Rejected(FieldError { field, message }) => {
            Err(AdminError::Conflict { field, message })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    fn field(body: Value) -> String {
        let response = typed::<RouteConfig>(body)
            .map(|_| ())
            .unwrap_err()
            .into_response();
        let (_, _, body) = crate::admin::error::read(response);
        let v: Value = serde_json::from_slice(body.as_bytes()).unwrap();
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
