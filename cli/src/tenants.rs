//! The tenants' commands: the limits of `meridian keys put` (`--models`,
//! `--rpm`, `--tpm`, `--credits-usd`, `--class`), the keys table with
//! limits and balances, `meridian keys credit NAME --add X [--id ID]` and
//! `meridian usage`.
//!
//! A top-up carries an id so that a retry counts once: without `--id` one
//! is made up and printed, and the operator reruns with it if the answer
//! was lost.

use std::time::{SystemTime, UNIX_EPOCH};

use http::Method;
use proto::api::tenants::{CreditsAdded, UsageAnswer};
use serde_json::{Map, Value, json};

use super::admin_client::AdminClient;
use super::config_cmds::encode;
use super::table::{Table, cell};
use super::{CliError, Printed};

/// The limits given as flags to `keys put`; each absent one is left out
/// of the body (no limit).
#[derive(Debug, Clone, Default)]
pub struct LimitFlags {
    /// `--models a,b`: the allowlist.
    pub models: Option<Vec<String>>,
    /// `--rpm N`.
    pub rpm: Option<u64>,
    /// `--tpm N`.
    pub tpm: Option<u64>,
    /// `--credits-usd X`: the opening balance.
    pub credits_usd: Option<f64>,
    /// `--class C`.
    pub class: Option<String>,
}

impl LimitFlags {
    /// Adds the limits given to a key's body (`{"key": …}`).
    pub fn add_to(&self, body: &mut Value) -> Result<(), CliError> {
        let Some(object) = body.as_object_mut() else {
            return Err(CliError::Input("the key's body is not an object".into()));
        };
        if let Some(models) = &self.models {
            let models: Vec<&str> = models
                .iter()
                .map(|m| m.trim())
                .filter(|m| !m.is_empty())
                .collect();
            object.insert("models".into(), json!(models));
        }
        if let Some(usd) = self.credits_usd {
            if !usd.is_finite() {
                return Err(CliError::Input(
                    "--credits-usd must be a finite amount".into(),
                ));
            }
            object.insert("credits_usd".into(), json!(usd));
        }
        let mut put = |name: &str, v: Option<Value>| {
            if let Some(v) = v {
                object.insert(name.into(), v);
            }
        };
        put("rpm", self.rpm.map(Value::from));
        put("tpm", self.tpm.map(Value::from));
        put("class", self.class.clone().map(Value::from));
        Ok(())
    }
}

/// Dollars for a person: cents from a dollar up, else up to six decimals.
pub fn usd(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    let sign = if v < 0.0 { "-" } else { "" };
    let a = v.abs();
    if a >= 1.0 || a == 0.0 {
        format!("{sign}${a:.2}")
    } else {
        let text = format!("{a:.6}");
        format!(
            "{sign}${}",
            text.trim_end_matches('0').trim_end_matches('.')
        )
    }
}

fn usd_cell(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".to_owned(), usd)
}

/// The keys table: the name alone while no key has a limit or a ledger
/// (as before limits existed), else with a column for each.
pub fn render_keys(items: &[&Value]) -> String {
    let limited = items.iter().any(|k| {
        k.as_object()
            .is_some_and(|o| o.keys().any(|field| field != "name"))
    });
    if !limited {
        let mut table = Table::new(&["NAME"]);
        for k in items {
            table.row(vec![cell(&k["name"])]);
        }
        return table.render();
    }
    let mut table = Table::new(&[
        "NAME", "MODELS", "RPM", "TPM", "CLASS", "BALANCE", "ADDED", "SPENT",
    ])
    .right_align(&[2, 3, 5, 6, 7]);
    for k in items {
        let models = match k["models"].as_array() {
            Some(list) => list.iter().map(cell).collect::<Vec<_>>().join(","),
            None => "*".to_owned(),
        };
        let credits = &k["credits"];
        table.row(vec![
            cell(&k["name"]),
            models,
            cell(&k["rpm"]),
            cell(&k["tpm"]),
            cell(&k["class"]),
            usd_cell(&credits["balance_usd"]),
            usd_cell(&credits["added_usd"]),
            usd_cell(&credits["spent_usd"]),
        ]);
    }
    table.render()
}

/// A top-up id unique enough for one operator's retries: the time to the
/// microsecond and this process's id.
pub fn new_topup_id() -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("cli-{micros}-{}", std::process::id())
}

/// `POST /admin/v1/keys/{name}/credits`: adds `add_usd` to a key's balance
/// under `id` (made up and printed when absent).
pub async fn credit(
    client: &AdminClient,
    name: &str,
    add_usd: f64,
    id: Option<String>,
) -> Result<Printed, CliError> {
    if name.is_empty() {
        return Err(CliError::Input("the key name is empty".into()));
    }
    if !(add_usd.is_finite() && add_usd > 0.0) {
        return Err(CliError::Input(
            "--add must be an amount of US dollars above 0".into(),
        ));
    }
    let id = id.unwrap_or_else(new_topup_id);
    let body = json!({ "add_usd": add_usd, "id": id });
    let path = format!("/admin/v1/keys/{}/credits", encode(name, false));
    let answer = client
        .call_as::<CreditsAdded>(Method::POST, &path, Some(&body))
        .await?;
    let a = &answer.typed;
    let what = if a.applied {
        format!("key `{name}` credited {}", usd(add_usd))
    } else {
        format!("top-up `{id}` of key `{name}` was counted before: nothing added")
    };
    let text = format!(
        "{what} (id {id}: retry with --id {id} to count it once)\nbalance {} (added {}, spent {})\n",
        usd(a.balance_usd),
        usd(a.added_usd),
        usd(a.spent_usd)
    );
    Ok(Printed {
        text,
        json: answer.json,
    })
}

