//! Top-ups: `POST /admin/v1/keys/{name}/credits {"add_usd": 10, "id": "…"}`.
//! The id is the caller's, so a top-up retried after a lost answer (or sent
//! to two nodes) counts once. The answer comes after the top-up is
//! committed and applied on this node, with the balance read from the
//! applied state: an acknowledged top-up survives any node's loss.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use proto::api::tenants::{AddCredits, CreditsAdded, CreditsView};
use proto::state::Command;
use proto::tenancy::{check_token, usd_to_nanos};

use super::config::{commit, not_found, parse_value};
use super::{AdminError, AdminState};

/// The most characters a top-up id may have (as the ledger keeps them).
const MAX_ID: usize = 128;

/// The credits route.
pub fn routes() -> Router<AdminState> {
    Router::new().route("/admin/v1/keys/{name}/credits", post(add_credits))
}

/// The amount in nanodollars, or a 400 naming `add_usd`: more than zero
/// (NaN is not), at most [`proto::tenancy::MAX_CREDITS_USD`], and at least
/// a nanodollar once rounded.
fn amount(usd: f64) -> Result<u64, AdminError> {
    // NaN is neither above nor at or below zero: refused here too.
    if usd.is_nan() || usd <= 0.0 {
        return Err(AdminError::invalid(
            "add_usd",
            "must be more than 0 US dollars",
        ));
    }
    match usd_to_nanos(usd) {
        Ok(0) => Err(AdminError::invalid(
            "add_usd",
            "must be at least one nanodollar (1e-9)",
        )),
        Ok(nanos) => Ok(nanos),
        Err(message) => Err(AdminError::invalid("add_usd", message)),
    }
}

async fn add_credits(
    State(state): State<AdminState>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<CreditsAdded>, AdminError> {
    let body: AddCredits = parse_value(&body)?;
    let nanos = amount(body.add_usd)?;
    check_token("id", &body.id, MAX_ID).map_err(|e| AdminError::invalid(e.field, e.message))?;
    // An unknown key is a 404 before anything is proposed (the state
    // machine would refuse it too, as a 409 after a round to the leader),
    // and only after a linearizable read: a key made a moment ago on
    // another node counts.
    let known = |state: &AdminState| state.cluster.applied().state.keys.contains_key(&key);
    if !known(&state) {
        state.cluster.linearizable().await?;
        if !known(&state) {
            return Err(not_found("key", key));
        }
    }
    let command = Command::AddCredits {
        key: key.clone(),
        id: body.id,
        nanos,
    };
    let (applied, _) = commit(&state, command).await?;
    let credits = state
        .cluster
        .applied()
        .state
        .tenancy
        .credits
        .get(&key)
        .map(CreditsView::from)
        .unwrap_or_default();
    Ok(Json(CreditsAdded {
        key,
        applied,
        balance_usd: credits.balance_usd,
        added_usd: credits.added_usd,
        spent_usd: credits.spent_usd,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn an_amount_is_positive_finite_and_bounded() {
        assert_eq!(amount(10.0).unwrap(), 10_000_000_000);
        assert_eq!(amount(0.000_000_001).unwrap(), 1);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300, 1e9 + 1.0, 1e-12] {
            assert!(amount(bad).is_err(), "{bad}");
        }
    }
}
