//! Client keys through the admin API: each with its limits (models, rpm,
//! tpm, opening credits, class) and, once its ledger is open, its balance.
//! A key is hashed on arrival and neither it nor its hash is ever answered
//! or logged. A limit that cannot be used is a 400 naming its field, and
//! nothing is proposed.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use proto::api::admin::WriteAck;
use proto::api::tenants::KeyView;
use proto::config::check_secret_strength;
use proto::state::{ClusterState, Command, KeyRecord};
use proto::tenancy::KeyLimits;
use serde::Deserialize;

use super::config::{ReadMode, not_found, parse_value, propose, read};
use super::{AdminError, AdminState};
use crate::auth::hash_key;
use crate::cluster::hex;

/// The key routes (top-ups are in [`super::credits`]).
pub fn routes() -> Router<AdminState> {
    Router::new().route("/admin/v1/keys", get(list_keys)).route(
        "/admin/v1/keys/{name}",
        get(get_key).put(put_key).delete(delete_key),
    )
}

fn view(s: &ClusterState, record: &KeyRecord) -> KeyView {
    KeyView::new(
        &record.name,
        &record.limits,
        s.tenancy.credits.get(&record.name),
    )
}

async fn list_keys(
    State(state): State<AdminState>,
    Query(mode): Query<ReadMode>,
) -> Result<Json<Vec<KeyView>>, AdminError> {
    let s = read(&state, &mode).await?;
    // Names, limits and balances: not even the hash leaves the node.
    Ok(Json(s.keys.values().map(|k| view(&s, k)).collect()))
}

async fn get_key(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(mode): Query<ReadMode>,
) -> Result<Json<KeyView>, AdminError> {
    let s = read(&state, &mode).await?;
    match s.keys.get(&name) {
        Some(k) => Ok(Json(view(&s, k))),
        None => Err(not_found("key", name)),
    }
}

/// The body of `PUT /admin/v1/keys/{name}`: the key itself (hashed on
/// arrival, never stored or logged) or its SHA-256 in hex, and its limits,
/// each optional, as in the file's `[[keys]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    key: Option<String>,
    sha256: Option<String>,
    models: Option<Vec<String>>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    credits_usd: Option<f64>,
    class: Option<String>,
}

impl KeyBody {
    /// The limits, or a 400 naming the field at fault (as the body names it).
    fn limits(&self) -> Result<KeyLimits, AdminError> {
        KeyLimits::from_dollars(
            self.models.clone(),
            self.rpm,
            self.tpm,
            self.credits_usd,
            self.class.clone(),
        )
        .map_err(|e| AdminError::invalid(e.field, e.message))
    }
}

async fn put_key(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<WriteAck>, AdminError> {
    let body: KeyBody = parse_value(&body)?;
    let limits = body.limits()?;
    let sha256 = match (body.key, body.sha256) {
        (Some(key), None) => {
            check_secret_strength("key", "the key", &key)
                .map_err(|e| AdminError::invalid("key", e.message))?;
            hex(&hash_key(key.trim()))
        }
        (None, Some(hash)) => hash.to_ascii_lowercase(),
        _ => {
            return Err(AdminError::invalid(
                "key",
                "give exactly one of `key` or `sha256`",
            ));
        }
    };
    propose(
        &state,
        Command::PutKey(KeyRecord {
            name,
            sha256,
            limits,
        }),
    )
    .await
}

async fn delete_key(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<WriteAck>, AdminError> {
    propose(&state, Command::DeleteKey { name }).await
}
