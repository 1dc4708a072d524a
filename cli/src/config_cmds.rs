//! `meridian routes|upstreams|keys list|get|put|delete`: the replicated
//! configuration through any node's admin API, with the same fields as the
//! configuration file. A body comes as JSON or TOML (a `[[routes]]` block
//! pasted from a file works), from `--file` or stdin; routes also take a
//! flag form. Keys never travel through argv and are never printed.

use std::io::{IsTerminal, Read};
use std::path::Path;

use http::Method;
use proto::api::admin::WriteAck;
use serde_json::{Map, Value, json};

use super::admin_client::AdminClient;
use super::members::change_line;
use super::table::{Table, cell};
use super::{CliError, Printed};

/// Which collection of the replicated configuration a command manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/admin/v1/routes`, named by `model`.
    Routes,
    /// `/admin/v1/upstreams`, named by `id`.
    Upstreams,
    /// `/admin/v1/keys`, named by `name`.
    Keys,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Self::Routes => "routes",
            Self::Upstreams => "upstreams",
            Self::Keys => "keys",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Self::Routes => "route",
            Self::Upstreams => "upstream",
            Self::Keys => "key",
        }
    }

    /// The config file's section name, accepted around a pasted body.
    fn section(self) -> &'static str {
        self.path()
    }
}

/// Percent-encodes a name for the path; `/` is kept for routes, whose
/// model names may contain it (the admin API takes the rest of the path).
pub(crate) fn encode(name: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'@' => {
                out.push(char::from(b))
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn item_path(kind: Kind, name: &str) -> Result<String, CliError> {
    if name.is_empty() {
        return Err(CliError::Input(format!(
            "the {} name is empty",
            kind.singular()
        )));
    }
    Ok(format!(
        "/admin/v1/{}/{}",
        kind.path(),
        encode(name, kind == Kind::Routes)
    ))
}

/// `GET /admin/v1/{kind}`.
pub async fn list(client: &AdminClient, kind: Kind) -> Result<Printed, CliError> {
    let value = client
        .call(Method::GET, &format!("/admin/v1/{}", kind.path()), None)
        .await?;
    let items: Vec<&Value> = value.as_array().into_iter().flatten().collect();
    Ok(Printed {
        text: render(kind, &items),
        json: value,
    })
}

/// `GET /admin/v1/{kind}/{name}`.
pub async fn get(client: &AdminClient, kind: Kind, name: &str) -> Result<Printed, CliError> {
    let value = client
        .call(Method::GET, &item_path(kind, name)?, None)
        .await?;
    Ok(Printed {
        text: render(kind, &[&value]),
        json: value,
    })
}

/// `PUT /admin/v1/{kind}/{name}` with `body`.
pub async fn put(
    client: &AdminClient,
    kind: Kind,
    name: &str,
    body: &Value,
) -> Result<Printed, CliError> {
    let answer = client
        .call_as::<WriteAck>(Method::PUT, &item_path(kind, name)?, Some(body))
        .await?;
    Ok(Printed {
        text: change_line(&format!("{} `{name}` put", kind.singular()), &answer.typed),
        json: answer.json,
    })
}

/// `DELETE /admin/v1/{kind}/{name}`.
pub async fn delete(client: &AdminClient, kind: Kind, name: &str) -> Result<Printed, CliError> {
    let answer = client
        .call_as::<WriteAck>(Method::DELETE, &item_path(kind, name)?, None)
        .await?;
    Ok(Printed {
        text: change_line(
            &format!("{} `{name}` deleted", kind.singular()),
            &answer.typed,
        ),
        json: answer.json,
    })
}

/// A tier of targets written as flags: `upstream:model,upstream:model`.
pub fn route_from_flags(tiers: &[String]) -> Result<Value, CliError> {
    let mut out = Vec::new();
    for (i, tier) in tiers.iter().enumerate() {
        let mut targets = Vec::new();
        for target in tier.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let Some((upstream, model)) = target.split_once(':') else {
                return Err(CliError::Input(format!(
                    "--tier {}: `{target}` is not UPSTREAM:MODEL",
                    i + 1
                )));
            };
            targets.push(json!({ "upstream": upstream, "model": model }));
        }
        if targets.is_empty() {
            return Err(CliError::Input(format!("--tier {} is empty", i + 1)));
        }
        out.push(Value::Array(targets));
    }
    Ok(json!({ "tiers": out }))
}

/// The body of a put, from `file` or, without one, stdin (which must not be
/// a terminal: a body is not typed by hand line by line).
pub fn read_body(file: Option<&Path>, kind: Kind) -> Result<Value, CliError> {
    let (text, from) = match file {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?,
            path.display().to_string(),
        ),
        None => {
            if std::io::stdin().is_terminal() {
                return Err(CliError::Input(format!(
                    "give the {} as JSON or TOML with --file FILE or on stdin",
                    kind.singular()
                )));
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::Input(format!("cannot read stdin: {e}")))?;
            (text, "stdin".to_owned())
        }
    };
    parse_body(&text, kind).map_err(|e| CliError::Input(format!("{from}: {e}")))
}

