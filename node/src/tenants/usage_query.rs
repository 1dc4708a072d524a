//! The usage answer's parameters and body, shared by a key's own
//! `GET /v1/usage` and (by shape) the admin API's `GET /admin/v1/usage`:
//! `{"by":"day","from":..,"to":..,"rows":[{"key","day",..,"cost_usd"}]}`,
//! the group field named after `by`.

use std::collections::BTreeMap;

use proto::tenancy::query::{GroupBy, UsageQuery, date_to_day, usage};
use proto::tenancy::{Counters, UsageBucket, nanos_to_usd};
use serde_json::{Value, json};

/// `from`, `to` and `by`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageParams {
    /// First day, as asked (`YYYY-MM-DD`).
    pub from: Option<String>,
    /// Last day, as asked.
    pub to: Option<String>,
    /// The grouping.
    pub by: GroupBy,
    /// The key asked for (admin only).
    pub key: Option<String>,
}

impl UsageParams {
    /// Parses a query string; `allow_key`: whether `key=` may be given.
    /// A bad or unknown parameter is named: `(param, message)`.
    pub fn parse(query: &str, allow_key: bool) -> Result<Self, (&'static str, String)> {
        let mut p = Self::default();
        for pair in query.split('&').filter(|s| !s.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "from" | "to" => {
                    let field = if name == "from" { "from" } else { "to" };
                    if date_to_day(value).is_none() {
                        return Err((field, format!("`{field}` must be a date as YYYY-MM-DD")));
                    }
                    let slot = if name == "from" {
                        &mut p.from
                    } else {
                        &mut p.to
                    };
                    *slot = Some(value.to_owned());
                }
                "by" => {
                    p.by = match value {
                        "day" => GroupBy::Day,
                        "model" => GroupBy::Model,
                        "upstream" => GroupBy::Upstream,
                        _ => return Err(("by", "`by` must be day, model or upstream".into())),
                    }
                }
                "key" if allow_key => p.key = Some(value.to_owned()),
                "key" => {
                    return Err((
                        "key",
                        "`key` is not accepted: a client key reads its own usage only".into(),
                    ));
                }
                other => {
                    let shown: String = other.chars().take(64).collect();
                    return Err((
                        "query",
                        format!("unknown parameter `{shown}`: use from, to and by"),
                    ));
                }
            }
        }
        Ok(p)
    }

    /// The answer over `cells`, for `key` (else the asked key, else all).
    pub fn answer(&self, cells: &BTreeMap<UsageBucket, Counters>, key: Option<&str>) -> Value {
        let q = UsageQuery {
            key: key.map(str::to_owned).or_else(|| self.key.clone()),
            from: self.from.as_deref().and_then(date_to_day),
            to: self.to.as_deref().and_then(date_to_day),
            by: self.by,
        };
        let group = match self.by {
            GroupBy::Day => "day",
            GroupBy::Model => "model",
            GroupBy::Upstream => "upstream",
        };
        let rows: Vec<Value> = usage(cells, &q)
            .into_iter()
            .map(|row| {
                json!({
                    "key": row.key,
                    group: row.group,
                    "requests": row.counters.requests,
                    "input_tokens": row.counters.input_tokens,
                    "output_tokens": row.counters.output_tokens,
                    "cost_usd": nanos_to_usd(i128::from(row.counters.cost_nanos)),
                })
            })
            .collect();
        json!({ "by": group, "from": self.from, "to": self.to, "rows": rows })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn parameters_are_checked_and_named() {
        let p = UsageParams::parse("from=2026-11-01&to=2026-11-30&by=model", false).unwrap();
        assert_eq!(p.by, GroupBy::Model);
        assert_eq!(p.from.as_deref(), Some("2026-11-01"));
        assert_eq!(UsageParams::parse("key=other", false).unwrap_err().0, "key");
        assert_eq!(
            UsageParams::parse("key=a", true).unwrap().key.as_deref(),
            Some("a")
        );
        assert_eq!(
            UsageParams::parse("from=2026-13-01", false).unwrap_err().0,
            "from"
        );
        assert_eq!(UsageParams::parse("by=week", false).unwrap_err().0, "by");
        assert_eq!(UsageParams::parse("x=1", false).unwrap_err().0, "query");
    }

    #[test]
    fn rows_are_named_after_the_grouping() {
        let cells = BTreeMap::from([(
            UsageBucket {
                key: "acme".into(),
                day: 20_787,
                model: "fast".into(),
                upstream: "a".into(),
            },
            Counters {
                requests: 2,
                input_tokens: 10,
                output_tokens: 4,
                cost_nanos: 1_500_000_000,
            },
        )]);
        let body = UsageParams::default().answer(&cells, Some("acme"));
        assert_eq!(body["by"], "day");
        assert_eq!(body["rows"][0]["day"], "2026-11-30");
        assert_eq!(body["rows"][0]["cost_usd"], 1.5);
        assert_eq!(
            UsageParams::default().answer(&cells, Some("other"))["rows"],
            json!([])
        );
    }
}
