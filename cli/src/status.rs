//! `meridian status`: the cluster and the health board of any node, in one
//! screen: members and leader, then per upstream this node's circuit,
//! in-flight, p99 and error rate, and the p99 every region reported.

use std::collections::BTreeSet;

use http::Method;
use proto::api::admin::{ClassSla, ClusterView, HealthAnswer, KeyStatus, Quantiles};
use serde_json::json;

use super::admin_client::AdminClient;
use super::members;
use super::table::{Table, ms};
use super::{CliError, Printed};

/// Reads `GET /admin/v1/cluster` and `GET /admin/v1/health` from the node.
pub async fn status(client: &AdminClient) -> Result<Printed, CliError> {
    let cluster = client
        .call_as::<ClusterView>(Method::GET, "/admin/v1/cluster", None)
        .await?;
    let health = client
        .call_as::<HealthAnswer>(Method::GET, "/admin/v1/health", None)
        .await?;
    let text = format!(
        "{}\n{}",
        members::table(&cluster.typed),
        health_table(&health.typed)
    );
    Ok(Printed {
        json: json!({ "cluster": cluster.json, "health": health.json }),
        text,
    })
}

/// A p99 of time to first byte, when it has samples.
fn p99(ttfb: &Quantiles) -> Option<f64> {
    (ttfb.count > 0).then_some(ttfb.p99)
}

