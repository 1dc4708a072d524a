//! The text line's fields, `name=value` separated by spaces as
//! tracing-subscriber's `DefaultFields` writes them, with integers,
//! booleans and plain strings written straight into the line instead of
//! through `core::fmt` and two (unstyled) paints around each name, and the
//! message's terminal escapes neutralised a run of text at a time rather
//! than a character at a time. The cases where the default does more than
//! that (an error, with its sources; any line with colours) are handed to
//! its own visitor, so they stay exactly as they were.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// The node's field formatter for text lines (events and span fields).
#[derive(Debug, Clone, Copy, Default)]
pub struct LineFields;

impl<'writer> FormatFields<'writer> for LineFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = LineVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct LineVisitor<'a> {
    writer: Writer<'a>,
    /// No field written yet: the next one needs no space before it.
    is_empty: bool,
    result: fmt::Result,
}

/// How a field is written.
enum Name {
    /// Not at all: after an error, and the `log.` metadata of a record
    /// from the `log` crate, which the line already shows.
    Skip,
    /// By the default visitor.
    Default,
    /// The event's message: its text alone, escaped.
    Message,
    /// Here, under this name (a raw identifier's `r#` dropped).
    Plain(&'static str),
}

impl LineVisitor<'_> {
    fn name(&self, field: &Field) -> Name {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            Name::Skip
        } else if self.writer.has_ansi_escapes() {
            Name::Default
        } else if name == "message" {
            Name::Message
        } else {
            Name::Plain(name.strip_prefix("r#").unwrap_or(name))
        }
    }

    fn by_default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut inner = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut inner);
        self.result = inner.finish();
        self.is_empty = false;
    }

    /// The space before a field, its name and `=`.
    fn start(&mut self, name: &str) -> fmt::Result {
        if !std::mem::take(&mut self.is_empty) {
            self.writer.write_char(' ')?;
        }
        self.writer.write_str(name)?;
        self.writer.write_char('=')
    }

    fn plain(&mut self, name: &str, value: &str) -> fmt::Result {
        self.start(name)?;
        self.writer.write_str(value)
    }

    /// The message as `{:?}` writes it (an event's `format_args!` writes
    /// its text), through [`Escaping`] unless the line asks for raw text.
    fn message(&mut self, value: &dyn fmt::Debug) -> fmt::Result {
        if !std::mem::take(&mut self.is_empty) {
            self.writer.write_char(' ')?;
        }
        if self.writer.sanitizes_ansi_escapes() {
            write!(Escaping(&mut self.writer), "{value:?}")
        } else {
            write!(self.writer, "{value:?}")
        }
    }

    /// A string as `{:?}` writes it: quoted, and escaped where it needs to
    /// be. Printable ASCII without quotes or backslashes needs nothing.
    fn quoted(&mut self, name: &str, value: &str) -> fmt::Result {
        self.start(name)?;
        let plain = value
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\');
        if plain {
            self.writer.write_char('"')?;
            self.writer.write_str(value)?;
            self.writer.write_char('"')
        } else {
            write!(self.writer, "{value:?}")
        }
    }
}

impl Visit for LineVisitor<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match self.name(field) {
            Name::Skip => {}
            Name::Default | Name::Message => self.by_default(|v| v.record_u64(field, value)),
            Name::Plain(name) => self.result = self.plain(name, itoa::Buffer::new().format(value)),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        match self.name(field) {
            Name::Skip => {}
            Name::Default | Name::Message => self.by_default(|v| v.record_i64(field, value)),
            Name::Plain(name) => self.result = self.plain(name, itoa::Buffer::new().format(value)),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        match self.name(field) {
            Name::Skip => {}
            Name::Default | Name::Message => self.by_default(|v| v.record_bool(field, value)),
            Name::Plain(name) => {
                self.result = self.plain(name, if value { "true" } else { "false" })
            }
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match self.name(field) {
            Name::Skip => {}
            Name::Default => self.by_default(|v| v.record_str(field, value)),
            Name::Message => self.result = self.message(&format_args!("{value}")),
            Name::Plain(name) => self.result = self.quoted(name, value),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        match self.name(field) {
            Name::Skip => {}
            // The default escapes an error's text and lists its sources.
            Name::Default | Name::Message | Name::Plain(_) => {
                self.by_default(|v| v.record_error(field, value))
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match self.name(field) {
            Name::Skip => {}
            Name::Default => self.by_default(|v| v.record_debug(field, value)),
            Name::Message => self.result = self.message(value),
            Name::Plain(name) => {
                self.result = self
                    .start(name)
                    .and_then(|()| write!(self.writer, "{value:?}"))
            }
        }
    }
}

/// Writes text with the characters a terminal would act on spelled out, as
/// tracing-subscriber escapes a message: ESC, BEL, BS, FF and DEL as
/// `\xNN`, the C1 controls (U+0080 to U+009F) as `\u{NN}`. What lies
/// between them is written in one piece.
struct Escaping<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut run = 0;
        for (at, ch) in s.char_indices() {
            if !matches!(
                ch,
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}'
            ) {
                continue;
            }
            self.0.write_str(&s[run..at])?;
            if ch.is_ascii() {
                write!(self.0, "\\x{:02x}", ch as u32)?;
            } else {
                write!(self.0, "\\u{{{:x}}}", ch as u32)?;
            }
            run = at + ch.len_utf8();
        }
        self.0.write_str(&s[run..])
    }
}
