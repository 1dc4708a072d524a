//! The tenants' admin API over real nodes: keys with limits (and every
//! hostile value refused with a 400 naming its field, nothing proposed),
//! top-ups counted once per id, balances and usage read back from the
//! replicated ledger, and the admin token required on each.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use http::{Method, StatusCode};
use proto::state::CommandResponse;
use proto::tenancy::query::day_to_date;
use serde_json::{Value, json};
use support::cluster::{Cluster, Options};
use support::config::{Config, route_to, upstream};
use support::tenancy::{cell, counters, report, today};
use support::{Mock, Node, send};

const TOKEN: &str = "admin-secret-tenants-01";

/// A boot far after any real node's (its start time in Unix ms), so a
/// real reporter's reports never overtake the ones a test sends.
const BOOT: u64 = 4_000_000_000_000;

/// An admin call with the token; (status, body as JSON).
async fn call(node: &Node, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    call_raw(node, method, path, body.map(|b| b.to_string()), true).await
}

async fn call_raw(
    node: &Node,
    method: Method,
    path: &str,
    body: Option<String>,
    with_token: bool,
) -> (StatusCode, Value) {
    let auth = format!("Bearer {TOKEN}");
    let headers: &[(&str, &str)] = if with_token {
        &[("authorization", auth.as_str())]
    } else {
        &[]
    };
    let (status, _, bytes) = send(
        method,
        &format!("http://{}{path}", node.admin),
        headers,
        body,
    )
    .await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn applied_index(node: &Node) -> u64 {
    call(node, Method::GET, "/admin/v1/cluster", None).await.1["applied_index"]
        .as_u64()
        .unwrap()
}

/// A 400 naming `param`, with nothing proposed.
async fn refused(node: &Node, method: Method, path: &str, body: String, param: &str) {
    let before = applied_index(node).await;
    let (status, answer) = call_raw(node, method, path, Some(body.clone()), true).await;
    assert_eq!(status, 400, "{path} {body}: {answer}");
    assert_eq!(answer["error"]["param"], param, "{path} {body}: {answer}");
    assert_eq!(applied_index(node).await, before, "{body} was proposed");
}

async fn node() -> (Node, Mock) {
    let mock = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.admin.token_env = "TEST_ADMIN_TOKEN".to_owned();
            c.upstreams.push(upstream("a", &mock));
            c.routes.push(route_to("fast", "a", "x"));
        },
        &[("TEST_ADMIN_TOKEN", TOKEN)],
    )
    .await;
    (node, mock)
}

