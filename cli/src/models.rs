//! `meridian models`: the model catalogue of any node, one line per model
//! as a client addresses it (`<upstream>/<model>`), whether the upstream's
//! configuration declares it or the leader discovered it, then per
//! discovering upstream when its list was applied and how its last fetch
//! on this node went.

use std::collections::BTreeSet;

use http::Method;
use proto::api::admin::CatalogueAnswer;

use super::admin_client::AdminClient;
use super::table::Table;
use super::{CliError, Printed};

/// Reads `GET /admin/v1/catalogue` from the node.
pub async fn models(client: &AdminClient) -> Result<Printed, CliError> {
    let answer = client
        .call_as::<CatalogueAnswer>(Method::GET, "/admin/v1/catalogue", None)
        .await?;
    Ok(Printed {
        text: catalogue_table(&answer.typed),
        json: answer.json,
    })
}

/// Renders the catalogue: a row per addressed model, then a line per
/// discovering upstream.
pub fn catalogue_table(answer: &CatalogueAnswer) -> String {
    let mut out = format!(
        "models, as node {} ({}) holds them\n",
        answer.node, answer.region
    );
    let mut table = Table::new(&["MODEL", "UPSTREAM", "SOURCE"]);
    for u in &answer.upstreams {
        let declared: BTreeSet<&str> = u.declared.iter().map(String::as_str).collect();
        let discovered: BTreeSet<&str> = u.discovered.iter().map(String::as_str).collect();
        for model in declared.union(&discovered) {
            let source = match (declared.contains(model), discovered.contains(model)) {
                (true, true) => "declared, discovered",
                (true, false) => "declared",
                _ => "discovered",
            };
            table.row(vec![
                format!("{}/{model}", u.id),
                u.id.clone(),
                source.to_owned(),
            ]);
        }
    }
    if table.is_empty() {
        out.push_str("(no models declared or discovered)\n");
    } else {
        out.push_str(&table.render());
    }
    for u in answer.upstreams.iter().filter(|u| u.discover) {
        let applied = match u.applied_unix_ms {
            Some(ms) => format!("{} models applied at {}", u.discovered.len(), unix_ms(ms)),
            None => "no list applied yet".to_owned(),
        };
        let fetch = match &u.last_fetch {
            None => String::new(),
            Some(f) if f.ok => format!("; last fetch here at {}: ok", unix_ms(f.at_unix_ms)),
            Some(f) => format!(
                "; last fetch here at {} failed: {}",
                unix_ms(f.at_unix_ms),
                f.error.as_deref().unwrap_or("unknown")
            ),
        };
        out.push_str(&format!("{}: discovers; {applied}{fetch}\n", u.id));
    }
    out
}

/// A Unix time in milliseconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn unix_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = proto::calendar::civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    #[test]
    fn the_table_addresses_each_model_and_says_where_it_came_from() {
        let answer: CatalogueAnswer = serde_json::from_value(json!({
            "node": 1, "region": "us",
            "upstreams": [
                {"id": "deepseek", "discover": true, "declared": ["deepseek-chat"],
                 "discovered": ["deepseek-chat", "deepseek-reasoner"], "applied_unix_ms": 1_764_500_000_000u64,
                 "last_fetch": {"at_unix_ms": 1_764_500_600_000u64, "ok": false, "models": 0, "error": "the model list answered HTTP 503"}},
                {"id": "mock", "discover": false, "declared": [], "discovered": []}
            ]
        }))
        .unwrap();
        let t = catalogue_table(&answer);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].starts_with("MODEL"), "{t}");
        assert!(
            lines[2].starts_with("deepseek/deepseek-chat")
                && lines[2].ends_with("declared, discovered"),
            "{t}"
        );
        assert!(
            lines[3].starts_with("deepseek/deepseek-reasoner") && lines[3].ends_with("discovered"),
            "{t}"
        );
        assert!(
            t.contains("deepseek: discovers; 2 models applied at 2025-11-30T10:53:20Z; last fetch here at 2025-11-30T11:03:20Z failed: the model list answered HTTP 503"),
            "{t}"
        );
        assert!(!t.contains("mock"), "{t}");
    }
}
