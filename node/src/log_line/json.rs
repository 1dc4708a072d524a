//! The JSON line (`--log-format json`): tracing-subscriber's `Json` layout
//! (timestamp, level, fields, target, the current span, the span list),
//! byte for byte, written into a reused buffer that goes to the log once.
//! The library's own formatter spent about a third of a line's cost on the
//! adaptor between serde_json and the log's `fmt::Write` (a UTF-8 check and
//! a dynamic call for every quote, key and colon), and parsed each span's
//! stored fields back into a `serde_json::Value`, twice per line; here
//! they are spliced in as the JSON text they were stored as.

use std::cell::RefCell;
use std::fmt;

use serde::Serialize;
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_serde::fields::AsMap;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use super::LineTime;

/// The node's JSON event formatter; its spans' fields are `JsonFields`'.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineJson<T = LineTime> {
    timer: T,
}

impl<T> LineJson<T> {
    /// A formatter writing each line's time with `timer`.
    pub fn new(timer: T) -> Self {
        Self { timer }
    }
}

/// A line's buffer past this is not kept for the next line.
const KEPT_CAPACITY: usize = 16 * 1024;

/// What a line is written into, kept between lines.
#[derive(Default)]
struct Buffers {
    time: String,
    line: Vec<u8>,
}

thread_local! {
    /// Per thread, so that writing a line never waits on another thread.
    static BUFFERS: RefCell<Buffers> = const {
        RefCell::new(Buffers {
            time: String::new(),
            line: Vec::new(),
        })
    };
}

impl<S, T> FormatEvent<S, JsonFields> for LineJson<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        BUFFERS.with(|kept| {
            // A line formatted while another is (a value whose `Debug`
            // logs) gets buffers of its own.
            let mut borrowed = kept.try_borrow_mut();
            let mut own = Buffers::default();
            let buffers = match borrowed.as_deref_mut() {
                Ok(kept) => kept,
                Err(_) => &mut own,
            };
            let Buffers { time, line } = buffers;
            time.clear();
            line.clear();
            self.timer.format_time(&mut Writer::new(time))?;
            let written = write_line(ctx, event, time, line)
                .map_err(|_| fmt::Error)
                .and_then(|()| {
                    writer.write_str(std::str::from_utf8(line).map_err(|_| fmt::Error)?)
                });
            if line.capacity() > KEPT_CAPACITY {
                *line = Vec::new();
            }
            written
        })
    }
}

/// The line: `{"timestamp":…,"level":…,"fields":{…},"target":…,"span":{…},
/// "spans":[…]}` and a newline, as serde_json's compact map writes it.
fn write_line<S>(
    ctx: &FmtContext<'_, S, JsonFields>,
    event: &Event<'_>,
    timestamp: &str,
    line: &mut Vec<u8>,
) -> Result<(), serde_json::Error>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // A record from the `log` crate names its own target.
    let normalized = event.normalized_metadata();
    let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
    line.push(b'{');
    entry(line, true, "timestamp", &timestamp)?;
    entry(line, false, "level", &meta.level().as_str())?;
    entry(line, false, "fields", &event.field_map())?;
    entry(line, false, "target", &meta.target())?;
    let current = event
        .parent()
        .and_then(|id| ctx.span(id))
        .or_else(|| ctx.lookup_current());
    if let Some(span) = &current {
        key(line, false, "span")?;
        span_object(line, span)?;
        key(line, false, "spans")?;
        line.push(b'[');
        if let Some(leaf) = ctx.lookup_current() {
            for (i, span) in leaf.scope().from_root().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                span_object(line, &span)?;
            }
        }
        line.push(b']');
    }
    line.extend_from_slice(b"}\n");
    Ok(())
}

/// `"name":`, after a comma unless it is its object's first key.
fn key(line: &mut Vec<u8>, first: bool, name: &str) -> Result<(), serde_json::Error> {
    if !first {
        line.push(b',');
    }
    serde_json::to_writer(&mut *line, name)?;
    line.push(b':');
    Ok(())
}

fn entry(
    line: &mut Vec<u8>,
    first: bool,
    name: &str,
    value: &impl Serialize,
) -> Result<(), serde_json::Error> {
    key(line, first, name)?;
    serde_json::to_writer(line, value)
}

/// A span as the library writes it, from the fields `JsonFields` stored.
fn span_object<R>(line: &mut Vec<u8>, span: &SpanRef<'_, R>) -> Result<(), serde_json::Error>
where
    R: for<'a> LookupSpan<'a>,
{
    let extensions = span.extensions();
    let stored = extensions
        .get::<FormattedFields<JsonFields>>()
        .map_or("{}", |fields| fields.fields.as_str());
    span_json(line, stored, span.metadata().name())
}

/// A span's object: its fields, then `"name"`. `JsonFields` stores the
/// fields as a JSON object (keys sorted, values as serde_json writes them),
/// which is what the library's parsing and writing them again gives, so
/// they are copied as they are. Anything else is written as the library
/// writes it in a release build (`field`, `field_error`).
pub(super) fn span_json(
    line: &mut Vec<u8>,
    stored: &str,
    name: &str,
) -> Result<(), serde_json::Error> {
    line.push(b'{');
    match stored.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        Some(fields) => {
            line.extend_from_slice(fields.as_bytes());
            entry(line, fields.is_empty(), "name", &name)?;
        }
        None => {
            match serde_json::from_str::<serde_json::Value>(stored) {
                Ok(value) => {
                    entry(line, true, "field", &value)?;
                    entry(line, false, "field_error", &"field was no a valid object")?;
                }
                Err(e) => entry(line, true, "field_error", &e.to_string())?,
            }
            entry(line, false, "name", &name)?;
        }
    }
    line.push(b'}');
    Ok(())
}
