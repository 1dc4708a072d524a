//! Provider keys never leave the node: a real `meridian` in front of an
//! upstream that echoes the key it was sent, in eight formats, for three
//! shapes of key, and every place the echo could surface checked for it.
//!
//! The upstream (a small hyper server in this test) reads the key from the
//! request's own header and writes it back, in the format and the way the
//! path of its `base_url` names (`/<format>/<mode>/v1`):
//!
//! | format         | the key as the upstream writes it                                   |
//! |----------------|---------------------------------------------------------------------|
//! | `message`      | plain in the JSON error message ("Incorrect API key provided: KEY") |
//! | `key_eq`       | `key=KEY;` inside the message                                       |
//! | `tab`          | between tabs (`auth\tKEY\trejected`)                                |
//! | `url_upper`    | percent-encoded in a URL, upper-case hex (`%2B`, `%2F`, `%3D`)      |
//! | `url_lower`    | percent-encoded, lower-case hex, encoded twice (`%252b`)            |
//! | `json_escaped` | JSON-escaped in the raw body (`\/`, `\u002B`, as PHP and .NET do)   |
//! | `headers`      | a dump of the request's headers (`authorization: Bearer KEY\r\n`)   |
//! | `html`         | an HTML page, `+` as `&#43;` (Go's html/template)                   |
//!
//! and modes: `400` (a client error, passed through to the client), `503`
//! (a failure: the 502 summary, the WARN log lines and, with a second tier,
//! the failover events), `sse` (a 200 stream whose second event is an error
//! event echoing the key, sent split mid-key across two frames) and `200`
//! (a plain answer whose content, and `content-type`, echo it).
//!
//! The key shapes: an OpenAI-style `sk-…` key, a base64-like key with `+/=`
//! (`UPSECRETB+x/y=Zq81`), and a hex key sent as `api-key` (Azure's form).
//! For each, every client answer, the node's whole log, `/admin/v1/events`
//! and `/admin/v1/health` must hold the key in none of those encodings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proto::config::UpstreamAuth;
use serde_json::json;
use support::config::{Config, route_to, tiers, upstream_at};
use support::{Node, chat_body};

const FORMATS: [&str; 8] = [
    "message",
    "key_eq",
    "tab",
    "url_upper",
    "url_lower",
    "json_escaped",
    "headers",
    "html",
];

/// `(name, key, auth)`: the three key shapes.
const SHAPES: [(&str, &str, UpstreamAuth); 3] = [
    (
        "sk",
        "sk-proj-Zx81Qm4TvL0pR7wN2yB5cH9kD3fG6jA",
        UpstreamAuth::Bearer,
    ),
    ("base64", "UPSECRETB+x/y=Zq81", UpstreamAuth::Bearer),
    (
        "api-key",
        "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e",
        UpstreamAuth::ApiKey,
    ),
];

fn percent(key: &str, upper: bool, twice: bool) -> String {
    let mut out = String::new();
    for c in key.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            let hex = if upper {
                format!("{:02X}", c as u32)
            } else {
                format!("{:02x}", c as u32)
            };
            out.push_str(if twice { "%25" } else { "%" });
            out.push_str(&hex);
        }
    }
    out
}

/// The echo text of a format (for `json_escaped`, the escaped raw form).
fn echo_text(format: &str, key: &str, headers: &http::HeaderMap) -> String {
    match format {
        "message" => format!(
            "Incorrect API key provided: {key}. You can find your API key at https://provider.example/keys."
        ),
        "key_eq" => format!("upstream auth failed: key={key}; retry later"),
        "tab" => format!("auth\t{key}\trejected"),
        "url_upper" => format!(
            "GET https://provider.example/v1/check?api_key={}&v=2 returned 401",
            percent(key, true, false)
        ),
        "url_lower" => format!(
            "redirected to /login?next=%2Fcheck%3Fapi_key%3D{}",
            percent(key, false, true)
        ),
        "json_escaped" => {
            let mut escaped = String::new();
            for c in key.chars() {
                match c {
                    '/' => escaped.push_str("\\/"),
                    c if c.is_ascii_alphanumeric() => escaped.push(c),
                    c => {
                        let _ = write!(escaped, "\\u{:04X}", c as u32);
                    }
                }
            }
            format!("key {escaped} is not valid")
        }
        "headers" => {
            let mut dump = String::from("request headers were: ");
            for (name, value) in headers {
                let _ = write!(dump, "{name}: {}\r\n", value.to_str().unwrap_or("?"));
            }
            dump
        }
        "html" => format!("Invalid key &#39;{}&#39;", key.replace('+', "&#43;")),
        other => panic!("no format {other}"),
    }
}

