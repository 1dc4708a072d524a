//! `GET /admin/v1/usage?key=&from=&to=&by=day|model|upstream`: the
//! replicated usage ledger's totals per key, over a range of days, grouped
//! by day, model or upstream. Any node answers the same (after a
//! linearizable read, unless `stale=true`); a parameter it cannot use is a
//! 400 naming it.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use proto::api::tenants::{UsageAnswer, usage_query};
use proto::tenancy::query::usage;

use super::config::{ReadMode, read};
use super::{AdminError, AdminState};

/// The usage route.
pub fn routes() -> Router<AdminState> {
    Router::new().route("/admin/v1/usage", get(usage_answer))
}

async fn usage_answer(
    State(state): State<AdminState>,
    Query(mut params): Query<BTreeMap<String, String>>,
) -> Result<Json<UsageAnswer>, AdminError> {
    let stale = match params.remove("stale").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(AdminError::invalid("stale", "must be true or false")),
    };
    let query = usage_query(&params, true).map_err(|e| AdminError::invalid(e.field, e.message))?;
    let s = read(&state, &ReadMode { stale }).await?;
    let rows = usage(&s.tenancy.usage, &query);
    Ok(Json(UsageAnswer::new(&query, rows)))
}
