//! `meridian status`: the cluster and the health board of any node, in one
//! screen: members and leader, then per upstream this node's circuit,
//! in-flight, p99 and error rate, and the p99 every region reported.

use std::collections::BTreeSet;

use http::Method;
use serde_json::{Value, json};

use super::admin_client::{AdminClient, AdminError};
use super::members;
use super::table::{Table, cell, ms};
use super::{CliError, Printed};

/// Reads `GET /admin/v1/cluster` and `GET /admin/v1/health` from the node.
pub async fn status(client: &AdminClient) -> Result<Printed, CliError> {
    let cluster = client.call(Method::GET, "/admin/v1/cluster", None).await?;
    let health = health(client).await?;
    let text = format!("{}\n{}", members::table(&cluster), health_table(&health));
    Ok(Printed {
        json: json!({ "cluster": cluster, "health": health }),
        text,
    })
}

async fn health(client: &AdminClient) -> Result<Value, AdminError> {
    client.call(Method::GET, "/admin/v1/health", None).await
}

/// A p99 figure of a view (`window`, a region's, `merged`), when it has samples.
fn p99(view: &Value) -> Option<f64> {
    let q = &view["ttfb_ms"];
    (q["count"].as_u64().unwrap_or(0) > 0)
        .then(|| q["p99"].as_f64())
        .flatten()
}

/// Renders `GET /admin/v1/health`: one row per upstream with this node's
/// own figures, then the p99 of time to first byte each region reported
/// and the cluster's merged one.
pub fn health_table(health: &Value) -> String {
    let upstreams: Vec<&Value> = health["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let regions: BTreeSet<&str> = upstreams
        .iter()
        .filter_map(|u| u["regions"].as_object())
        .flat_map(|r| r.keys().map(String::as_str))
        .collect();
    let window_s = upstreams
        .first()
        .and_then(|u| u["window"]["window_s"].as_u64())
        .map_or_else(String::new, |s| format!(", last {s} s"));
    let mut out = format!(
        "upstreams, as node {} ({}) sees them{window_s}; P99 is time to first byte\n",
        cell(&health["node"]),
        cell(&health["region"]),
    );
    let mut headers: Vec<String> = [
        "UPSTREAM",
        "REGION",
        "CIRCUIT",
        "KEY",
        "IN-FLIGHT",
        "ATTEMPTS",
        "ERRORS",
        "P99 HERE",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    headers.extend(regions.iter().map(|r| format!("P99 {r}")));
    headers.push("P99 ALL".to_owned());
    let numeric: Vec<usize> = (4..headers.len()).collect();
    let mut table = Table::new(&headers).right_align(&numeric);
    for u in &upstreams {
        let w = &u["window"];
        let key = match &u["key"] {
            Value::String(s) => s.replace('_', " "),
            Value::Object(o) if o.contains_key("missing") => "missing".to_owned(),
            other => cell(other),
        };
        let mut row = vec![
            cell(&u["id"]),
            cell(&u["region"]),
            cell(&u["circuit"]).replace('_', "-"),
            key,
            cell(&u["in_flight"]),
            cell(&w["attempts"]),
            match w["error_rate"].as_f64() {
                Some(r) if w["attempts"].as_u64().unwrap_or(0) > 0 => {
                    format!("{:.1}%", r * 100.0)
                }
                _ => "-".to_owned(),
            },
            ms(p99(w)),
        ];
        for region in &regions {
            row.push(ms(p99(&u["regions"][*region])));
        }
        row.push(ms(p99(&u["merged"])));
        table.row(row);
    }
    if table.is_empty() {
        out.push_str("(no upstreams)\n");
    } else {
        out.push_str(&table.render());
    }
    let reports = health["reports"].as_object();
    let stale: Vec<String> = reports
        .into_iter()
        .flatten()
        .filter(|(_, r)| r["stale"].as_bool() == Some(true))
        .map(|(id, r)| format!("{id} ({})", cell(&r["region"])))
        .collect();
    out.push_str(&format!(
        "health reports from {} members{}\n",
        reports.map_or(0, |r| r.len()),
        if stale.is_empty() {
            String::new()
        } else {
            format!("; stale (not counted): {}", stale.join(", "))
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_health_table_has_a_p99_column_per_region() {
        let view = |p99: f64, count: u64| json!({"ttfb_ms": {"count": count, "p99": p99}});
        let health = json!({
            "node": 2, "region": "eu",
            "upstreams": [{
                "id": "alpha", "region": "us", "circuit": "half_open", "key": "not_needed",
                "in_flight": 3,
                "window": {"window_s": 30, "attempts": 40, "error_rate": 0.025, "ttfb_ms": {"count": 40, "p99": 81.4}},
                "regions": {"eu": view(81.4, 40), "us": view(420.0, 12)},
                "merged": view(400.0, 52)
            }, {
                "id": "bravo", "region": "eu", "circuit": "open", "key": {"missing": "OPENAI_API_KEY is not set"},
                "in_flight": 0,
                "window": {"window_s": 30, "attempts": 0, "error_rate": 0.0, "ttfb_ms": {"count": 0, "p99": 0.0}},
                "regions": {}, "merged": view(0.0, 0)
            }],
            "reports": {"1": {"region": "us", "stale": true}, "2": {"region": "eu", "stale": false}}
        });
        let t = health_table(&health);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[1].contains("P99 HERE")
                && lines[1].contains("P99 eu")
                && lines[1].ends_with("P99 ALL"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("alpha")
                && lines[2].contains("half-open")
                && lines[2].contains("2.5%"),
            "{t}"
        );
        assert!(
            lines[2].contains("420 ms") && lines[2].trim_end().ends_with("400 ms"),
            "{t}"
        );
        assert!(
            lines[3].contains("open") && lines[3].contains("missing") && lines[3].ends_with('-'),
            "{t}"
        );
        assert!(t.contains("stale (not counted): 1 (us)"), "{t}");
    }
}