/// The body of an error answer carrying the echo, and its content type.
fn error_body(format: &str, text: &str) -> (String, &'static str) {
    match format {
        // Already escaped by hand: written into the JSON as is.
        "json_escaped" => (
            format!(r#"{{"error":{{"message":"{text}","type":"invalid_request_error"}}}}"#),
            "application/json",
        ),
        "html" => (
            format!("<html><body><h1>401</h1><p>{text}</p></body></html>"),
            "text/html",
        ),
        _ => (
            json!({"error": {"message": text, "type": "invalid_request_error", "code": "invalid_api_key"}})
                .to_string(),
            "application/json",
        ),
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

async fn echo(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let mut parts = path.trim_start_matches('/').split('/');
    let (format, mode) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let headers = req.headers().clone();
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("api-key").and_then(|v| v.to_str().ok()))
        .unwrap_or("NO-KEY-SENT")
        .to_owned();
    let _ = req.into_body().collect().await;
    let text = echo_text(format, &key, &headers);
    let (body, content_type) = error_body(format, &text);
    let response = match mode {
        "400" | "503" => Response::builder()
            .status(if mode == "400" { 400 } else { 503 })
            .header("content-type", content_type)
            .body(full(body)),
        "200" => {
            let answer = json!({
                "id": "chatcmpl-echo", "object": "chat.completion", "created": 0, "model": "x",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
            });
            // The header echoes it too.
            Response::builder()
                .header(
                    "content-type",
                    format!("application/json; charset=utf-8; k={key}"),
                )
                .body(full(answer.to_string()))
        }
        "sse" => {
            // The error event is cut in two frames in the middle of the key.
            let event = format!("data: {}\n\n", body.replace('\n', " "));
            let at = event
                .find(&key[..4])
                .map_or(event.len() / 2, |i| i + key.len() / 2);
            let frames = vec![
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n".to_owned(),
                event[..at].to_owned(),
                event[at..].to_owned(),
            ];
            let body = StreamBody::new(stream::unfold(frames.into_iter(), |mut rest| async move {
                let next = rest.next()?;
                tokio::time::sleep(Duration::from_millis(30)).await;
                Some((Ok::<_, Infallible>(Frame::data(Bytes::from(next))), rest))
            }));
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed(body))
        }
        _ => Response::builder().status(404).body(full("no such mode")),
    };
    Ok(response.unwrap())
}

/// Starts the echo upstream; returns its address.
async fn start_echo() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service_fn(echo))
                    .await;
            });
        }
    });
    addr
}

/// `text` with every encoding the echo uses undone (several times, for
/// encodings of encodings), so a key found in it was readable by whoever
/// got `text`.
fn decoded(text: &str) -> String {
    let mut text = text.to_owned();
    for _ in 0..3 {
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(c) = rest.chars().next() {
            let hex = |s: &str| u8::from_str_radix(s, 16).ok().map(char::from);
            let (decoded, len) = if let Some(t) = rest.strip_prefix('%')
                && let Some(ch) = t.get(..2).and_then(hex)
            {
                (ch, 3)
            } else if let Some(t) = rest.strip_prefix("\\u")
                && let Some(ch) = t
                    .get(..4)
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .and_then(char::from_u32)
            {
                (ch, 6)
            } else if rest.starts_with("\\/") {
                ('/', 2)
            } else if rest.starts_with("\\\\") {
                ('\\', 2)
            } else if let Some(t) = rest.strip_prefix("&#")
                && let Some(end) = t.find(';')
                && let Some(ch) = (if let Some(h) = t[..end].strip_prefix(['x', 'X']) {
                    u32::from_str_radix(h, 16).ok()
                } else {
                    t[..end].parse().ok()
                })
                .and_then(char::from_u32)
            {
                (ch, 3 + end)
            } else {
                (c, c.len_utf8())
            };
            out.push(decoded);
            rest = &rest[len..];
        }
        text = out;
    }
    text
}

/// Where the key shows in `text`, readable or in one of the echo's encodings.
fn holds_key(text: &str, key: &str) -> bool {
    text.contains(key) || decoded(text).contains(key)
}

/// The node's routes: per echo format, one route per mode to an upstream
/// of its own on the echo, and `FORMAT-503` over two failing upstreams;
/// every upstream holds the key in `TEST_PROVIDER_KEY` and sends it as `auth`.
fn configure(config: &mut Config, echo: &str, auth: UpstreamAuth) {
    let mut upstream = |id: &str, format: &str, mode: &str| {
        let mut upstream = upstream_at(id, &format!("http://{echo}/{format}/{mode}/v1"));
        upstream.api_key_env = Some("TEST_PROVIDER_KEY".to_owned());
        upstream.auth = auth;
        config.upstreams.push(upstream);
    };
    let mut routes = Vec::new();
    for format in FORMATS {
        for mode in ["400", "sse", "200"] {
            let id = format!("{format}-{mode}");
            upstream(&id, format, mode);
            routes.push(route_to(&id, &id, "x"));
        }
        let (a, b) = (format!("{format}-503-a"), format!("{format}-503-b"));
        upstream(&a, format, "503");
        upstream(&b, format, "503");
        routes.push(tiers(&format!("{format}-503"), &[(&a, "x"), (&b, "x")]));
    }
    for mut route in routes {
        route.first_byte_timeout_ms = Some(3000);
        config.routes.push(route);
    }
}

