//! Micro-benchmarks of the work Meridian does per request before any byte
//! goes upstream: client-key check, body probe and model rewrite, route
//! lookup and target choice, the usage scan of a stream chunk, the scrub
//! of provider keys from an answer, and the Responses stream's id tagging.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::HeaderMap;
use meridian::health::HealthBoard;
use meridian::health::blend::Freshness;
use meridian::health::peers::Received;
use meridian::health::window::{Quantiles, WindowSummary};
use meridian::responses::TagStream;
use meridian::routing::{RoutingSnapshot, Secrets};
use meridian::scrub::Scrubber;
use meridian::select::Policy;
use meridian::translate::StreamTranslator;
use meridian::{request_body, usage};
use rand::SeedableRng;
use rand::rngs::SmallRng;

struct Env;
impl Secrets for Env {
    fn env(&self, name: &str) -> Option<String> {
        Some(format!("bench-secret-for-{name}"))
    }
}

/// 8 upstreams, 40 routes of two tiers of three targets: a large deployment.
fn snapshot() -> RoutingSnapshot {
    use harness::config as build;
    let mut config = build::node(1, "bench", std::path::Path::new("data"));
    config.keys = vec![proto::config::KeyConfig {
        name: "app".to_owned(),
        key_env: "K".to_owned(),
        ..Default::default()
    }];
    config.upstreams = (0..8)
        .map(|u| {
            let mut upstream =
                build::upstream(&format!("u{u}"), &format!("https://u{u}.example/v1"));
            upstream.api_key_env = Some(format!("U{u}"));
            upstream
        })
        .collect();
    config.routes = (0..40)
        .map(|r| {
            let t = |i: usize| {
                let mut target = build::target(&format!("u{}", (r + i) % 8), &format!("m{r}-{i}"));
                target.input_per_mtok = 0.1;
                target
            };
            build::route(
                &format!("route-{r}"),
                vec![vec![t(0), t(1), t(2)], vec![t(3), t(4), t(5)]],
            )
        })
        .collect();
    config.validate().unwrap();
    RoutingSnapshot::build(&config, &Env, None).unwrap()
}

fn chat_body(content_len: usize) -> Bytes {
    let body = serde_json::json!({
        "model": "route-17",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "x".repeat(content_len)}
        ],
        "temperature": 0.2,
        "stream": false
    });
    Bytes::from(serde_json::to_vec(&body).unwrap())
}

/// A board where three regions reported every upstream; its estimates are
/// published into the upstreams as the board follower does, so every
/// target's estimate falls through this node's (empty) window to them.
fn board() -> HealthBoard {
    use proto::health::{HealthReport, UpstreamWindow, empty_histogram, encode_histogram};
    let mut h = empty_histogram();
    for v in 1..=2_000u64 {
        h.record(v * 97 % 300_000 + 1).unwrap();
    }
    let window = UpstreamWindow {
        successes: 2_000,
        ttfb: encode_histogram(&h).unwrap(),
        total: encode_histogram(&h).unwrap(),
        ..UpstreamWindow::default()
    };
    let reports = (1..=3u64)
        .map(|id| {
            let report = HealthReport {
                seq: 1,
                region: format!("r{id}"),
                window_ms: 30_000,
                upstreams: (0..8).map(|u| (format!("u{u}"), window.clone())).collect(),
                ..HealthReport::default()
            };
            (id, Arc::new(Received::decode(report, 0).unwrap()))
        })
        .collect();
    HealthBoard::build(&reports, &(1..=3).collect(), 0)
}

fn route_and_choose(c: &mut Criterion) {
    let snap = snapshot();
    let board = board();
    let policy = Policy::default();
    for upstream in &snap.upstreams {
        let estimate = board.ttfb_estimate(&upstream.id, "r1", policy.min_samples);
        assert!(estimate.is_some());
        let mut freshness = Freshness::default();
        freshness.add(0, policy.blend.half_life_ms);
        let own = WindowSummary {
            ttfb_ms: estimate
                .map(|q| Quantiles { count: 3, ..q })
                .unwrap_or_default(),
            ..WindowSummary::default()
        };
        upstream.live.publish_window(own, freshness);
        upstream.live.publish_shared(estimate);
    }
    let mut rng = SmallRng::seed_from_u64(1);
    c.bench_function("route lookup + target plan (2 tiers x 3)", |b| {
        b.iter(|| {
            let route = snap.route(black_box("route-17")).unwrap();
            black_box(route.plan(&policy, false, &mut rng))
        })
    });
    // One target's estimate, own samples blended with the cluster's: as
    // every request computed it before, and as the requests of one
    // millisecond share it now.
    let live = &snap.upstreams[0].live;
    c.bench_function("ttfb estimate, blended for each call", |b| {
        b.iter(|| black_box(live.blended(black_box(1_000), &policy.blend)))
    });
    c.bench_function("ttfb estimate, shared within its millisecond", |b| {
        b.iter(|| black_box(live.ttfb_estimate(black_box(1_000), &policy.blend)))
    });
}

