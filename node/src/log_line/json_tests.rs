#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt;

use tracing::{info, info_span, warn};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;

use super::LineJson;
use super::json::span_json;
use super::tests::{Captured, emit};

/// One instant for both formatters, so that their lines can be compared.
struct Fixed;

impl FormatTime for Fixed {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        w.write_str("2026-12-01T12:13:29.123456Z")
    }
}

/// What only the JSON line has: a span's fields as JSON values (a float,
/// escapes, a field called `name`), an event's explicit parent with no
/// current span, and a record from the `log` crate.
fn emit_json() {
    emit();
    let odd = info_span!(
        "odd",
        name = "a \"name\" field",
        ratio = 0.1f64,
        nan = f64::NAN,
        big = u64::MAX,
        neg = i64::MIN,
        text = "tab\tnew\nline \u{1b} é 東京 \u{2028}",
    );
    info!(parent: &odd, "explicit parent, nothing entered");
    info!(parent: None, "explicit root");
    {
        let _odd = odd.enter();
        let child = info_span!("child", late = tracing::field::Empty, a = 1u64);
        child.record("late", "\"quoted\"");
        let _child = child.enter();
        warn!(float = 1e-7f64, unicode = "\u{0}\u{1f}\u{7f}\u{85}", "deep");
        info!(parent: &odd, "explicit parent under a current span");
    }
    tracing_log::format_trace(
        &log::Record::builder()
            .args(format_args!("from the log crate \x1b[2J"))
            .level(log::Level::Warn)
            .target("rustls::client")
            .module_path(Some("rustls::client::hs"))
            .file(Some("hs.rs"))
            .line(Some(42))
            .build(),
    )
    .unwrap();
}

fn lines(ours: bool) -> String {
    let out = Captured::default();
    let sink = out.clone();
    let builder = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::TRACE);
    if ours {
        let subscriber = builder
            .fmt_fields(JsonFields::new())
            .event_format(LineJson::new(Fixed))
            .finish();
        tracing::subscriber::with_default(subscriber, emit_json);
    } else {
        let subscriber = builder
            .json()
            .with_current_span(true)
            .with_timer(Fixed)
            .finish();
        tracing::subscriber::with_default(subscriber, emit_json);
    }
    out.text()
}

#[test]
fn json_lines_are_the_librarys_byte_for_byte() {
    let (library, ours) = (lines(false), lines(true));
    assert_eq!(ours.lines().count(), 20, "{ours}");
    for (l, o) in library.lines().zip(ours.lines()) {
        assert_eq!(o, l);
        let line: serde_json::Value = serde_json::from_str(o).unwrap();
        assert_eq!(line["timestamp"], "2026-12-01T12:13:29.123456Z", "{o}");
    }
    assert_eq!(ours, library);
    // What the comparison stands on.
    let done: serde_json::Value =
        serde_json::from_str(ours.lines().find(|l| l.contains("request done")).unwrap()).unwrap();
    assert_eq!(done["fields"]["key"], "team-a");
    assert_eq!(done["fields"]["status"], 200);
    assert_eq!(done["span"]["id"], "0a1b2c3d-req");
    assert_eq!(done["span"]["name"], "request");
    let logged = ours.lines().find(|l| l.contains("log crate")).unwrap();
    assert!(logged.contains(r#""target":"rustls::client""#), "{logged}");
    let deep = ours.lines().find(|l| l.contains("deep")).unwrap();
    // A span's own `name` field, then its name: as the library writes it.
    assert!(
        deep.contains(r#""spans":[{"big":18446744073709551615,"name":"a \"name\" field","#),
        "{deep}"
    );
    assert!(
        deep.contains(r#""name":"odd"},{"a":1,"late":"\"quoted\"","name":"child"}]}"#),
        "{deep}"
    );
}

fn span(stored: &str, name: &str) -> String {
    let mut line = Vec::new();
    span_json(&mut line, stored, name).unwrap();
    String::from_utf8(line).unwrap()
}

#[test]
fn a_spans_stored_fields_are_written_as_the_library_writes_them() {
    assert_eq!(span("{}", "bare"), r#"{"name":"bare"}"#);
    assert_eq!(
        span(r#"{"a":1,"b":"x\"y"}"#, "s"),
        r#"{"a":1,"b":"x\"y","name":"s"}"#
    );
    assert_eq!(span("{}", "say \"hi\""), r#"{"name":"say \"hi\""}"#);
    // What JsonFields never stores, written as the library does (not a
    // panic, not a broken line): a value that is no object, and no JSON.
    assert_eq!(
        span("[1,2]", "s"),
        r#"{"field":[1,2],"field_error":"field was no a valid object","name":"s"}"#
    );
    for stored in ["", "not json", "{", "}"] {
        let written = span(stored, "s");
        let parsed: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert!(parsed["field_error"].is_string(), "{stored:?}: {written}");
        assert_eq!(parsed["name"], "s", "{written}");
    }
}