/// Every place one key shape's key was found, as `format/mode/where`.
async fn leaks_for(echo: &str, shape: &str, key: &str, auth: UpstreamAuth) -> Vec<String> {
    let node = Node::start_with(
        |c: &mut Config| configure(c, echo, auth),
        &[("TEST_PROVIDER_KEY", key)],
    )
    .await;
    let mut leaks = Vec::new();
    for format in FORMATS {
        let cell = |what: &str| format!("{shape}/{format}/{what}");

        let passed = node.chat(chat_body(&format!("{format}-400")), &[]).await;
        assert_eq!(passed.status, StatusCode::BAD_REQUEST, "{}", cell("400"));
        if holds_key(&String::from_utf8_lossy(&passed.body), key) {
            leaks.push(cell("passed-through 400 body"));
        }

        let failed = node.chat(chat_body(&format!("{format}-503")), &[]).await;
        assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{}", cell("502"));
        assert_eq!(failed.header("x-meridian-attempts"), "2", "{}", cell("502"));
        if holds_key(&String::from_utf8_lossy(&failed.body), key) {
            leaks.push(cell("502 summary"));
        }
        if failed
            .headers
            .values()
            .any(|v| holds_key(&String::from_utf8_lossy(v.as_bytes()), key))
        {
            leaks.push(cell("502 headers"));
        }

        let mut body = chat_body(&format!("{format}-sse"));
        body["stream"] = json!(true);
        let (status, _, frames) = node.chat_stream(body).await;
        assert_eq!(status, StatusCode::OK, "{}", cell("sse"));
        let streamed: Vec<u8> = frames.concat();
        let streamed = String::from_utf8_lossy(&streamed);
        assert_eq!(
            streamed.matches("data: ").count(),
            2,
            "{}: {streamed}",
            cell("sse")
        );
        if holds_key(&streamed, key) {
            leaks.push(cell("stream error event"));
        }

        let answered = node.chat(chat_body(&format!("{format}-200")), &[]).await;
        assert_eq!(answered.status, StatusCode::OK, "{}", cell("200"));
        if holds_key(&String::from_utf8_lossy(&answered.body), key) {
            leaks.push(cell("200 answer"));
        }
        if answered
            .headers
            .values()
            .any(|v| holds_key(&String::from_utf8_lossy(v.as_bytes()), key))
        {
            leaks.push(cell("200 headers"));
        }
    }

    let events = node.admin_get("/admin/v1/events", &[]).await;
    assert_eq!(events.status, StatusCode::OK);
    let failovers = events.json()["failovers"].as_array().unwrap().clone();
    assert_eq!(failovers.len(), FORMATS.len(), "one failover per format");
    for event in &failovers {
        if holds_key(&event.to_string(), key) {
            leaks.push(format!("{shape}/{}/admin events", event["route"]));
        }
    }
    let health = node.admin_get("/admin/v1/health", &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    if holds_key(&String::from_utf8_lossy(&health.body), key) {
        leaks.push(format!("{shape}/admin health"));
    }

    // The stream's end is logged when it ends; give the last one a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = node.log();
    assert!(log.contains("attempt failed"), "the log holds the failures");
    // The `headers` echo holds CR LF: it must not have started a line.
    for line in log.lines() {
        assert!(
            line.starts_with("20") && line.contains('Z'),
            "a line the node did not write: {line:?}"
        );
    }
    for line in log.lines().filter(|l| holds_key(l, key)) {
        leaks.push(format!(
            "{shape}/log: {}",
            line.chars().take(160).collect::<String>()
        ));
    }
    leaks
}

#[tokio::test]
async fn provider_keys_echoed_by_upstreams_reach_no_one() {
    let echo = start_echo().await;
    let mut leaks = Vec::new();
    for (shape, key, auth) in SHAPES {
        leaks.extend(leaks_for(&echo, shape, key, auth).await);
    }
    assert!(
        leaks.is_empty(),
        "{} provider keys left the node:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

#[test]
fn the_leak_check_reads_every_encoding() {
    let key = "UPSECRETB+x/y=Zq81";
    let headers = http::HeaderMap::new();
    for format in FORMATS.iter().filter(|f| **f != "headers") {
        let text = echo_text(format, key, &headers);
        let (body, _) = error_body(format, &text);
        assert!(holds_key(&body, key), "{format}: {body}");
        assert!(!holds_key(&body, "UPSECRETB+x/y=Zq82"), "{format}");
    }
    assert!(!holds_key("[redacted]", key));
}
