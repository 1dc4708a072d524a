//! The tenants' answers and request bodies: a key with its limits and its
//! balance (`GET /admin/v1/keys`), a top-up (`POST
//! /admin/v1/keys/{name}/credits`) and the usage ledger (`GET
//! /admin/v1/usage`, and a key's own `GET /v1/usage`, which answers the
//! same body).
//!
//! Money travels as US dollars (`*_usd`, a JSON number) on the wire and as
//! integer nanodollars inside ([`crate::tenancy::NANOS_PER_USD`]); the
//! conversion is here, in one place.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::tenancy::query::{GroupBy, UsageQuery, UsageRow, date_to_day, day_to_date};
use crate::tenancy::{Credits, KeyLimits, nanos_to_usd};

/// A client key as the admin API shows it: its name, its limits and its
/// balance. Never the key, nor its hash. A limit that is absent (no limit)
/// is left out, so a key without limits reads `{"name":"ci"}` as before.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyView {
    /// Its holder's name.
    pub name: String,
    /// The models it may call (globs); absent: every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Requests per minute, cluster-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute, cluster-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// The opening balance its record was put with, in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits_usd: Option<f64>,
    /// Its priority class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Its ledger, once one is open (the key was put with `credits_usd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<CreditsView>,
}

impl KeyView {
    /// The view of a key named `name` with `limits` and, if open, its ledger.
    pub fn new(name: &str, limits: &KeyLimits, credits: Option<&Credits>) -> Self {
        Self {
            name: name.to_owned(),
            models: limits.models.clone(),
            rpm: limits.rpm,
            tpm: limits.tpm,
            credits_usd: limits.credits_nanos.map(|n| nanos_to_usd(i128::from(n))),
            class: limits.class.clone(),
            credits: credits.map(CreditsView::from),
        }
    }
}

/// A key's prepaid balance, in US dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreditsView {
    /// What is left: added minus spent (below zero by at most what was in
    /// flight when it ran out).
    pub balance_usd: f64,
    /// The opening balance plus every top-up.
    pub added_usd: f64,
    /// Every answer's cost since the ledger opened.
    pub spent_usd: f64,
}

impl From<&Credits> for CreditsView {
    fn from(c: &Credits) -> Self {
        Self {
            balance_usd: nanos_to_usd(c.balance_nanos()),
            added_usd: nanos_to_usd(i128::from(c.added_nanos)),
            spent_usd: nanos_to_usd(i128::from(c.spent_nanos)),
        }
    }
}

/// The body of `POST /admin/v1/keys/{name}/credits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddCredits {
    /// The amount to add, in US dollars: more than 0, at most
    /// [`crate::tenancy::MAX_CREDITS_USD`].
    pub add_usd: f64,
    /// Chosen by the caller, 1 to 128 of `A-Z a-z 0-9 - _ . :`: the same
    /// id again counts once, so a top-up can be retried safely.
    pub id: String,
}

/// The answer to a top-up, once it is committed and applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreditsAdded {
    /// The key topped up.
    pub key: String,
    /// False when a top-up with that id was counted before (a retry).
    pub applied: bool,
    /// The balance after it.
    #[serde(default)]
    pub balance_usd: f64,
    /// Everything added so far.
    #[serde(default)]
    pub added_usd: f64,
    /// Everything spent so far.
    #[serde(default)]
    pub spent_usd: f64,
}

/// `GET /admin/v1/usage` and `GET /v1/usage`: the usage ledger's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageAnswer {
    /// What the rows are grouped by.
    pub by: GroupBy,
    /// The first day asked for (`YYYY-MM-DD`); `null`: from the first.
    pub from: Option<String>,
    /// The last day asked for; `null`: up to the newest.
    pub to: Option<String>,
    /// One row per key and group, ordered by key then group.
    pub rows: Vec<UsageRowView>,
}