#[tokio::test]
async fn keys_carry_limits_and_refuse_hostile_values_by_name() {
    let (node, _mock) = node().await;
    let secret = "sk-acme-0123456789abcdef";
    let body = json!({"key": secret, "models": ["fast", "deepseek/*"], "rpm": 600,
        "tpm": 200000, "credits_usd": 25.0, "class": "pro"});
    let (status, answer) = call(&node, Method::PUT, "/admin/v1/keys/acme", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    let (status, key) = call(&node, Method::GET, "/admin/v1/keys/acme", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        key,
        json!({"name": "acme", "models": ["fast", "deepseek/*"], "rpm": 600, "tpm": 200000,
            "credits_usd": 25.0, "class": "pro",
            "credits": {"balance_usd": 25.0, "added_usd": 25.0, "spent_usd": 0.0}})
    );

    let path = "/admin/v1/keys/acme";
    let put = |extra: Value| {
        let mut body = json!({"key": secret});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body.to_string()
    };
    let many: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    for (extra, param) in [
        (json!({"rpm": -1}), "rpm"),
        (json!({"rpm": 0}), "rpm"),
        (json!({"rpm": 1e300}), "rpm"),
        (json!({"rpm": "fast"}), "rpm"),
        (json!({"rpm": 18_446_744_073_709_551_616.0}), "rpm"),
        (json!({"tpm": 1.5}), "tpm"),
        (json!({"tpm": [1]}), "tpm"),
        (json!({"credits_usd": -5}), "credits_usd"),
        (json!({"credits_usd": 1e300}), "credits_usd"),
        (json!({"credits_usd": "NaN"}), "credits_usd"),
        (json!({"credits_usd": {"usd": 1}}), "credits_usd"),
        (json!({"models": "fast"}), "models"),
        (json!({"models": [""]}), "models[0]"),
        (json!({"models": ["fast", "a b"]}), "models[1]"),
        (json!({"models": [7]}), "models[0]"),
        (json!({"models": many}), "models"),
        (json!({"class": "pro tier"}), "class"),
        (json!({"class": "é"}), "class"),
        (json!({"class": 5}), "class"),
        (json!({"rmp": 5}), "rmp"),
    ] {
        refused(&node, Method::PUT, path, put(extra), param).await;
    }
    // NaN and infinities are not JSON: the body as a whole is refused.
    let (status, _) = call_raw(
        &node,
        Method::PUT,
        path,
        Some(format!(r#"{{"key":"{secret}","credits_usd":NaN}}"#)),
        true,
    )
    .await;
    assert_eq!(status, 400);

    // Re-putting a key never refills it: its ledger opened at 25.
    let body = json!({"key": secret, "credits_usd": 100.0});
    assert_eq!(call(&node, Method::PUT, path, Some(body)).await.0, 200);
    let (_, key) = call(&node, Method::GET, path, None).await;
    assert_eq!(key["credits_usd"], 100.0);
    assert_eq!(key["credits"]["added_usd"], 25.0, "{key}");
    assert_eq!(key.get("models"), None, "limits left out are no limits");

    // Names in any script; a name too long is refused.
    let unicode = "/admin/v1/keys/%C3%A9quipe-%E2%9C%93";
    let body = json!({"key": "sk-equipe-0123456789ab"});
    assert_eq!(
        call(&node, Method::PUT, unicode, Some(body.clone()))
            .await
            .0,
        200
    );
    let (_, keys) = call(&node, Method::GET, "/admin/v1/keys", None).await;
    let names: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "équipe-✓"]);
    let long = format!("/admin/v1/keys/{}", "k".repeat(65));
    let (status, _) = call(&node, Method::PUT, &long, Some(body)).await;
    assert_eq!(status, 400);

    // Never a secret in an answer, nor the hash.
    let text = keys.to_string();
    assert!(!text.contains(secret) && !text.contains("sha256"), "{text}");
    assert!(!node.log().contains(secret), "the key reached the log");
}

#[tokio::test]
async fn top_ups_count_once_per_id_and_refuse_hostile_values() {
    let (node, _mock) = node().await;
    let put = json!({"key": "sk-acme-0123456789abcdef", "credits_usd": 5.0});
    assert_eq!(
        call(&node, Method::PUT, "/admin/v1/keys/acme", Some(put))
            .await
            .0,
        200
    );
    let path = "/admin/v1/keys/acme/credits";
    let top_up = json!({"add_usd": 10, "id": "topup-1"});
    let (status, answer) = call(&node, Method::POST, path, Some(top_up.clone())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"key": "acme", "applied": true, "balance_usd": 15.0, "added_usd": 15.0, "spent_usd": 0.0})
    );
    // A retry (the answer was lost): counted once.
    let (status, answer) = call(&node, Method::POST, path, Some(top_up)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (answer["applied"].clone(), answer["balance_usd"].clone()),
        (json!(false), json!(15.0))
    );
    // Two at once with the same id: one counts.
    let twice = json!({"add_usd": 0.5, "id": "topup-2"});
    let (a, b) = tokio::join!(
        call(&node, Method::POST, path, Some(twice.clone())),
        call(&node, Method::POST, path, Some(twice)),
    );
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    assert_eq!(
        [&a.1["applied"], &b.1["applied"]]
            .iter()
            .filter(|v| ***v == json!(true))
            .count(),
        1,
        "{} {}",
        a.1,
        b.1
    );
    let (_, key) = call(&node, Method::GET, "/admin/v1/keys/acme", None).await;
    assert_eq!(key["credits"]["balance_usd"], 15.5, "{key}");

    let huge_id = "i".repeat(100_000);
    for (body, param) in [
        (json!({"add_usd": 0, "id": "t"}), "add_usd"),
        (json!({"add_usd": -1, "id": "t"}), "add_usd"),
        (json!({"add_usd": 1e300, "id": "t"}), "add_usd"),
        (json!({"add_usd": 1e9 + 1.0, "id": "t"}), "add_usd"),
        (json!({"add_usd": 1e-12, "id": "t"}), "add_usd"),
        (json!({"add_usd": "10", "id": "t"}), "add_usd"),
        (json!({"add_usd": null, "id": "t"}), "add_usd"),
        (json!({"id": "t"}), "add_usd"),
        (json!({"add_usd": 1}), "id"),
        (json!({"add_usd": 1, "id": ""}), "id"),
        (json!({"add_usd": 1, "id": "has space"}), "id"),
        (json!({"add_usd": 1, "id": "ïd"}), "id"),
        (json!({"add_usd": 1, "id": "x".repeat(129)}), "id"),
        (json!({"add_usd": 1, "id": huge_id}), "id"),
        (json!({"add_usd": 1, "id": 5}), "id"),
        (json!({"add_usd": 1, "id": "t", "note": "x"}), "note"),
    ] {
        refused(&node, Method::POST, path, body.to_string(), param).await;
    }
    let before = applied_index(&node).await;
    for body in [
        "not json",
        "[1]",
        r#"{"add_usd":NaN,"id":"t"}"#,
        r#"{"add_usd":1e400,"id":"t"}"#,
    ] {
        let (status, answer) = call_raw(&node, Method::POST, path, Some(body.into()), true).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    // An unknown key: 404, before anything is proposed.
    let (status, answer) = call(
        &node,
        Method::POST,
        "/admin/v1/keys/nobody/credits",
        Some(json!({"add_usd": 1, "id": "t"})),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    assert_eq!(
        applied_index(&node).await,
        before,
        "a refused top-up was proposed"
    );

    // A key without an opening balance has no balance checked: a top-up
    // is refused (naming the key), nothing proposed, no ledger opened.
    let put = json!({"key": "sk-free-0123456789abcdef"});
    assert_eq!(
        call(&node, Method::PUT, "/admin/v1/keys/free", Some(put))
            .await
            .0,
        200
    );
    let body = json!({"add_usd": 2.25, "id": "first"});
    refused(
        &node,
        Method::POST,
        "/admin/v1/keys/free/credits",
        body.to_string(),
        "key",
    )
    .await;
    let (_, key) = call(&node, Method::GET, "/admin/v1/keys/free", None).await;
    assert_eq!(key, json!({"name": "free"}));
    // Put again with an empty balance: its ledger opens, and top-ups count.
    let put = json!({"key": "sk-free-0123456789abcdef", "credits_usd": 0});
    assert_eq!(
        call(&node, Method::PUT, "/admin/v1/keys/free", Some(put))
            .await
            .0,
        200
    );
    let body = json!({"add_usd": 2.25, "id": "first"});
    let (_, answer) = call(
        &node,
        Method::POST,
        "/admin/v1/keys/free/credits",
        Some(body),
    )
    .await;
    assert_eq!(answer["balance_usd"], 2.25, "{answer}");
}

#[tokio::test]
async fn every_tenant_endpoint_needs_the_token_and_usage_names_bad_parameters() {
    let (node, _mock) = node().await;
    for (method, path, body) in [
        (Method::GET, "/admin/v1/keys", None),
        (Method::GET, "/admin/v1/keys/acme", None),
        (
            Method::PUT,
            "/admin/v1/keys/acme",
            Some(r#"{"key":"sk-acme-0123456789abcdef"}"#),
        ),
        (
            Method::POST,
            "/admin/v1/keys/acme/credits",
            Some(r#"{"add_usd":1,"id":"t"}"#),
        ),
        (Method::GET, "/admin/v1/usage", None),
    ] {
        let (status, answer) = call_raw(&node, method, path, body.map(str::to_owned), false).await;
        assert_eq!(status, 401, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_admin_token");
    }
    let (status, answer) = call(&node, Method::GET, "/admin/v1/usage", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"by": "day", "from": null, "to": null, "rows": []})
    );
    for (query, param) in [
        ("by=week", "by"),
        ("from=2026-02-30", "from"),
        ("to=yesterday", "to"),
        ("from=2026-11-02&to=2026-11-01", "from"),
        ("key=", "key"),
        (
            "key=%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93%E2%9C%93",
            "key",
        ),
        ("form=2026-11-01", "form"),
        ("stale=maybe", "stale"),
    ] {
        let (status, answer) = call(
            &node,
            Method::GET,
            &format!("/admin/v1/usage?{query}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(answer["error"]["param"], param, "{query}: {answer}");
    }
}

/// Usage and spending reported by two members, read back from any node;
/// a report applied twice counts once; a top-up at a follower.
#[tokio::test(flavor = "multi_thread")]
async fn usage_rows_and_balances_follow_the_members_reports() {
    let cluster = Cluster::start(3, Options::fast()).await;
    let put = json!({"key": "sk-acme-0123456789abcdef", "credits_usd": 1.0});
    let reply = cluster.put(1, "/admin/v1/keys/acme", &put).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let put = json!({"key": "sk-beta-0123456789abcdef"});
    assert_eq!(
        cluster.put(1, "/admin/v1/keys/beta", &put).await.status,
        200
    );

    let day = today();
    let from_2 = report(
        BOOT,
        1,
        vec![
            (
                cell("acme", day, "fast", "a"),
                counters(2, 100, 50, 300_000_000),
            ),
            (cell("beta", day, "fast", "a"), counters(1, 10, 5, 1_000)),
        ],
    );
    let applied = cluster.report_as(2, from_2.clone()).await;
    assert_eq!(applied, CommandResponse::Applied { changed: true });
    // The same report again (a retried proposal): counted once.
    cluster.report_as(2, from_2).await;
    let from_3 = report(
        BOOT,
        1,
        vec![
            (
                cell("acme", day, "deepseek/chat", "b"),
                counters(1, 20, 10, 100_000_000),
            ),
            (
                cell("acme", day - 1, "fast", "a"),
                counters(3, 30, 15, 50_000_000),
            ),
        ],
    );
    cluster.report_as(3, from_3).await;

    let leader = cluster.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let reply = cluster
        .get(follower, "/admin/v1/usage?key=acme&by=model")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(
        answer["rows"],
        json!([
            {"key": "acme", "model": "deepseek/chat", "requests": 1, "input_tokens": 20, "output_tokens": 10, "cost_usd": 0.1},
            {"key": "acme", "model": "fast", "requests": 5, "input_tokens": 130, "output_tokens": 65, "cost_usd": 0.35},
        ])
    );
    let today_text = day_to_date(day);
    let reply = cluster
        .get(
            leader,
            &format!("/admin/v1/usage?from={today_text}&to={today_text}"),
        )
        .await;
    let answer = reply.json();
    assert_eq!(
        (answer["from"].as_str(), answer["to"].as_str()),
        (Some(today_text.as_str()), Some(today_text.as_str()))
    );
    let rows: Vec<(String, u64)> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_owned(),
                r["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("acme".to_owned(), 3), ("beta".to_owned(), 1)]);
    assert_eq!(answer["rows"][0]["day"], today_text.as_str());
    let reply = cluster.get(3, "/admin/v1/usage?by=upstream&key=acme").await;
    let answer = reply.json();
    let upstreams: Vec<&str> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["upstream"].as_str().unwrap())
        .collect();
    assert_eq!(upstreams, ["a", "b"]);

    // Spending follows the reports: 1.00 - 0.30 - 0.10 - 0.05.
    let key = cluster.get(3, "/admin/v1/keys/acme").await.json();
    let credits = &key["credits"];
    assert!(
        (credits["balance_usd"].as_f64().unwrap() - 0.55).abs() < 1e-9,
        "{key}"
    );
    assert!(
        (credits["spent_usd"].as_f64().unwrap() - 0.45).abs() < 1e-9,
        "{key}"
    );
    // A top-up at a follower, read at another node.
    let reply = cluster
        .post(
            follower,
            "/admin/v1/keys/acme/credits",
            &json!({"add_usd": 1, "id": "f-1"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!((reply.json()["balance_usd"].as_f64().unwrap() - 1.55).abs() < 1e-9);
    let other = (1..=3).find(|id| *id != follower).unwrap();
    let key = cluster.get(other, "/admin/v1/keys/acme").await.json();
    assert!(
        (key["credits"]["added_usd"].as_f64().unwrap() - 2.0).abs() < 1e-9,
        "{key}"
    );
}

/// Real traffic with a key: the admin API's usage is what the key's own
/// `GET /v1/usage` says and what each answer said it cost, and the key's
/// balance is its opening balance and top-up less that.
#[tokio::test]
async fn real_traffic_fills_the_usage_and_spends_the_balance() {
    let mock = Mock::start(&[]).await;
    let secret = "sk-acme-traffic-0123456789";
    let node = Node::start_with(
        |c: &mut Config| {
            c.admin.token_env = "TEST_ADMIN_TOKEN".to_owned();
            c.upstreams.push(upstream("a", &mock));
            let mut route = route_to("fast", "a", "x");
            route.tiers[0][0].input_per_mtok = 2.0;
            route.tiers[0][0].output_per_mtok = 8.0;
            c.routes.push(route);
            let mut key = support::config::key("acme", "TEST_ACME_KEY");
            key.credits_usd = Some(5.0);
            c.keys.push(key);
        },
        &[("TEST_ADMIN_TOKEN", TOKEN), ("TEST_ACME_KEY", secret)],
    )
    .await;
    let auth = [("authorization", format!("Bearer {secret}"))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut cost = 0.0;
    for _ in 0..5 {
        let answer = node.chat(support::chat_body("fast"), &auth).await;
        assert_eq!(answer.status, 200);
        cost += answer.header("x-meridian-cost-usd").parse::<f64>().unwrap();
    }
    assert!(cost > 0.0);
    let body = json!({"add_usd": 1, "id": "t-1"});
    let (status, _) = call(
        &node,
        Method::POST,
        "/admin/v1/keys/acme/credits",
        Some(body),
    )
    .await;
    assert_eq!(status, 200);

    // Reports go out every interval: wait until all five are counted.
    let mut usage = Value::Null;
    for _ in 0..200 {
        usage = call(
            &node,
            Method::GET,
            "/admin/v1/usage?key=acme&by=model",
            None,
        )
        .await
        .1;
        if usage["rows"][0]["requests"] == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let row = &usage["rows"][0];
    assert_eq!(
        (
            row["key"].as_str(),
            row["model"].as_str(),
            row["requests"].as_u64()
        ),
        (Some("acme"), Some("fast"), Some(5)),
        "{usage}"
    );
    assert!(
        (row["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9,
        "{usage} vs {cost}"
    );
    // The key's own view is the same body.
    let (status, _, own) = send(
        Method::GET,
        &format!("http://{}/v1/usage?by=model", node.api),
        &auth,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&own).unwrap(), usage);
    let (_, key) = call(&node, Method::GET, "/admin/v1/keys/acme", None).await;
    let credits = &key["credits"];
    assert_eq!(credits["added_usd"], 6.0, "{key}");
    assert!(
        (credits["spent_usd"].as_f64().unwrap() - cost).abs() < 1e-9,
        "{key}"
    );
    assert!(
        (credits["balance_usd"].as_f64().unwrap() - (6.0 - cost)).abs() < 1e-9,
        "{key}"
    );
}