/// What `meridian usage` asks for; each absent one is left to the node.
#[derive(Debug, Clone, Default)]
pub struct UsageArgs {
    /// Only this key.
    pub key: Option<String>,
    /// First day, `YYYY-MM-DD`.
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD`.
    pub to: Option<String>,
    /// `day`, `model` or `upstream`.
    pub by: Option<String>,
}

impl UsageArgs {
    /// The query string, `?key=…&by=…`, or nothing.
    fn query(&self) -> String {
        let params: Vec<String> = [
            ("key", &self.key),
            ("from", &self.from),
            ("to", &self.to),
            ("by", &self.by),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_ref().map(|v| format!("{name}={}", encode(v, false))))
        .collect();
        if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        }
    }
}

/// `GET /admin/v1/usage`, as a table with a total line, or as the node
/// answered it.
pub async fn usage(client: &AdminClient, args: &UsageArgs) -> Result<Printed, CliError> {
    let path = format!("/admin/v1/usage{}", args.query());
    let answer = client
        .call_as::<UsageAnswer>(Method::GET, &path, None)
        .await?;
    Ok(Printed {
        text: render_usage(&answer.json),
        json: answer.json,
    })
}

/// The usage answer as a table: one line per key and group, then totals.
pub fn render_usage(answer: &Value) -> String {
    let by = answer["by"].as_str().unwrap_or("day");
    let empty = Vec::new();
    let rows = answer["rows"].as_array().unwrap_or(&empty);
    let range = format!(
        "{} to {}",
        answer["from"].as_str().unwrap_or("the first day"),
        answer["to"].as_str().unwrap_or("the newest")
    );
    if rows.is_empty() {
        return format!("(no usage from {range})\n");
    }
    let mut table = Table::new(&[
        "KEY",
        &by.to_ascii_uppercase(),
        "REQUESTS",
        "INPUT TOKENS",
        "OUTPUT TOKENS",
        "COST",
    ])
    .right_align(&[2, 3, 4, 5]);
    let mut totals = Map::new();
    for row in rows {
        table.row(vec![
            cell(&row["key"]),
            cell(&row[by]),
            cell(&row["requests"]),
            cell(&row["input_tokens"]),
            cell(&row["output_tokens"]),
            usd_cell(&row["cost_usd"]),
        ]);
        for field in ["requests", "input_tokens", "output_tokens", "cost_usd"] {
            let sum = totals.get(field).and_then(Value::as_f64).unwrap_or(0.0)
                + row[field].as_f64().unwrap_or(0.0);
            totals.insert(field.into(), json!(sum));
        }
    }
    let count = |field: &str| {
        format!(
            "{:.0}",
            totals.get(field).and_then(Value::as_f64).unwrap_or(0.0)
        )
    };
    table.row(vec![
        "TOTAL".into(),
        String::new(),
        count("requests"),
        count("input_tokens"),
        count("output_tokens"),
        usd(totals
            .get("cost_usd")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)),
    ]);
    format!("usage by {by}, {range}\n{}", table.render())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn limits_join_the_body_only_when_given() {
        let mut body = json!({"key": "k"});
        LimitFlags::default().add_to(&mut body).unwrap();
        assert_eq!(body, json!({"key": "k"}));
        LimitFlags {
            models: Some(vec!["fast".into(), " deepseek/* ".into()]),
            rpm: Some(60),
            tpm: None,
            credits_usd: Some(25.0),
            class: Some("pro".into()),
        }
        .add_to(&mut body)
        .unwrap();
        assert_eq!(
            body,
            json!({"key": "k", "models": ["fast", "deepseek/*"], "rpm": 60, "credits_usd": 25.0, "class": "pro"})
        );
    }

    #[test]
    fn keys_without_limits_read_as_before() {
        let a = json!({"name": "app"});
        assert_eq!(render_keys(&[&a]), "NAME\napp\n");
        let b = json!({"name": "acme", "rpm": 60, "credits": {"balance_usd": 24.5, "added_usd": 25.0, "spent_usd": 0.5}});
        let text = render_keys(&[&a, &b]);
        assert!(
            text.starts_with("NAME  MODELS  RPM  TPM  CLASS  BALANCE"),
            "{text}"
        );
        assert!(
            text.contains("acme  *        60    -  -       $24.50"),
            "{text}"
        );
    }

    #[test]
    fn dollars_read_plainly() {
        assert_eq!(usd(25.0), "$25.00");
        assert_eq!(usd(0.0015), "$0.0015");
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(usd(-0.25), "-$0.25");
    }

    #[test]
    fn usage_is_a_table_with_totals() {
        let answer = json!({"by": "model", "from": "2026-11-30", "to": null, "rows": [
            {"key": "acme", "model": "fast", "requests": 2, "input_tokens": 10, "output_tokens": 4, "cost_usd": 0.5},
            {"key": "acme", "model": "big", "requests": 1, "input_tokens": 5, "output_tokens": 1, "cost_usd": 1.0},
        ]});
        let text = render_usage(&answer);
        assert!(
            text.starts_with("usage by model, 2026-11-30 to the newest\n"),
            "{text}"
        );
        assert!(text.contains("KEY    MODEL  REQUESTS"), "{text}");
        assert!(text.lines().last().unwrap().starts_with("TOTAL"), "{text}");
        assert!(text.lines().last().unwrap().ends_with("$1.50"), "{text}");
        let args = UsageArgs {
            key: Some("a b".into()),
            by: Some("day".into()),
            ..UsageArgs::default()
        };
        assert_eq!(args.query(), "?key=a%20b&by=day");
        assert_eq!(UsageArgs::default().query(), "");
    }
}
