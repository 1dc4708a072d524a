#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{info, info_span, warn};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

use super::time::Second;
use super::{LineFields, LineTime};

/// Lines captured in memory.
#[derive(Clone, Default)]
pub(super) struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub(super) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("upstream \x1b[31mfailed")]
struct Outer(#[source] io::Error);

/// Events and spans with every kind of field the node logs, and hostile
/// values in each: what an upstream or a client could put in a string.
pub(super) fn emit() {
    let request = info_span!("request", id = %"0a1b2c3d-req");
    let _request = request.enter();
    info!(
        key = %"team-a", route = %"chat", upstream = %"openai", model = %"gpt-4o-mini",
        stream = false, status = 200u16, ttfb_ms = 12u64, total_ms = 40u64,
        prompt_tokens = Some(10u64), completion_tokens = None::<u64>, cached_tokens = Some(0u64),
        cost_usd = Some(0.000_123f64), "request done"
    );
    info!(
        neg = -5i64,
        min = i64::MIN,
        max = u64::MAX,
        zero = 0u64,
        yes = true,
        no = false,
        big = u128::MAX,
        small = -3i128,
        whole = 1.0f64,
        nan = f64::NAN,
        inf = f64::INFINITY,
        tiny = 1e-7f64,
        "numbers"
    );
    info!(
        plain = "abc",
        empty = "",
        quote = "say \"hi\"",
        backslash = "a\\b",
        newline = "line\nnext",
        cr = "a\rb",
        tab = "a\tb",
        nul = "a\0b",
        esc = "\x1b[31mred",
        c1 = "\u{9b}x",
        del = "\x7f",
        unicode = "naïve – 東京",
        zero_width = "a\u{200b}b",
        combining = "e\u{301}",
        apostrophe = "it's",
        tilde = "~",
        space = " ",
        "strings"
    );
    info!(log.target = "first", a = 1u64, "a log field first");
    info!(
        r#type = "raw",
        log.module_path = "skipped",
        after = 1u64,
        "raw and log fields"
    );
    info!(message = "explicit message \x1b[2J", other = 2u64);
    info!("only a message, with \x1b and \u{9b} in it");
    info!("\x1b\x07 bell \x08\x0c\x7f \u{85}\u{9f} end\x1b");
    info!(message = "\x1b[2J\u{80}");
    info!(debugged = ?vec!["a", "b\""], shown = %"x y", "debug and display");
    let plain_error = io::Error::other("refused \x1b[0m");
    info!(
        error = &plain_error as &(dyn std::error::Error + 'static),
        "an error"
    );
    let nested = Outer(io::Error::other("inner"));
    warn!(
        error = &nested as &(dyn std::error::Error + 'static),
        n = 1u64,
        "an error with a source"
    );
    info!(no_message = 1u64);
    warn!(target: "other::target", a = 1u64, "another target");
    let outer = info_span!("outer", id = 7u64, name = "n\"q", on = true);
    let _outer = outer.enter();
    let inner = info_span!("inner", late = tracing::field::Empty);
    inner.record("late", "recorded later");
    inner.record("late", 5u64);
    let _inner = inner.enter();
    let bare = info_span!("bare");
    let _bare = bare.enter();
    info!("nested");
}

/// The lines of [`emit`], by the library's default formatter or with
/// [`LineFields`].
fn lines(ours: bool, ansi: bool, sanitize: bool) -> String {
    let out = Captured::default();
    let sink = out.clone();
    let builder = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(ansi)
        .with_ansi_sanitization(sanitize)
        .without_time()
        .with_max_level(tracing::Level::TRACE);
    if ours {
        tracing::subscriber::with_default(builder.fmt_fields(LineFields).finish(), emit);
    } else {
        tracing::subscriber::with_default(builder.finish(), emit);
    }
    out.text()
}

#[test]
fn fields_are_written_as_the_default_formatter_writes_them() {
    let (default, line) = (lines(false, false, true), lines(true, false, true));
    assert_eq!(line.lines().count(), 15, "{line}");
    for (d, l) in default.lines().zip(line.lines()) {
        assert_eq!(l, d);
    }
    assert_eq!(line, default);
    // What the comparison stands on: the hostile values are in the lines,
    // escaped, and the access line reads as an operator's parser expects.
    assert!(line.contains(
        "request{id=0a1b2c3d-req}: meridian::log_line::tests: request done key=team-a route=chat"
    ));
    assert!(line.contains("prompt_tokens=10 cached_tokens=0 cost_usd=0.000123\n"));
    assert!(line.contains(r#"newline="line\nnext""#), "{line}");
    assert!(line.contains(r#"esc="\u{1b}[31mred""#), "{line}");
    assert!(
        line.contains(r"\x1b\x07 bell \x08\x0c\x7f \u{85}\u{9f} end\x1b"),
        "{line}"
    );
    assert!(line.contains("min=-9223372036854775808 max=18446744073709551615"));
    assert!(line.contains("a log field first a=1\n"), "{line}");
    assert!(!line.contains("skipped"));
    assert!(!line.contains('\x1b'), "an escape reached the log: {line}");
}

#[test]
fn with_colours_or_raw_messages_the_lines_are_the_defaults_too() {
    assert_eq!(lines(true, true, true), lines(false, true, true));
    let raw = lines(true, false, false);
    assert_eq!(raw, lines(false, false, false));
    assert!(raw.contains('\x1b'), "asked for raw messages: {raw}");
}

fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

fn written(second: &mut Second, t: SystemTime) -> String {
    let mut out = String::new();
    second.write(t, &mut Writer::new(&mut out)).unwrap();
    out
}

#[test]
fn the_timestamp_is_rfc3339_utc_with_microseconds() {
    let mut second = Second::default();
    let cases = [
        (UNIX_EPOCH, "1970-01-01T00:00:00.000000Z"),
        (
            at(1_764_590_096, 123_456_789),
            "2025-12-01T11:54:56.123456Z",
        ),
        (
            at(1_709_251_199, 999_999_999),
            "2024-02-29T23:59:59.999999Z",
        ),
        (at(951_868_800, 1_000), "2000-03-01T00:00:00.000001Z"),
        (at(253_402_300_799, 0), "9999-12-31T23:59:59.000000Z"),
        (
            UNIX_EPOCH - Duration::from_millis(500),
            "1969-12-31T23:59:59.500000Z",
        ),
        (
            UNIX_EPOCH - Duration::from_secs(62_135_596_800),
            "0001-01-01T00:00:00.000000Z",
        ),
    ];
    for (t, want) in cases {
        assert_eq!(written(&mut second, t), want);
        // Again, from the cached second.
        assert_eq!(written(&mut second, t), want);
    }
}

#[test]
fn the_cached_second_follows_the_clock() {
    let mut second = Second::default();
    let steps = [
        (at(100, 0), "1970-01-01T00:01:40.000000Z"),
        (at(100, 999_999_000), "1970-01-01T00:01:40.999999Z"),
        (at(101, 5_000), "1970-01-01T00:01:41.000005Z"),
        // A clock stepped back is a new second too, not the cached one.
        (at(99, 0), "1970-01-01T00:01:39.000000Z"),
    ];
    for (t, want) in steps {
        assert_eq!(written(&mut second, t), want);
    }
}

#[test]
fn a_clock_past_year_9999_is_still_written() {
    let mut second = Second::default();
    let line = written(&mut second, at(253_402_300_800, 0));
    // The library's own timer takes it (reading the clock itself).
    assert!(line.ends_with('Z') && line.len() >= 27, "{line}");
}

#[test]
fn now_reads_as_the_librarys_timer_writes_it() {
    let library = || {
        let mut out = String::new();
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut out))
            .unwrap();
        out
    };
    let before = library();
    let mut ours = String::new();
    LineTime.format_time(&mut Writer::new(&mut ours)).unwrap();
    let after = library();
    assert_eq!(ours.len(), before.len());
    // To the second: the same as one of the library's reads around it.
    assert!(
        ours[..20] == before[..20] || ours[..20] == after[..20],
        "{before} {ours} {after}"
    );
    assert!(before <= ours && ours <= after, "{before} {ours} {after}");
}