/// JSON, or else TOML; a config file's `[[routes]]` (or `[[upstreams]]`)
/// block holding one item is unwrapped to that item.
pub fn parse_body(text: &str, kind: Kind) -> Result<Value, String> {
    let value = match serde_json::from_str::<Value>(text) {
        Ok(v) => v,
        Err(json_error) => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('{') || trimmed.starts_with('[') && !trimmed.starts_with("[[") {
                return Err(format!("not valid JSON: {json_error}"));
            }
            let toml: toml::Table = toml::from_str(text)
                .map_err(|e| format!("neither JSON ({json_error}) nor TOML ({})", e.message()))?;
            serde_json::to_value(toml).map_err(|e| format!("cannot convert TOML: {e}"))?
        }
    };
    let Value::Object(mut object) = value else {
        return Err("the body must be an object".to_owned());
    };
    if object.len() == 1
        && let Some(Value::Array(items)) = object.get_mut(kind.section())
    {
        return match items.as_mut_slice() {
            [one] => Ok(one.take()),
            _ => Err(format!(
                "[[{}]] holds {} items: put one at a time",
                kind.section(),
                items.len()
            )),
        };
    }
    Ok(Value::Object(object))
}

/// The key for `keys put`: from the environment variable `env` when given,
/// else the first line of stdin. Never from argv, where `ps` and shell
/// history would keep it.
pub fn read_key(env: Option<&str>) -> Result<Value, CliError> {
    let key = match env {
        Some(var) => std::env::var(var)
            .map_err(|_| CliError::Input(format!("{var} is not set (--key-env)")))?,
        None => {
            if std::io::stdin().is_terminal() {
                eprint!("key (input is shown; prefer --key-env VAR or a pipe): ");
            }
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| CliError::Input(format!("cannot read the key from stdin: {e}")))?;
            line
        }
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(CliError::Input("the key is empty".to_owned()));
    }
    Ok(json!({ "key": key }))
}

fn render(kind: Kind, items: &[&Value]) -> String {
    if kind == Kind::Keys && !items.is_empty() {
        // With their limits and balances, when any has some.
        return super::tenants::render_keys(items);
    }
    let mut table = match kind {
        Kind::Routes => Table::new(&["MODEL", "TIERS", "HEDGE", "OVERRIDES"]),
        Kind::Upstreams => Table::new(&["ID", "REGION", "BASE URL", "KEY FROM", "AUTH", "HTTP2"]),
        Kind::Keys => Table::new(&["NAME"]),
    };
    for item in items {
        table.row(match kind {
            Kind::Routes => route_row(item),
            Kind::Upstreams => vec![
                cell(&item["id"]),
                cell(&item["region"]),
                cell(&item["base_url"]),
                match (&item["api_key_env"], &item["api_key_file"]) {
                    (Value::String(var), _) => format!("${var}"),
                    (_, Value::String(file)) => file.clone(),
                    _ => "-".to_owned(),
                },
                cell(&item["auth"]),
                cell(&item["http2"]),
            ],
            Kind::Keys => vec![cell(&item["name"])],
        });
    }
    if table.is_empty() {
        format!("(no {})\n", kind.path())
    } else {
        table.render()
    }
}

fn route_row(route: &Value) -> Vec<String> {
    let tiers = route["tiers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|tier| {
            tier.as_array()
                .into_iter()
                .flatten()
                .map(|t| format!("{}:{}", cell(&t["upstream"]), cell(&t["model"])))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect::<Vec<_>>()
        .join(" | ");
    let hedge = match &route["hedge"] {
        Value::Object(h) => h
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "-".to_owned(),
    };
    let known = ["model", "tiers", "hedge"];
    let overrides: Map<String, Value> = route
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| !known.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let overrides = if overrides.is_empty() {
        "-".to_owned()
    } else {
        overrides
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    vec![cell(&route["model"]), tiers, hedge, overrides]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_body_is_json_or_toml_or_a_pasted_block() {
        let want = json!({"tiers": [[{"upstream": "a", "model": "x"}]]});
        assert_eq!(
            parse_body(
                r#"{"tiers": [[{"upstream": "a", "model": "x"}]]}"#,
                Kind::Routes
            )
            .unwrap(),
            want
        );
        assert_eq!(
            parse_body(
                "tiers = [[{ upstream = \"a\", model = \"x\" }]]\n",
                Kind::Routes
            )
            .unwrap(),
            want
        );
        let block = "[[routes]]\nmodel = \"m\"\ntiers = [[{ upstream = \"a\", model = \"x\" }]]\n";
        assert_eq!(parse_body(block, Kind::Routes).unwrap()["model"], "m");
        assert!(
            parse_body("{\"tiers\": ", Kind::Routes)
                .unwrap_err()
                .contains("JSON")
        );
        assert!(
            parse_body("= nope", Kind::Routes)
                .unwrap_err()
                .contains("TOML")
        );
    }

    #[test]
    fn tiers_from_flags() {
        let route = route_from_flags(&["a:x, b:ollama:8b".into(), "c:y".into()]).unwrap();
        assert_eq!(
            route["tiers"][0][1],
            json!({"upstream": "b", "model": "ollama:8b"})
        );
        assert_eq!(route["tiers"][1][0]["upstream"], "c");
        assert!(route_from_flags(&["a".into()]).is_err());
    }

    #[test]
    fn names_are_encoded_for_the_path() {
        assert_eq!(
            item_path(Kind::Routes, "org/model v2").unwrap(),
            "/admin/v1/routes/org/model%20v2"
        );
        assert_eq!(
            item_path(Kind::Keys, "a/b").unwrap(),
            "/admin/v1/keys/a%2Fb"
        );
    }

    #[test]
    fn routes_render_one_line_each() {
        let route = json!({"model": "fast", "tiers": [[{"upstream": "a", "model": "x"}, {"upstream": "b", "model": "y"}], [{"upstream": "c", "model": "z"}]], "hedge": null, "max_attempts": 2});
        let text = render(Kind::Routes, &[&route]);
        assert!(
            text.contains("fast   a:x, b:y | c:z  -      max_attempts=2"),
            "{text}"
        );
    }
}