impl UsageAnswer {
    /// The answer to `query`, from the rows [`crate::tenancy::query::usage`] read.
    pub fn new(query: &UsageQuery, rows: Vec<UsageRow>) -> Self {
        Self {
            by: query.by,
            from: query.from.map(day_to_date),
            to: query.to.map(day_to_date),
            rows: rows
                .into_iter()
                .map(|row| UsageRowView::new(query.by, row))
                .collect(),
        }
    }
}

/// One row of a [`UsageAnswer`]; exactly one of `day`, `model` and
/// `upstream` is present, after what the answer is grouped by.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageRowView {
    /// The key holder's name.
    pub key: String,
    /// The day, `YYYY-MM-DD` (grouped by day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// The model as clients named it (grouped by model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The upstream that answered (grouped by upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Answered requests.
    #[serde(default)]
    pub requests: u64,
    /// Input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Cost at the catalogue's prices, in US dollars.
    #[serde(default)]
    pub cost_usd: f64,
}

impl UsageRowView {
    fn new(by: GroupBy, row: UsageRow) -> Self {
        let group = Some(row.group);
        let (day, model, upstream) = match by {
            GroupBy::Day => (group, None, None),
            GroupBy::Model => (None, group, None),
            GroupBy::Upstream => (None, None, group),
        };
        Self {
            key: row.key,
            day,
            model,
            upstream,
            requests: row.counters.requests,
            input_tokens: row.counters.input_tokens,
            output_tokens: row.counters.output_tokens,
            cost_usd: nanos_to_usd(i128::from(row.counters.cost_nanos)),
        }
    }
}

/// The longest key name a usage query may ask for (as a key record's).
const MAX_KEY_NAME: usize = 64;

