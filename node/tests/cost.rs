//! Cost to the client over real sockets: `meridian` in front of
//! `meridian-mock` processes, each answer's `x-meridian-cost-usd` (or a
//! stream's `usage.cost`) checked against the usage the answer itself
//! reports times the prices of the target that answered, and `/metrics`
//! checked for the cost counter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use proto::config::{TargetConfig, UpstreamKind};
use serde_json::{Value, json};
use support::config::{Config, route, target, upstream};
use support::{Mock, Node, chat_body, send};

/// Input and output prices, in millionths of a dollar per million tokens,
/// so the expected cost is exact integer arithmetic (picodollars).
const A_PRICE: (u64, u64) = (2_000_000, 8_000_000); // $2 / $8 per Mtok
const B_PRICE: (u64, u64) = (150_000, 600_000); // $0.15 / $0.60 per Mtok

fn priced(upstream: &str, model: &str, (input, output): (u64, u64)) -> TargetConfig {
    let mut t = target(upstream, model);
    t.input_per_mtok = input as f64 / 1e6;
    t.output_per_mtok = output as f64 / 1e6;
    t
}

/// The cost of `input` and `output` tokens at `price`, written as the
/// header writes it: plain decimal dollars, trailing zeros dropped.
fn expected(input: u64, output: u64, (pin, pout): (u64, u64)) -> String {
    let pico = u128::from(input) * u128::from(pin) + u128::from(output) * u128::from(pout);
    let (whole, frac) = (pico / 1_000_000_000_000, pico % 1_000_000_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:012}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Routes: `m` on `a` (priced) falling back to `b` (priced differently),
/// `free` on `a` with no price, `msg` on `a` for Messages clients (an OpenAI
/// target, so translated), `nat` on the native Anthropic upstream `n`.
async fn node(a: &Mock, b: &Mock, n: &Mock) -> Node {
    Node::start_with(
        |c: &mut Config| {
            let mut native = upstream("n", n);
            native.kind = UpstreamKind::Anthropic;
            c.upstreams = vec![upstream("a", a), upstream("b", b), native];
            let mut m = route(
                "m",
                vec![
                    vec![priced("a", "a-model", A_PRICE)],
                    vec![priced("b", "b-model", B_PRICE)],
                ],
            );
            m.first_byte_timeout_ms = Some(400);
            m.request_timeout_ms = Some(5000);
            c.routes.push(m);
            c.routes
                .push(route("free", vec![vec![target("a", "a-model")]]));
            c.routes
                .push(route("msg", vec![vec![priced("a", "a-model", A_PRICE)]]));
            c.routes
                .push(route("nat", vec![vec![priced("n", "claude-x", B_PRICE)]]));
        },
        &[],
    )
    .await
}

async fn mocks() -> (Mock, Mock, Mock) {
    (
        Mock::start(&[]).await,
        Mock::start(&[]).await,
        Mock::start(&[]).await,
    )
}

fn text(frames: &[Bytes]) -> String {
    frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

/// The JSON of every `data:` line that is JSON.
fn data_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

#[tokio::test]
async fn plain_answers_carry_their_cost_at_the_answering_targets_prices() {
    let (a, b, n) = mocks().await;
    let node = node(&a, &b, &n).await;

    // Answered by `a`, at its prices.
    let answer = node.chat(chat_body("m"), &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-meridian-upstream"), "a");
    let usage = answer.json()["usage"].clone();
    let (p, c) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p > 0 && c > 0, "{usage}");
    let cost = answer.header("x-meridian-cost-usd");
    assert_eq!(cost, expected(p, c, A_PRICE), "{usage}");
    assert!(!cost.contains('e') && cost.parse::<f64>().unwrap() > 0.0);

    // No price: no header, never a made-up figure.
    let answer = node.chat(chat_body("free"), &[]).await;
    assert_eq!(answer.status, 200);
    assert!(answer.json()["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(
        answer.headers.get("x-meridian-cost-usd").is_none(),
        "{:?}",
        answer.headers
    );

    // A Messages client through an OpenAI target: the cost of the
    // upstream's usage, which the translated answer reports as its own.
    let body = json!({"model": "msg", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hi"}]});
    let answer = node.post("/v1/messages", body.to_string(), &[]).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let v = answer.json();
    assert_eq!(v["type"], "message", "{v}");
    let (p, c) = (
        v["usage"]["input_tokens"].as_u64().unwrap(),
        v["usage"]["output_tokens"].as_u64().unwrap(),
    );
    assert_eq!(
        answer.header("x-meridian-cost-usd"),
        expected(p, c, A_PRICE)
    );

    // `a` fails: the fallback's own prices (last, as `a` is unhealthy after).
    a.behave(json!({"error_rate": 1.0, "error_status": 500}))
        .await;
    let answer = node.chat(chat_body("m"), &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-meridian-upstream"), "b");
    assert_eq!(answer.header("x-meridian-fallback"), "true");
    let usage = answer.json()["usage"].clone();
    let (p, c) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(
        answer.header("x-meridian-cost-usd"),
        expected(p, c, B_PRICE)
    );

    // /metrics counts what was spent, by route and answering upstream.
    let cost = |route: &str, upstream: &str| {
        format!("meridian_cost_usd_total{{route=\"{route}\",upstream=\"{upstream}\"}}")
    };
    assert!(series(&node, &cost("m", "a")).await > 0.0);
    assert!(series(&node, &cost("m", "b")).await > 0.0);
    assert!(series(&node, &cost("msg", "a")).await > 0.0);
    // Written, and zero: no price, no cost.
    assert_eq!(reported(&node, &cost("free", "a")).await, Some(0.0));
    assert!(
        series(
            &node,
            "meridian_tokens_total{route=\"free\",upstream=\"a\",kind=\"output\"}"
        )
        .await
            > 0.0
    );
}

#[tokio::test]
async fn streams_carry_their_cost_in_the_final_usage() {
    let (a, b, n) = mocks().await;
    for mock in [&a, &n] {
        mock.behave(json!({"chunks": 4})).await;
    }
    let node = node(&a, &b, &n).await;

    // OpenAI chat with include_usage: `usage.cost` in the usage chunk.
    let mut body = chat_body("m");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, _, frames) = node.chat_stream(body.clone()).await;
    assert_eq!(status, 200);
    let text = text(&frames);
    let chunks = data_lines(&text);
    let with_usage: Vec<&Value> = chunks.iter().filter(|c| c["usage"].is_object()).collect();
    assert_eq!(with_usage.len(), 1, "{text}");
    let usage = &with_usage[0]["usage"];
    let (p, c) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(
        text.contains(&format!(",\"cost\":{}}}", expected(p, c, A_PRICE))),
        "{text}"
    );
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    // Every other chunk is as the mock wrote it: none has a cost.
    assert_eq!(text.matches("\"cost\"").count(), 1, "{text}");

    // Without a price the usage chunk goes out as it came.
    body["model"] = json!("free");
    let (_, _, frames) = node.chat_stream(body).await;
    let text = self::text(&frames);
    assert!(
        text.contains("\"usage\":{") && !text.contains("\"cost\""),
        "{text}"
    );

    // Anthropic clients: `usage.cost` in `message_delta`, through the
    // OpenAI target (translated) and the native one (passed through).
    for (model, price) in [("msg", A_PRICE), ("nat", B_PRICE)] {
        let body = json!({"model": model, "max_tokens": 64, "stream": true,
            "messages": [{"role": "user", "content": "Say hi"}]});
        let (status, _, frames) = node.stream("/v1/messages", body, &[]).await;
        assert_eq!(status, 200, "{model}");
        let text = self::text(&frames);
        let events = data_lines(&text);
        let start = events
            .iter()
            .find(|e| e["type"] == "message_start")
            .unwrap_or_else(|| panic!("{model}: {text}"));
        let delta = events
            .iter()
            .find(|e| e["type"] == "message_delta")
            .unwrap_or_else(|| panic!("{model}: {text}"));
        let input = delta["usage"]["input_tokens"]
            .as_u64()
            .filter(|n| *n > 0)
            .or_else(|| start["message"]["usage"]["input_tokens"].as_u64())
            .unwrap();
        let output = delta["usage"]["output_tokens"].as_u64().unwrap();
        assert!(input > 0 && output > 0, "{model}: {text}");
        let cost = delta["usage"]["cost"]
            .as_f64()
            .unwrap_or_else(|| panic!("{model}: {text}"));
        let want: f64 = expected(input, output, price).parse().unwrap();
        assert!(
            (cost - want).abs() < 1e-15,
            "{model}: {cost} != {want}\n{text}"
        );
        assert!(
            !start.to_string().contains("\"cost\""),
            "{model}: message_start is left alone"
        );
    }
}

/// The node's `/metrics` text.
async fn metrics(node: &Node) -> String {
    let (status, _, body) = send(
        Method::GET,
        &format!("http://{}/metrics", node.admin),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200);
    String::from_utf8(body.to_vec()).unwrap()
}

/// The series `name` in `/metrics`, if written.
async fn reported(node: &Node, name: &str) -> Option<f64> {
    metrics(node)
        .await
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse::<f64>().unwrap())
}

/// The series `name` in `/metrics`, 0 when absent.
async fn series(node: &Node, name: &str) -> f64 {
    reported(node, name).await.unwrap_or(0.0)
}

/// A stream whose client did not ask for its usage is charged for it all
/// the same (the node asks the upstream), and the client gets the stream
/// it asked for: no usage chunk, no chunk without choices. Before, such a
/// stream was counted as free, so any key could stream past its credits.
#[tokio::test]
async fn streams_that_did_not_ask_for_their_usage_are_charged_for_it() {
    let (a, b, n) = mocks().await;
    a.behave(json!({"chunks": 4})).await;
    let node = node(&a, &b, &n).await;
    let cost = "meridian_cost_usd_total{route=\"m\",upstream=\"a\"}";
    let output = "meridian_tokens_total{route=\"m\",upstream=\"a\",kind=\"output\"}";
    let mut spent = 0.0;
    for options in [
        None,
        Some(json!(null)),
        Some(json!({"include_usage": false})),
    ] {
        let mut body = chat_body("m");
        body["stream"] = json!(true);
        if let Some(options) = &options {
            body["stream_options"] = options.clone();
        }
        let (status, _, frames) = node.chat_stream(body).await;
        assert_eq!(status, 200, "{options:?}");
        let text = text(&frames);
        let chunks = data_lines(&text);
        assert!(chunks.len() >= 4, "{options:?}: {text}");
        for chunk in &chunks {
            assert!(!chunk["usage"].is_object(), "{options:?}: {text}");
            assert!(
                chunk["choices"].as_array().is_some_and(|c| !c.is_empty()),
                "{options:?}: {text}"
            );
        }
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        let now = series(&node, cost).await;
        assert!(now > spent, "{options:?}: charged nothing ({now})");
        spent = now;
    }
    assert!(series(&node, output).await > 0.0);
}

/// A client that takes a stream's whole answer and hangs up before the
/// usage chunk is charged for it all the same: the node reads the upstream
/// on, for a short grace, for the usage. Before, such a stream was counted
/// as free, so any key could stream past its credits by leaving early.
#[tokio::test]
async fn a_client_that_hangs_up_before_the_usage_is_charged_for_it() {
    let (a, b, n) = mocks().await;
    // The usage chunk comes 300 ms after the answer's last words.
    a.behave(json!({"chunks": 3, "chunk_delay": {"fixed_ms": 300}}))
        .await;
    let node = node(&a, &b, &n).await;
    let cost = "meridian_cost_usd_total{route=\"m\",upstream=\"a\"}";
    let output = "meridian_tokens_total{route=\"m\",upstream=\"a\",kind=\"output\"}";

    let seen = read_until(&node, "\"finish_reason\":\"stop\"").await;
    assert!(
        !seen.contains("\"usage\":{"),
        "the usage came first: {seen}"
    );
    // The client had the whole answer; it left before the usage.

    charged(&node, cost, Duration::from_secs(5))
        .await
        .expect("a stream whose client left before its usage was charged nothing");
    assert_eq!(series(&node, output).await, 3.0);
}

/// The series `name` once it is above zero, waiting up to `patience` (a
/// stream whose client left is charged when its drain ends); `None` if it
/// never is.
async fn charged(node: &Node, name: &str, patience: Duration) -> Option<f64> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let value = series(node, name).await;
        if value > 0.0 {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Streams `m` over a raw connection until the answer holds `until`, then
/// hangs up; returns what was read.
async fn read_until(node: &Node, until: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut body = chat_body("m");
    body["stream"] = json!(true);
    let body = body.to_string();
    let mut client = tokio::net::TcpStream::connect(&node.api).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(until) {
        let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
            .await
            .expect("the answer stalled")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// A client that leaves long before the end (past the grace) is charged an
/// estimate: input from the prompt's size, an output token per event it was
/// sent. Before, it was charged nothing, so a key could read most of a long
/// answer for free.
#[tokio::test]
async fn a_client_that_leaves_long_before_the_end_is_charged_an_estimate() {
    let (a, b, n) = mocks().await;
    // 30 chunks 200 ms apart: six seconds, of which the client reads three
    // chunks (the role's and two of content).
    a.behave(json!({"chunks": 30, "chunk_delay": {"fixed_ms": 200}}))
        .await;
    let node = node(&a, &b, &n).await;
    let input = "meridian_tokens_total{route=\"m\",upstream=\"a\",kind=\"input\"}";
    let output = "meridian_tokens_total{route=\"m\",upstream=\"a\",kind=\"output\"}";
    let cost = "meridian_cost_usd_total{route=\"m\",upstream=\"a\"}";
    let seen = read_until(&node, "data:").await;
    let events = seen.matches("data:").count() as f64;

    let charged = charged(&node, output, Duration::from_secs(4))
        .await
        .expect("a stream left long before its end was charged nothing");
    assert!(
        charged >= events && charged < 30.0,
        "{charged} output tokens for {events} events sent"
    );
    let body_bytes = {
        let mut body = chat_body("m");
        body["stream"] = json!(true);
        body.to_string().len() as f64
    };
    assert!(series(&node, input).await >= (body_bytes / 4.0).floor());
    assert!(series(&node, cost).await > 0.0);
}

/// An OpenAI-compatible upstream that reports no usage, ever (it ignores
/// `stream_options`): a chat answer, or three chunks and `[DONE]`.
async fn no_usage_upstream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    // One request: its head, then its content-length body.
                    let text = String::from_utf8_lossy(&seen).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (name, value) = l.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + length {
                            let body = &text[end + 4..end + 4 + length];
                            let (kind, answer) = if body.contains("\"stream\":true") {
                                let chunk = |delta: &str| {
                                    format!(
                                        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{delta}}}]}}\n\n"
                                    )
                                };
                                (
                                    "text/event-stream",
                                    [
                                        chunk("{\"role\":\"assistant\"}"),
                                        chunk("{\"content\":\"hello\"}"),
                                        chunk("{\"content\":\" there\"}"),
                                        "data: [DONE]\n\n".to_owned(),
                                    ]
                                    .concat(),
                                )
                            } else {
                                (
                                    "application/json",
                                    "{\"id\":\"c\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hello there\"},\"finish_reason\":\"stop\"}]}".to_owned(),
                                )
                            };
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\r\n",
                                answer.len()
                            );
                            if conn.write_all(head.as_bytes()).await.is_err()
                                || conn.write_all(answer.as_bytes()).await.is_err()
                            {
                                return;
                            }
                            seen.drain(..end + 4 + length);
                            continue;
                        }
                    }
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    format!("http://{addr}/v1")
}

