//! OpenTelemetry over real processes: a `meridian serve` exporting to an
//! OTLP/HTTP receiver run by the test (its protobuf decoded with
//! `opentelemetry-proto`), in front of `meridian-mock` upstreams that
//! record the `traceparent` they were sent. A request is followed end to
//! end: the client's span → the node's request span (same trace, the
//! client's span its parent) → one attempt span per attempt (a failover
//! gives two) → the upstream, whose parent is the answering attempt's
//! span. A hostile `traceparent` starts a new trace; without
//! `[telemetry]` the node adds no `traceparent` of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::json;
use support::config::{Config, key, route_to, tiers, upstream};
use support::{Mock, Node, chat_body};

const CLIENT: &str = "sk-client-telemetry-0123456789";
const AUTH: (&str, &str) = ("authorization", "Bearer sk-client-telemetry-0123456789");
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// What the receiver was sent: every span, with its service's name.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

impl Received {
    fn spans_of(&self, trace: &str) -> Vec<Span> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| hex(&s.trace_id) == trace)
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn services(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The spans of `trace` once `want` of them have arrived (the node
    /// exports every 50 ms here); what arrived by the deadline otherwise.
    async fn wait_for(&self, trace: &str, want: usize) -> Vec<Span> {
        for _ in 0..200 {
            let spans = self.spans_of(trace);
            if spans.len() >= want {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.spans_of(trace)
    }
}

async fn collect(State(received): State<Received>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).unwrap();
    let mut all = received.0.lock().unwrap();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                Any::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                all.push((service.clone(), span));
            }
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

/// An OTLP/HTTP receiver on a loopback port: its base URL and its record.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(collect))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr<'a>(span: &'a Span, name: &str) -> Option<&'a Any> {
    span.attributes
        .iter()
        .find(|a| a.key == name)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn text(span: &Span, name: &str) -> String {
    match attr(span, name) {
        Some(Any::StringValue(s)) => s.clone(),
        other => panic!("{name} on {}: {other:?}", span.name),
    }
}

fn int(span: &Span, name: &str) -> i64 {
    match attr(span, name) {
        Some(Any::IntValue(n)) => *n,
        other => panic!("{name} on {}: {other:?}", span.name),
    }
}

/// A traced node (`[telemetry]` at `otlp`) with key `app` and route `m`
/// failing over from `bad` (tier 0) to `good` (tier 1).
async fn traced_node(otlp: &str, bad: &Mock, good: &Mock) -> Node {
    let otlp = otlp.to_owned();
    Node::start_with(
        |c: &mut Config| {
            c.keys.push(key("app", "TEST_CLIENT_KEY"));
            c.upstreams.push(upstream("bad", bad));
            c.upstreams.push(upstream("good", good));
            c.routes
                .push(tiers("m", &[("bad", "gpt-bad"), ("good", "gpt-good")]));
            c.routes.push(route_to("solo", "good", "gpt-good"));
            c.telemetry.otlp_endpoint = Some(otlp);
            c.telemetry.service_name = "meridian-test".to_owned();
        },
        &[
            ("TEST_CLIENT_KEY", CLIENT),
            // The SDK's batch delay, read from the environment: spans
            // leave every 50 ms instead of every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await
}

fn split(traceparent: &str) -> (String, String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    assert_eq!(traceparent.len(), 55, "{traceparent}");
    (
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

#[tokio::test]
async fn a_request_is_followed_from_the_client_through_a_failover_to_the_upstream() {
    let (otlp, received) = receiver().await;
    let (bad, good) = (Mock::start(&[]).await, Mock::start(&[]).await);
    bad.behave(json!({"error_rate": 1.0, "error_status": 500}))
        .await;
    let node = traced_node(&otlp, &bad, &good).await;

    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let answer = node
        .chat(
            chat_body("m"),
            &[
                AUTH,
                ("traceparent", traceparent.as_str()),
                ("tracestate", "congo=t61rcWkgMzE"),
            ],
        )
        .await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.header("x-meridian-attempts"), "2");

    // The upstream that answered was sent the client's trace, with a
    // parent of Meridian's own, and the client's tracestate.
    let stats = good.stats().await;
    let seen = stats["last_traceparent"].as_str().unwrap().to_owned();
    let (trace, parent, flags) = split(&seen);
    assert_eq!(trace, CLIENT_TRACE);
    assert_ne!(parent, CLIENT_SPAN);
    assert_eq!(flags, "01");
    assert_eq!(stats["last_tracestate"], "congo=t61rcWkgMzE");
    let failed_seen = bad.stats().await["last_traceparent"]
        .as_str()
        .unwrap()
        .to_owned();
    let (failed_trace, failed_parent, _) = split(&failed_seen);
    assert_eq!(failed_trace, CLIENT_TRACE);

    // The receiver: one request span and two attempt spans in that trace.
    let spans = received.wait_for(CLIENT_TRACE, 3).await;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let request = spans.iter().find(|s| s.name == "request").unwrap();
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(hex(&request.parent_span_id), CLIENT_SPAN);
    assert_eq!(text(request, "meridian.route"), "m");
    assert_eq!(text(request, "meridian.key"), "app");
    assert_eq!(text(request, "url.path"), "/v1/chat/completions");
    assert_eq!(int(request, "http.response.status_code"), 200);
    assert_eq!(int(request, "meridian.attempts"), 2);
    assert!(int(request, "gen_ai.usage.input_tokens") > 0);
    assert!(int(request, "gen_ai.usage.output_tokens") > 0);

    let attempt = |upstream: &str| {
        spans
            .iter()
            .find(|s| s.name != "request" && text(s, "meridian.upstream") == upstream)
            .unwrap_or_else(|| panic!("no attempt at {upstream}: {spans:#?}"))
    };
    let (first, second) = (attempt("bad"), attempt("good"));
    for (span, upstream, model, tier) in [
        (first, "bad", "gpt-bad", 0),
        (second, "good", "gpt-good", 1),
    ] {
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(span.parent_span_id, request.span_id, "{}", span.name);
        assert_eq!(text(span, "gen_ai.request.model"), model);
        assert_eq!(text(span, "meridian.target"), format!("{upstream}/{model}"));
        assert_eq!(int(span, "meridian.tier"), tier);
    }
    assert_eq!(text(first, "meridian.outcome"), "error");
    assert_eq!(int(first, "http.response.status_code"), 500);
    assert_eq!(text(second, "meridian.outcome"), "success");
    assert_eq!(int(second, "http.response.status_code"), 200);
    assert!(int(second, "meridian.ttfb_ms") >= 0);
    assert!(int(second, "gen_ai.usage.output_tokens") > 0);
    // Each upstream's parent is its own attempt's span.
    assert_eq!(hex(&second.span_id), parent);
    assert_eq!(hex(&first.span_id), failed_parent);

    assert!(received.services().iter().all(|s| s == "meridian-test"));
    // The key's name, never the key.
    for span in &spans {
        for a in &span.attributes {
            assert!(!format!("{:?}", a.value).contains(CLIENT), "{}", a.key);
        }
    }

    // A stream: its spans end when it does, with its outcome.
    let (status, headers, _chunks) = node
        .stream("/v1/chat/completions", stream_body("solo"), &[AUTH])
        .await;
    assert_eq!(status.as_u16(), 200);
    let id = headers["x-request-id"].to_str().unwrap().to_owned();
    let traced = good.stats().await["last_traceparent"]
        .as_str()
        .unwrap()
        .to_owned();
    let (trace, parent, _) = split(&traced);
    assert_ne!(trace, CLIENT_TRACE);
    let spans = received.wait_for(&trace, 2).await;
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let request = spans.iter().find(|s| s.name == "request").unwrap();
    assert!(request.parent_span_id.is_empty(), "a new trace has a root");
    assert_eq!(text(request, "meridian.request_id"), id);
    let attempt = spans.iter().find(|s| s.name != "request").unwrap();
    assert_eq!(hex(&attempt.span_id), parent);
    assert_eq!(text(attempt, "meridian.outcome"), "complete");
}

fn stream_body(model: &str) -> serde_json::Value {
    let mut body = chat_body(model);
    body["stream"] = json!(true);
    body
}

#[tokio::test]
async fn a_hostile_traceparent_starts_a_new_trace() {
    let (otlp, received) = receiver().await;
    let (bad, good) = (Mock::start(&[]).await, Mock::start(&[]).await);
    let node = traced_node(&otlp, &bad, &good).await;
    let long = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01{}", "0".repeat(4000));
    for hostile in [
        long.as_str(),
        "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    ] {
        let answer = node
            .chat(chat_body("solo"), &[AUTH, ("traceparent", hostile)])
            .await;
        assert_eq!(
            answer.status,
            200,
            "{hostile}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        let seen = good.stats().await["last_traceparent"]
            .as_str()
            .unwrap()
            .to_owned();
        let (trace, parent, _) = split(&seen);
        assert_ne!(trace, CLIENT_TRACE, "{hostile}");
        assert_ne!(trace, "0".repeat(32), "{hostile}");
        let spans = received.wait_for(&trace, 2).await;
        let request = spans.iter().find(|s| s.name == "request").unwrap();
        assert!(request.parent_span_id.is_empty(), "{hostile}: {request:#?}");
        let attempt = spans.iter().find(|s| s.name != "request").unwrap();
        assert_eq!(hex(&attempt.span_id), parent);
    }
    assert!(received.spans_of(CLIENT_TRACE).is_empty());
}

#[tokio::test]
async fn without_telemetry_no_traceparent_is_added_and_the_clients_is_forwarded() {
    let good = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.keys.push(key("app", "TEST_CLIENT_KEY"));
            c.upstreams.push(upstream("good", &good));
            c.routes.push(route_to("solo", "good", "gpt-good"));
        },
        &[("TEST_CLIENT_KEY", CLIENT)],
    )
    .await;
    let answer = node.chat(chat_body("solo"), &[AUTH]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        good.stats().await["last_traceparent"],
        serde_json::Value::Null
    );
    // W3C: a system that takes no part in the trace forwards it as it is.
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let answer = node
        .chat(
            chat_body("solo"),
            &[AUTH, ("traceparent", traceparent.as_str())],
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(good.stats().await["last_traceparent"], traceparent.as_str());
}

#[test]
fn a_bad_telemetry_section_stops_the_start_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (section, field) in [
        (
            "otlp_endpoint = \"grpc://collector:4317\"",
            "telemetry.otlp_endpoint",
        ),
        ("sample_ratio = 1.5", "telemetry.sample_ratio"),
    ] {
        let path = dir.path().join("meridian.toml");
        std::fs::write(
            &path,
            format!("[node]\nid = 1\nregion = \"r\"\n[telemetry]\n{section}\n"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["config", "check"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{section}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(field), "{section}: {stderr}");
    }
}

#[tokio::test]
async fn a_trace_is_sampled_as_its_client_decided_and_new_ones_by_the_ratio() {
    let (otlp, received) = receiver().await;
    let good = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.keys.push(key("app", "TEST_CLIENT_KEY"));
            c.upstreams.push(upstream("good", &good));
            c.routes.push(route_to("solo", "good", "gpt-good"));
            c.telemetry.otlp_endpoint = Some(otlp);
            c.telemetry.sample_ratio = 0.0;
        },
        &[
            ("TEST_CLIENT_KEY", CLIENT),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    // A new trace, at ratio 0: not recorded, yet the upstream still gets
    // a traceparent (unsampled) to carry on.
    let answer = node.chat(chat_body("solo"), &[AUTH]).await;
    assert_eq!(answer.status, 200);
    let seen = good.stats().await["last_traceparent"]
        .as_str()
        .unwrap()
        .to_owned();
    let (unsampled, _, flags) = split(&seen);
    assert_eq!(flags, "00");
    // The client's sampled trace is recorded whatever the ratio.
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let answer = node
        .chat(
            chat_body("solo"),
            &[AUTH, ("traceparent", traceparent.as_str())],
        )
        .await;
    assert_eq!(answer.status, 200);
    let seen = good.stats().await["last_traceparent"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(split(&seen).2, "01");
    assert_eq!(received.wait_for(CLIENT_TRACE, 2).await.len(), 2);
    assert!(received.spans_of(&unsampled).is_empty());
}

#[tokio::test]
async fn a_collector_that_is_down_costs_no_request_and_is_logged_once() {
    // A port with nothing listening on it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let otlp = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let good = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.keys.push(key("app", "TEST_CLIENT_KEY"));
            c.upstreams.push(upstream("good", &good));
            c.routes.push(route_to("solo", "good", "gpt-good"));
            c.telemetry.otlp_endpoint = Some(otlp);
        },
        &[
            ("TEST_CLIENT_KEY", CLIENT),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    for _ in 0..3 {
        let answer = node.chat(chat_body("solo"), &[AUTH]).await;
        assert_eq!(answer.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut log = node.log();
    for _ in 0..200 {
        if log.contains("OTLP export failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        log = node.log();
    }
    assert_eq!(log.matches("OTLP export failed").count(), 1, "{log}");
    assert!(!log.contains(CLIENT));
}