/// Renders `GET /admin/v1/health`: one row per upstream with this node's
/// own figures, then the p99 of time to first byte each region reported
/// and the cluster's merged one.
pub fn health_table(health: &HealthAnswer) -> String {
    let upstreams = &health.upstreams;
    let regions: BTreeSet<&str> = upstreams
        .iter()
        .flat_map(|u| u.shared.regions.keys().map(String::as_str))
        .collect();
    let window_s = upstreams
        .first()
        .map_or_else(String::new, |u| format!(", last {} s", u.window.window_s));
    let mut out = format!(
        "upstreams, as node {} ({}) sees them{window_s}; P99 is time to first byte\n",
        health.node, health.region,
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
    for u in upstreams {
        let w = &u.window;
        let key = match &u.key {
            KeyStatus::NotNeeded => "not needed",
            KeyStatus::Present => "present",
            KeyStatus::Missing(_) => "missing",
        };
        let mut row = vec![
            u.id.clone(),
            u.region.clone(),
            if u.cooldown_ms > 0 {
                // Cooled by a provider's Retry-After: skipped like an open circuit.
                format!("cooled {:.1} s", u.cooldown_ms as f64 / 1_000.0)
            } else {
                u.circuit.as_str().replace('_', "-")
            },
            key.to_owned(),
            u.in_flight.to_string(),
            w.attempts.to_string(),
            if w.attempts > 0 {
                format!("{:.1}%", w.error_rate * 100.0)
            } else {
                "-".to_owned()
            },
            ms(p99(&w.ttfb_ms)),
        ];
        for region in &regions {
            row.push(ms(u
                .shared
                .regions
                .get(*region)
                .and_then(|v| p99(&v.ttfb_ms))));
        }
        row.push(ms(p99(&u.shared.merged.ttfb_ms)));
        table.row(row);
    }
    if table.is_empty() {
        out.push_str("(no upstreams)\n");
    } else {
        out.push_str(&table.render());
    }
    let stale: Vec<String> = health
        .reports
        .iter()
        .filter(|(_, r)| r.stale)
        .map(|(id, r)| format!("{id} ({})", r.region))
        .collect();
    out.push_str(&classes_table(&health.classes));
    out.push_str(&format!(
        "health reports from {} members{}\n",
        health.reports.len(),
        if stale.is_empty() {
            String::new()
        } else {
            format!("; stale (not counted): {}", stale.join(", "))
        }
    ));
    out
}

/// Each priority class's service level over the window against its
/// objective; nothing when no classes are configured.
pub fn classes_table(classes: &[ClassSla]) -> String {
    if classes.is_empty() {
        return String::new();
    }
    let headers = ["CLASS", "REQUESTS", "SUCCESS", "P99", "SLO", "BUDGET LEFT"];
    let mut table = Table::new(&headers).right_align(&[1, 2, 3, 5]);
    for c in classes {
        let slo = c.slo.map_or_else(
            || "-".to_owned(),
            |slo| {
                // 0.999 reads 99.9%, without the float's tail.
                let pct = format!("{:.4}", slo.success * 100.0);
                let pct = pct.trim_end_matches('0').trim_end_matches('.');
                match slo.p99_ms {
                    Some(p99) => format!("{pct}%, p99 {p99} ms"),
                    None => format!("{pct}%"),
                }
            },
        );
        table.row(vec![
            c.name.clone(),
            c.requests.to_string(),
            format!("{:.2}%", c.success_ratio * 100.0),
            ms(c.p99_ms),
            slo,
            c.error_budget_left
                .map_or_else(|| "-".to_owned(), |left| format!("{:.0}%", left * 100.0)),
        ]);
    }
    format!(
        "priority classes on this node, over the same window\n{}",
        table.render()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_health_table_has_a_p99_column_per_region() {
        let view = |p99: f64, count: u64| json!({"ttfb_ms": {"count": count, "p99": p99}});
        let health: HealthAnswer = serde_json::from_value(json!({
            "node": 2, "region": "eu",
            "upstreams": [{
                "id": "alpha", "region": "us", "base_url": "http://127.0.0.1:4001/v1", "disabled": null, "circuit": "half_open", "key": "not_needed",
                "in_flight": 3,
                "window": {"window_s": 30, "attempts": 40, "error_rate": 0.025, "ttfb_ms": {"count": 40, "p99": 81.4}},
                "regions": {"eu": view(81.4, 40), "us": view(420.0, 12)},
                "merged": view(400.0, 52)
            }, {
                "id": "bravo", "region": "eu", "base_url": "https://api.openai.com/v1", "disabled": null, "circuit": "open", "key": {"missing": "OPENAI_API_KEY is not set"},
                "in_flight": 0,
                "window": {"window_s": 30, "attempts": 0, "error_rate": 0.0, "ttfb_ms": {"count": 0, "p99": 0.0}},
                "regions": {}, "merged": view(0.0, 0)
            }],
            "reports": {"1": {"region": "us", "stale": true}, "2": {"region": "eu", "stale": false}}
        }))
        .unwrap();
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
        assert!(!t.contains("priority classes"), "{t}");
    }

    #[test]
    fn classes_show_their_service_against_the_objective_and_cooled_upstreams_say_so() {
        let health: HealthAnswer = serde_json::from_value(json!({
            "node": 1, "region": "us",
            "upstreams": [{
                "id": "alpha", "region": "us", "base_url": "http://127.0.0.1:4001/v1", "disabled": null, "circuit": "closed", "key": "not_needed",
                "in_flight": 0, "cooldown_ms": 4200,
                "window": {"window_s": 30, "attempts": 1, "error_rate": 1.0, "ttfb_ms": {"count": 0, "p99": 0.0}},
                "regions": {}, "merged": {"ttfb_ms": {"count": 0, "p99": 0.0}}
            }],
            "reports": {},
            "classes": [
                {"name": "pro", "requests": 1000, "success_ratio": 0.9995, "p99_ms": 812.0,
                 "slo": {"success": 0.999, "p99_ms": 2000}, "error_budget_left": 0.5},
                {"name": "free", "requests": 0, "success_ratio": 1.0, "p99_ms": null,
                 "slo": null, "error_budget_left": null}
            ]
        }))
        .unwrap();
        let t = health_table(&health);
        assert!(t.contains("cooled 4.2 s"), "{t}");
        let pro = t.lines().find(|l| l.starts_with("pro")).unwrap();
        for part in ["1000", "99.95%", "812 ms", "99.9%, p99 2000 ms", "50%"] {
            assert!(pro.contains(part), "{part} in {pro}");
        }
        let free = t.lines().find(|l| l.starts_with("free")).unwrap();
        assert!(free.trim_end().ends_with('-'), "{free}");
    }
}