/// An upstream that reports no usage is charged an estimate from the sizes
/// of the request and the answer (a stream: of the events sent), so a key
/// cannot spend past its credits through it; the client is never told the
/// estimate as the answer's cost. Before, such answers were free.
#[tokio::test]
async fn answers_without_usage_are_charged_an_estimate() {
    let base = no_usage_upstream().await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.upstreams = vec![harness::config::upstream("bare", &base)];
            c.routes = vec![route("m", vec![vec![priced("bare", "x", A_PRICE)]])];
        },
        &[],
    )
    .await;
    let input = "meridian_tokens_total{route=\"m\",upstream=\"bare\",kind=\"input\"}";
    let output = "meridian_tokens_total{route=\"m\",upstream=\"bare\",kind=\"output\"}";
    let cost = "meridian_cost_usd_total{route=\"m\",upstream=\"bare\"}";

    let answer = node.chat(chat_body("m"), &[]).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "hello there"
    );
    assert!(answer.headers.get("x-meridian-cost-usd").is_none());
    let plain_output = series(&node, output).await;
    assert!(plain_output > 0.0, "a plain answer without usage was free");
    assert!(series(&node, input).await > 0.0);
    assert!(series(&node, cost).await > 0.0);

    let mut body = chat_body("m");
    body["stream"] = json!(true);
    let (status, _, frames) = node.chat_stream(body).await;
    assert_eq!(status, 200);
    assert!(text(&frames).contains(" there"));
    // Three data events and `[DONE]`: four output tokens at least.
    let streamed = series(&node, output).await - plain_output;
    assert_eq!(
        streamed, 4.0,
        "a stream without usage was charged {streamed}"
    );
}
