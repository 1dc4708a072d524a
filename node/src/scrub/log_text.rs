//! [`LogText`]: the other half of what may reach a log line, next to the
//! keys [`Scrubber`](super::Scrubber) removes.
//!
//! A value the client chose (a model name, an error quoting the body) is
//! written with its control characters escaped, so a `\n` cannot forge a
//! line, and cut, so a 1 MiB model does not make a 1 MiB line.

use std::fmt::{self, Write as _};

/// The most bytes of one client-supplied value a log line carries.
pub const LOG_VALUE_MAX: usize = 1024;

/// A value for a log line: control characters escaped (`\n`, `\u{1b}`), so
/// one value cannot forge a line or a terminal sequence, and cut after
/// [`LOG_VALUE_MAX`] bytes with the size it had. Display it with `%`.
pub struct LogText<'a, T: ?Sized>(pub &'a T);

impl<T: fmt::Display + ?Sized> fmt::Display for LogText<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Bounded {
            inner: f,
            written: 0,
            seen: 0,
        };
        // `Bounded` never fails on its own; an error is the formatter's.
        write!(out, "{}", self.0)?;
        let Bounded { inner, seen, .. } = out;
        if seen > LOG_VALUE_MAX {
            write!(inner, "… ({seen} bytes)")?;
        }
        Ok(())
    }
}

/// Writes through, escaped, up to [`LOG_VALUE_MAX`] bytes; counts the rest.
struct Bounded<'a, 'f> {
    inner: &'a mut fmt::Formatter<'f>,
    /// Bytes written to `inner`, escapes included.
    written: usize,
    /// Bytes of the value seen, written or not.
    seen: usize,
}

impl fmt::Write for Bounded<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            self.seen += c.len_utf8();
            if self.written >= LOG_VALUE_MAX {
                continue;
            }
            if c.is_control() {
                for e in c.escape_default() {
                    self.inner.write_char(e)?;
                    self.written += 1;
                }
            } else {
                self.inner.write_char(c)?;
                self.written += c.len_utf8();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn log_text_escapes_control_characters() {
        let forged = "m\n2026-01-01T00:00:00Z  INFO forged\r\u{1b}[31m";
        let out = LogText(forged).to_string();
        assert!(!out.chars().any(char::is_control), "{out:?}");
        assert!(out.starts_with("m\\n2026"), "{out}");
        assert!(out.contains("\\u{1b}"), "{out}");
    }

    #[test]
    fn log_text_cuts_long_values() {
        let model = "é".repeat(1 << 19); // 1 MiB
        let out = LogText(&model).to_string();
        assert!(out.len() < LOG_VALUE_MAX + 40, "{}", out.len());
        assert!(
            out.ends_with(&format!("… ({} bytes)", 1 << 20)),
            "{}",
            &out[out.len() - 30..]
        );
        assert_eq!(LogText("short").to_string(), "short");
    }
}