fn body_rewrite(c: &mut Criterion) {
    let snap = snapshot();
    let target = &snap.route("route-17").unwrap().tiers[0][0];
    let mut group = c.benchmark_group("probe + model rewrite");
    for size in [200usize, 4_000, 100_000] {
        let body = chat_body(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(body.len()), &body, |b, body| {
            b.iter(|| {
                let probe = request_body::probe(black_box(body)).unwrap();
                black_box(request_body::splice(
                    body,
                    probe.model_span,
                    &target.model_json,
                ))
            })
        });
    }
    group.finish();
}

fn client_key(c: &mut Criterion) {
    let snap = snapshot();
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        "Bearer bench-secret-for-K".parse().unwrap(),
    );
    c.bench_function("client key check", |b| {
        b.iter(|| black_box(snap.keys.authenticate(black_box(&headers)).unwrap()))
    });
}

fn stream_usage_scan(c: &mut Criterion) {
    let chunk = br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hello"},"finish_reason":null}]}

"#;
    c.bench_function("usage scan of a stream chunk", |b| {
        b.iter(|| black_box(usage::from_sse(black_box(chunk))))
    });
    // With `stream_options.include_usage`, OpenAI writes `"usage":null`
    // into every chunk before the last.
    let null = br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hello"},"finish_reason":null}],"usage":null}

"#;
    c.bench_function("usage scan of a stream chunk, usage null", |b| {
        b.iter(|| black_box(usage::from_sse(black_box(null))))
    });
}

/// The usage read from every plain answer (for its cost and the log
/// line), over answers of the benchmarks' size and of a long reply: the
/// read should not grow with the reply's text.
fn plain_usage(c: &mut Criterion) {
    let text = "The sea is wide, and its tides keep time for every shore it touches. ";
    let mut group = c.benchmark_group("usage of a plain answer");
    for size in [8usize, 4_000, 32_000] {
        let content = text.repeat(size / text.len() + 1)[..size].to_owned();
        let body = serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 25, "completion_tokens": 9, "total_tokens": 34,
                "prompt_tokens_details": {"cached_tokens": 0}},
            "system_fingerprint": "fp_1"
        })
        .to_string();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(body.len()), &body, |b, body| {
            b.iter(|| black_box(usage::from_json(black_box(body.as_bytes()))))
        });
    }
    group.finish();
}

/// The scrub of every answer and stream event: 8 provider keys of the
/// three shapes, over a clean answer (the usual case) and an SSE chunk.
fn scrub_answers(c: &mut Criterion) {
    let keys: Vec<String> = (0..8)
        .map(|i| match i % 3 {
            0 => format!("sk-proj-{i}Zx81Qm4TvL0pR7wN2yB5cH9kD3fG6jA"),
            1 => format!("UPSECRETB+x/y=Zq81{i}Kp+Lm0/Tq=="),
            _ => format!("3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2{i}"),
        })
        .collect();
    let scrub = Scrubber::new(keys.iter().map(String::as_str));
    let text = "The task asks for a skilled answer: use the + and / operators, = signs, and URLs like https://example.com/a?b=c%2Fd. ";
    let mut group = c.benchmark_group("scrub answer, 8 keys");
    for size in [1_000usize, 16_000, 256_000] {
        let content = text.repeat(size / text.len() + 1)[..size].to_owned();
        let body = Bytes::from(
            serde_json::json!({"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
                .to_string(),
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(body.len()), &body, |b, body| {
            b.iter(|| black_box(scrub.bytes(black_box(body.clone()))))
        });
    }
    group.finish();
    let chunk = Bytes::from_static(
        br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hello"},"finish_reason":null}]}

"#,
    );
    c.bench_function("scrub of a stream chunk, 8 keys", |b| {
        b.iter(|| black_box(scrub.bytes(black_box(chunk.clone()))))
    });
}

/// The Responses stream's id tagging, per event: a text delta (most of a
/// stream) passes by a search alone; a lifecycle event has its ids tagged.
fn responses_tagging(c: &mut Criterion) {
    let delta = br#"event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":7,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"hello","logprobs":[]}

"#;
    let created = br#"event: response.created
data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","created_at":1,"status":"in_progress","model":"m","output":[],"previous_response_id":null,"usage":null}}

"#;
    let mut out = BytesMut::with_capacity(1024);
    let mut group = c.benchmark_group("responses stream tagging");
    for (name, event) in [
        ("text delta", &delta[..]),
        ("response.created", &created[..]),
    ] {
        let mut tag = TagStream::new("a", None, std::sync::Arc::from(""));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                tag.events(black_box(event), &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    route_and_choose,
    body_rewrite,
    client_key,
    stream_usage_scan,
    plain_usage,
    scrub_answers,
    responses_tagging
);
criterion_main!(benches);