/// A usage query from its URL parameters (`key`, `from`, `to`, `by`),
/// naming the parameter at fault. `key` is refused unless `allow_key` (a
/// client key reads its own usage only); any other parameter is refused, so
/// a misspelt `form=` is not silently read as "from the first day".
pub fn usage_query(
    params: &BTreeMap<String, String>,
    allow_key: bool,
) -> Result<UsageQuery, FieldError> {
    let mut query = UsageQuery::default();
    for (name, value) in params {
        match name.as_str() {
            "key" if allow_key => {
                if value.is_empty() || value.len() > MAX_KEY_NAME {
                    return Err(FieldError::new(
                        "key",
                        format!("must be 1 to {MAX_KEY_NAME} characters"),
                    ));
                }
                query.key = Some(value.clone());
            }
            "key" => {
                return Err(FieldError::new(
                    "key",
                    "a client key reads its own usage only: leave `key` out",
                ));
            }
            "from" | "to" => {
                let day = date_to_day(value).ok_or_else(|| {
                    FieldError::new(
                        name.as_str(),
                        format!(
                            "`{}` is not a date YYYY-MM-DD from 1970 on",
                            value.escape_debug()
                        ),
                    )
                })?;
                if name == "from" {
                    query.from = Some(day);
                } else {
                    query.to = Some(day);
                }
            }
            "by" => {
                query.by = match value.as_str() {
                    "day" => GroupBy::Day,
                    "model" => GroupBy::Model,
                    "upstream" => GroupBy::Upstream,
                    other => {
                        return Err(FieldError::new(
                            "by",
                            format!(
                                "`{}` is not one of day, model, upstream",
                                other.escape_debug()
                            ),
                        ));
                    }
                };
            }
            other => {
                let known = if allow_key {
                    "key, from, to, by"
                } else {
                    "from, to, by"
                };
                return Err(FieldError::new(
                    other,
                    format!("unknown parameter; the parameters are {known}"),
                ));
            }
        }
    }
    if let (Some(from), Some(to)) = (query.from, query.to)
        && from > to
    {
        return Err(FieldError::new("from", "must not be after `to`"));
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::tenancy::{Counters, NANOS_PER_USD};

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_key_without_limits_reads_as_before() {
        let view = KeyView::new("ci", &KeyLimits::default(), None);
        assert_eq!(serde_json::to_string(&view).unwrap(), r#"{"name":"ci"}"#);
        let limits = KeyLimits {
            models: Some(vec!["fast".into()]),
            rpm: Some(60),
            tpm: None,
            credits_nanos: Some(25 * NANOS_PER_USD),
            class: Some("pro".into()),
        };
        let credits = Credits {
            added_nanos: 30 * NANOS_PER_USD,
            spent_nanos: NANOS_PER_USD / 2,
            topups: Default::default(),
        };
        let view = KeyView::new("acme", &limits, Some(&credits));
        let text = serde_json::to_string(&view).unwrap();
        assert_eq!(
            text,
            r#"{"name":"acme","models":["fast"],"rpm":60,"credits_usd":25.0,"class":"pro","credits":{"balance_usd":29.5,"added_usd":30.0,"spent_usd":0.5}}"#
        );
        assert_eq!(serde_json::from_str::<KeyView>(&text).unwrap(), view);
    }

    #[test]
    fn answers_round_trip_byte_for_byte() {
        fn same<T: Serialize + serde::de::DeserializeOwned>(literal: &str) {
            let parsed: T = serde_json::from_str(literal).unwrap();
            assert_eq!(serde_json::to_string(&parsed).unwrap(), literal);
        }
        same::<CreditsAdded>(
            r#"{"key":"acme","applied":false,"balance_usd":35.0,"added_usd":35.0,"spent_usd":0.0}"#,
        );
        same::<UsageAnswer>(
            r#"{"by":"upstream","from":null,"to":"2026-11-30","rows":[{"key":"a","upstream":"x","requests":1,"input_tokens":2,"output_tokens":3,"cost_usd":0.5}]}"#,
        );
        same::<AddCredits>(r#"{"add_usd":10.0,"id":"topup-123"}"#);
    }

    #[test]
    fn a_top_up_body_is_strict() {
        let ok: AddCredits = serde_json::from_str(r#"{"add_usd":10,"id":"t-1"}"#).unwrap();
        assert_eq!(ok.add_usd, 10.0);
        for bad in [
            r#"{"add_usd":10}"#,
            r#"{"add_usd":"10","id":"t"}"#,
            r#"{"add_usd":10,"id":"t","note":"x"}"#,
        ] {
            assert!(serde_json::from_str::<AddCredits>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_rows_name_their_group() {
        let q = UsageQuery {
            key: None,
            from: Some(20_787),
            to: None,
            by: GroupBy::Model,
        };
        let rows = vec![UsageRow {
            key: "acme".into(),
            group: "fast".into(),
            counters: Counters {
                requests: 2,
                input_tokens: 10,
                output_tokens: 4,
                cost_nanos: 1_500_000,
            },
        }];
        let text = serde_json::to_string(&UsageAnswer::new(&q, rows)).unwrap();
        assert_eq!(
            text,
            r#"{"by":"model","from":"2026-11-30","to":null,"rows":[{"key":"acme","model":"fast","requests":2,"input_tokens":10,"output_tokens":4,"cost_usd":0.0015}]}"#
        );
    }

    #[test]
    fn usage_parameters_are_checked_by_name() {
        let q = usage_query(
            &params(&[("key", "acme"), ("from", "2026-11-01"), ("by", "upstream")]),
            true,
        )
        .unwrap();
        assert_eq!(q.key.as_deref(), Some("acme"));
        assert_eq!(q.by, GroupBy::Upstream);
        assert_eq!(q.from, Some(20_758));
        let field =
            |pairs: &[(&str, &str)], allow| usage_query(&params(pairs), allow).unwrap_err().field;
        assert_eq!(field(&[("key", "acme")], false), "key");
        assert_eq!(field(&[("key", "")], true), "key");
        assert_eq!(field(&[("from", "2026-13-01")], true), "from");
        assert_eq!(field(&[("to", "yesterday")], true), "to");
        assert_eq!(field(&[("by", "week")], true), "by");
        assert_eq!(field(&[("form", "2026-11-01")], true), "form");
        assert_eq!(
            field(&[("from", "2026-11-02"), ("to", "2026-11-01")], true),
            "from"
        );
        assert_eq!(
            usage_query(&params(&[]), false).unwrap(),
            UsageQuery::default()
        );
    }
}
