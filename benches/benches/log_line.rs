//! The cost of a request's access line at the default filter (`info`),
//! side by side: tracing-subscriber's default text layout as the library
//! writes it, and as the node writes the same layout
//! (`meridian::log_line`: its timestamp and its fields). Each iteration is
//! what one request costs the log: its `request` span created, entered,
//! the "request done" event with the proxy's fields, the span closed. The
//! line goes to a sink, so the log thread's share is not in either. The
//! same for `--log-format json` (`meridian::log_line::LineJson`).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use meridian::log_line::{LineFields, LineJson, LineTime};
use tracing::{info, info_span};
use tracing_subscriber::fmt::format::JsonFields;

fn one_request(n: u64) {
    let request = info_span!("request", id = %"5f0c2a9e-7d41-4b8e-9a63-1c2d3e4f5a6b");
    let _entered = request.enter();
    let (key, route, upstream, model) = ("team-a", "chat", "openai-eu", "gpt-4o-mini");
    let usage = Some((1_204u64, 311u64, 0u64));
    info!(
        key = %key, route = %route, upstream = %upstream, model = %model,
        stream = false, status = 200u16,
        ttfb_ms = black_box(n % 400), total_ms = black_box(n % 900),
        prompt_tokens = usage.map(|u| u.0), completion_tokens = usage.map(|u| u.1),
        cached_tokens = usage.map(|u| u.2), cost_usd = Some(0.000_372_6f64), "request done"
    );
}

/// Times [`one_request`] with `subscriber` as the thread's dispatcher.
fn under(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    subscriber: impl Into<tracing::Dispatch>,
) {
    tracing::dispatcher::with_default(&subscriber.into(), || {
        let mut n = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                one_request(n)
            })
        });
    });
}

fn access_line(c: &mut Criterion) {
    let text = || {
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(std::io::sink)
    };
    let mut group = c.benchmark_group("access_line");
    under(&mut group, "tracing_subscriber_default", text().finish());
    let node = text().with_timer(LineTime).fmt_fields(LineFields).finish();
    under(&mut group, "meridian_log_line", node);
    group.finish();

    // `--log-format json`.
    let mut group = c.benchmark_group("access_line_json");
    let library = text().json().with_current_span(true).finish();
    under(&mut group, "tracing_subscriber_default", library);
    let node = text()
        .fmt_fields(JsonFields::new())
        .event_format(LineJson::new(LineTime))
        .finish();
    under(&mut group, "meridian_log_line", node);
    group.finish();
}

criterion_group!(benches, access_line);
criterion_main!(benches);
