//! Every wire type parses the literal JSON a node wrote before these types
//! existed, and writes it back byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::admin::*;
use super::openai::*;

/// Parses `literal` as `T` and writes it back: the same bytes.
fn same_bytes<T: Serialize + DeserializeOwned + std::fmt::Debug>(literal: &str) -> T {
    let parsed: T = serde_json::from_str(literal).unwrap();
    assert_eq!(
        serde_json::to_string(&parsed).unwrap(),
        literal,
        "{parsed:?}"
    );
    parsed
}

#[test]
fn the_error_envelope_is_openais() {
    let literal = r#"{"error":{"message":"The model `gpt-9` does not exist or you do not have access to it.","type":"invalid_request_error","param":"model","code":"model_not_found"}}"#;
    let e: ErrorEnvelope<'static> = same_bytes(literal);
    assert_eq!(e.error.code.as_deref(), Some("model_not_found"));
    let built = ErrorEnvelope::new(
        "The model `gpt-9` does not exist or you do not have access to it.",
        "invalid_request_error",
        Some("model"),
        Some("model_not_found"),
    );
    assert_eq!(serde_json::to_string(&built).unwrap(), literal);
    // `param` and `code` are written as null, never left out.
    same_bytes::<ErrorEnvelope<'static>>(
        r#"{"error":{"message":"no","type":"server_error","param":null,"code":null}}"#,
    );
    // A provider's envelope without `type` still reads.
    let e: ErrorEnvelope<'static> = serde_json::from_str(r#"{"error":{"message":"x"}}"#).unwrap();
    assert_eq!((e.error.message.as_ref(), e.error.param), ("x", None));
}

#[test]
fn the_models_list_is_sorted_and_openai_shaped() {
    let literal = r#"{"object":"list","data":[{"id":"fast","object":"model","created":0,"owned_by":"meridian"},{"id":"gpt-4o-mini","object":"model","created":0,"owned_by":"meridian"}]}"#;
    let list: ModelList = same_bytes(literal);
    assert_eq!(list, ModelList::new(["gpt-4o-mini", "fast"], "meridian"));
}

