//! `meridian keys put` with limits, `meridian keys credit` and `meridian
//! usage` against a real node, as an operator runs them (tables, JSON and
//! exit codes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::process::{Command, Stdio};

use proto::tenancy::query::day_to_date;
use serde_json::{Value, json};
use support::cluster::{Cluster, Options};
use support::tenancy::{cell, counters, report, today};

/// Runs `meridian ARGS --admin URL` (no admin token) with `env`; returns
/// (exit code, stdout, stderr).
fn meridian(admin: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .args(["--admin", &format!("http://{admin}")])
        .env_remove("MERIDIAN_ADMIN_TOKEN")
        .env_remove("MERIDIAN_ADMIN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(admin: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = meridian(admin, args, &[]);
    assert_eq!(code, 0, "meridian {args:?}: {stderr}");
    stdout
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_credit_and_usage_from_the_command_line() {
    let cluster = Cluster::start(1, Options::fast()).await;
    let admin = cluster.node(1).admin.clone();
    let admin = admin.as_str();

    // A key with every limit as flags.
    let secret = "sk-acme-cli-0123456789";
    let (code, stdout, stderr) = meridian(
        admin,
        &[
            "keys",
            "put",
            "acme",
            "--key-env",
            "TEST_ACME_KEY",
            "--models",
            "fast,deepseek/*",
            "--rpm",
            "600",
            "--tpm",
            "200000",
            "--credits-usd",
            "25",
            "--class",
            "pro",
        ],
        &[("TEST_ACME_KEY", secret)],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("key `acme` put: done"), "{stdout}");
    let key = json(&ok(admin, &["keys", "get", "acme", "--output", "json"]));
    assert_eq!(
        key,
        json!({"name": "acme", "models": ["fast", "deepseek/*"], "rpm": 600, "tpm": 200000,
            "credits_usd": 25.0, "class": "pro",
            "credits": {"balance_usd": 25.0, "added_usd": 25.0, "spent_usd": 0.0}})
    );
    let list = ok(admin, &["keys", "list"]);
    assert!(
        list.starts_with("NAME  MODELS           RPM     TPM  CLASS  BALANCE"),
        "{list}"
    );
    assert!(
        list.contains("acme  fast,deepseek/*  600  200000  pro     $25.00"),
        "{list}"
    );
    assert!(!list.contains(secret));
    // A bad limit: the node names it, exit 64.
    let (code, _, stderr) = meridian(
        admin,
        &[
            "keys",
            "put",
            "acme",
            "--key-env",
            "TEST_ACME_KEY",
            "--rpm",
            "0",
        ],
        &[("TEST_ACME_KEY", secret)],
    );
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("rpm"), "{stderr}");

    // A top-up without an id: one is made up and printed, for a retry.
    let out = ok(admin, &["keys", "credit", "acme", "--add", "10"]);
    assert!(
        out.starts_with("key `acme` credited $10.00 (id cli-"),
        "{out}"
    );
    assert!(
        out.contains("balance $35.00 (added $35.00, spent $0.00)"),
        "{out}"
    );
    let id = out
        .split("retry with --id ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    // The retry with that id counts nothing more.
    let out = ok(
        admin,
        &["keys", "credit", "acme", "--add", "10", "--id", &id],
    );
    assert!(out.contains("was counted before: nothing added"), "{out}");
    assert!(out.contains("balance $35.00"), "{out}");
    let answer = json(&ok(
        admin,
        &[
            "keys", "credit", "acme", "--add", "10", "--id", &id, "--output", "json",
        ],
    ));
    assert_eq!(answer["applied"], false);
    assert_eq!(answer["balance_usd"], 35.0);
    for (args, needle) in [
        (&["keys", "credit", "acme", "--add=-1"][..], "--add"),
        (&["keys", "credit", "acme", "--add", "NaN"][..], "--add"),
        (
            &["keys", "credit", "acme", "--add", "1", "--id", "a b"][..],
            "id",
        ),
        (&["keys", "credit", "nobody", "--add", "1"][..], "404"),
    ] {
        let (code, _, stderr) = meridian(admin, args, &[]);
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }

    // Usage, as a member reported it.
    assert_eq!(
        ok(admin, &["usage"]),
        "(no usage from the first day to the newest)\n"
    );
    let day = today();
    let usage = vec![
        (
            cell("acme", day, "fast", "a"),
            counters(3, 300, 120, 1_500_000_000),
        ),
        (
            cell("acme", day, "deepseek/chat", "b"),
            counters(1, 10, 5, 20_000_000),
        ),
    ];
    cluster
        .report_as(1, report(4_000_000_000_000, 1, usage))
        .await;
    let date = day_to_date(day);
    let table = ok(
        admin,
        &["usage", "--key", "acme", "--by", "model", "--from", &date],
    );
    assert_eq!(
        table,
        format!(
            "usage by model, {date} to the newest\n\
             KEY    MODEL          REQUESTS  INPUT TOKENS  OUTPUT TOKENS   COST\n\
             acme   deepseek/chat         1            10              5  $0.02\n\
             acme   fast                  3           300            120  $1.50\n\
             TOTAL                        4           310            125  $1.52\n"
        )
    );
    let answer = json(&ok(admin, &["usage", "--output", "json"]));
    assert_eq!(answer["by"], "day");
    assert_eq!(
        answer["rows"],
        json!([{"key": "acme", "day": date, "requests": 4, "input_tokens": 310,
            "output_tokens": 125, "cost_usd": 1.52}])
    );
    let key = json(&ok(admin, &["keys", "get", "acme", "--output", "json"]));
    assert_eq!(key["credits"]["spent_usd"], 1.52);
    // A bad parameter: the node names it; a bad --by never leaves the CLI.
    let (code, _, stderr) = meridian(admin, &["usage", "--from", "2026-02-30"], &[]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("from"), "{stderr}");
    let (code, _, stderr) = meridian(admin, &["usage", "--by", "week"], &[]);
    assert_eq!(code, 2, "{stderr}");
}