#[test]
fn usage_reads_partial_counts() {
    same_bytes::<Usage>(r#"{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}"#);
    let u: Usage = serde_json::from_str(r#"{"prompt_tokens":8,"total_tokens":8}"#).unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (8, 0));
}

#[test]
fn readiness_names_fields_only() {
    let r: Readiness = same_bytes(
        r#"{"ready":false,"config_applied":true,"applied_index":7,"routes":2,"usable_routes":0,"disabled_upstreams":[{"id":"openai","field":"api_key_env"}]}"#,
    );
    assert_eq!(r.disabled_upstreams[0].field, "api_key_env");
    same_bytes::<Readiness>(
        r#"{"ready":false,"config_applied":false,"applied_index":null,"routes":0,"usable_routes":0,"disabled_upstreams":[]}"#,
    );
}

#[test]
fn the_cluster_view_round_trips() {
    let literal = r#"{"id":1,"region":"us","role":"leader","term":3,"leader":1,"last_log_index":12,"commit_index":12,"applied_index":12,"snapshot_index":null,"purged_index":null,"quorum_ack_ms":40,"members":[{"id":1,"role":"voter","raft_addr":"127.0.0.1:7080","admin_addr":"127.0.0.1:9080","region":"us","matched_index":12,"lag":0,"last_contact_ms":null},{"id":2,"role":"learner","raft_addr":"127.0.0.1:7081","admin_addr":null,"region":null,"matched_index":7,"lag":5,"last_contact_ms":40}]}"#;
    let view: ClusterView = same_bytes(literal);
    assert_eq!(view.role, Role::Leader);
    assert_eq!(view.members[1].role, MemberRole::Learner);
    for role in ["follower", "candidate", "learner", "shutdown", "isolated"] {
        let text = literal.replacen("\"leader\"", &format!("\"{role}\""), 1);
        let view: ClusterView = same_bytes(&text);
        assert_eq!(view.role.as_str(), role);
    }
    assert_eq!(view.members[0].role.as_str(), "voter");
}

#[test]
fn member_changes_round_trip() {
    let add: AddMember = serde_json::from_str(r#"{"id":4,"raft_addr":"127.0.0.1:7084"}"#).unwrap();
    assert!(add.voter, "a new member is promoted unless told otherwise");
    same_bytes::<AddMember>(r#"{"id":4,"raft_addr":"127.0.0.1:7084","voter":false}"#);
    assert!(
        serde_json::from_str::<AddMember>(r#"{"id":4,"raft_addr":"x","vote":true}"#).is_err(),
        "a misspelt field is refused, not ignored"
    );
    same_bytes::<MemberAdded>(r#"{"added":4,"voter":true}"#);
    same_bytes::<MemberRemoved>(r#"{"removed":4}"#);
    same_bytes::<WriteAck>(r#"{"changed":true,"applied_index":9}"#);
    same_bytes::<WriteAck>(r#"{"changed":false,"applied_index":null}"#);
    same_bytes::<Vec<KeyName>>(r#"[{"name":"ci"},{"name":"web"}]"#);
}

const QUANTILES: &str = r#"{"count":40,"p50":12.0,"p90":30.5,"p95":41.0,"p99":81.4,"p999":90.0}"#;

#[test]
fn the_health_answer_round_trips() {
    let window = format!(
        r#"{{"window_s":30,"attempts":40,"successes":38,"client_errors":1,"errors":1,"timeouts":0,"error_rate":0.025,"ttfb_ms":{QUANTILES},"total_ms":{QUANTILES}}}"#
    );
    let view = format!(
        r#"{{"nodes":2,"attempts":52,"successes":50,"errors":2,"timeouts":0,"error_rate":0.038461538461538464,"ttfb_ms":{QUANTILES},"total_ms":{QUANTILES},"report_age_ms":800}}"#
    );
    let literal = format!(
        r#"{{"node":2,"region":"eu","upstreams":[{{"id":"alpha","region":"us","base_url":"http://127.0.0.1:4001/v1","key":"not_needed","disabled":null,"in_flight":3,"circuit":"half_open","window":{window},"regions":{{"eu":{view},"us":{view}}},"merged":{view}}},{{"id":"bravo","region":"eu","base_url":"https://api.openai.com/v1","key":{{"missing":"OPENAI_API_KEY is not set"}},"disabled":{{"field":"api_key_env","reason":"OPENAI_API_KEY is not set"}},"in_flight":0,"circuit":"open","window":{window},"regions":{{}},"merged":{view}}}],"reports":{{"1":{{"region":"us","seq":4,"age_ms":1200,"stale":false}},"3":{{"region":"ap","seq":9,"age_ms":90000,"stale":true,"undecodable":2}}}}}}"#
    );
    let health: HealthAnswer = same_bytes(&literal);
    assert!(health.classes.is_empty());
    assert_eq!(health.upstreams[0].cooldown_ms, 0);
    // A cooled upstream and the priority classes (the shape the dashboard
    // renders).
    let cooled = literal.replacen(
        r#""circuit":"half_open","#,
        r#""circuit":"half_open","cooldown_ms":4200,"#,
        1,
    );
    let classes = r#","classes":[{"name":"pro","requests":1234,"success_ratio":0.9993,"p99_ms":812.0,"slo":{"success":0.999,"p99_ms":2000},"error_budget_left":0.3},{"name":"free","requests":0,"success_ratio":1.0,"p99_ms":null,"slo":null,"error_budget_left":null}]}"#;
    let with = format!("{}{classes}", &cooled[..cooled.len() - 1]);
    let h: HealthAnswer = same_bytes(&with);
    assert_eq!(h.upstreams[0].cooldown_ms, 4_200);
    assert_eq!(h.classes[0].slo.unwrap().p99_ms, Some(2_000));
    assert_eq!(h.classes[1].error_budget_left, None);
    let alpha = &health.upstreams[0];
    assert_eq!(alpha.circuit, CircuitState::HalfOpen);
    assert_eq!(alpha.shared.regions["us"].nodes, 2);
    assert_eq!(
        health.upstreams[1].key,
        KeyStatus::Missing("OPENAI_API_KEY is not set".into())
    );
    assert_eq!(health.reports[&3].undecodable, 2);
    assert_eq!(
        serde_json::to_string(&KeyStatus::Present).unwrap(),
        r#""present""#
    );
    for c in [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
    ] {
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            format!("\"{}\"", c.as_str())
        );
    }
}

#[test]
fn events_round_trip() {
    let e: Events = same_bytes(
        r#"{"node":1,"region":"us","failovers":[{"seq":2,"at_unix_ms":1764480000000,"request_id":"req-2","route":"fast","from":"alpha","to":"bravo","reason":"HTTP 503"}]}"#,
    );
    assert_eq!(e.failovers[0].to, "bravo");
    same_bytes::<Events>(r#"{"node":1,"region":"us","failovers":[]}"#);
}
