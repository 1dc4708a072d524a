//! W3C Trace Context (`traceparent`), read and written; pure, no I/O.
//!
//! Only version `00` is read, and only in its exact 55-byte form: lowercase
//! hex, neither id all zeros. Anything else (too long, bad hex, all-zero
//! ids, version `ff`, two headers) is not an error: the request starts a
//! new trace, as the W3C asks of a vendor that cannot parse the header.

use http::HeaderValue;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// The length of a version-00 `traceparent`.
pub const TRACEPARENT_LEN: usize = 55;

/// The client's span, when `value` is a valid version-00 `traceparent`.
pub fn parse(value: &[u8]) -> Option<SpanContext> {
    if value.len() != TRACEPARENT_LEN
        || !value.starts_with(b"00-")
        || value[35] != b'-'
        || value[52] != b'-'
    {
        return None;
    }
    let trace_id = u128::from_str_radix(lower_hex(&value[3..35])?, 16).ok()?;
    let span_id = u64::from_str_radix(lower_hex(&value[36..52])?, 16).ok()?;
    let flags = u8::from_str_radix(lower_hex(&value[53..55])?, 16).ok()?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(SpanContext::new(
        TraceId::from(trace_id),
        SpanId::from(span_id),
        // Only the sampled bit is defined; the others are not passed on.
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    ))
}

/// `part` as text when it is lowercase hex only (`from_str_radix` alone
/// would take `+`, and uppercase, which the W3C forbids).
fn lower_hex(part: &[u8]) -> Option<&str> {
    if part.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        std::str::from_utf8(part).ok()
    } else {
        None
    }
}

/// The `traceparent` naming `span` as the parent: what an upstream is
/// sent, with the attempt's own span.
pub fn format(span: &SpanContext) -> Option<HeaderValue> {
    if !span.is_valid() {
        return None;
    }
    let text = format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    );
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_is_read_and_written_back_the_same() {
        let span = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(span.span_id().to_string(), "00f067aa0ba902b7");
        assert!(span.is_sampled() && span.is_remote());
        assert_eq!(format(&span).unwrap(), GOOD);
        let unsampled = GOOD.replace("-01", "-00");
        let span = parse(unsampled.as_bytes()).unwrap();
        assert!(!span.is_sampled());
        assert_eq!(format(&span).unwrap(), unsampled.as_str());
    }

    #[test]
    fn leading_zeros_are_kept() {
        let text = "00-00000000000000000000000000000001-0000000000000002-01";
        assert_eq!(format(&parse(text.as_bytes()).unwrap()).unwrap(), text);
    }

    #[test]
    fn hostile_values_start_a_new_trace() {
        let long = format!("{GOOD}-extra");
        let huge = "0".repeat(8192);
        for bad in [
            "",
            long.as_str(),
            huge.as_str(),
            // Version ff is forbidden; other versions are not read.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // All-zero ids.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Bad hex, uppercase, a sign, misplaced dashes, bad flags.
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-+0f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7- 1",
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad}");
        }
        assert!(parse(&[0xff; TRACEPARENT_LEN]).is_none());
    }

    #[test]
    fn only_the_sampled_flag_is_kept() {
        let text = GOOD.replace("-01", "-ff");
        let span = parse(text.as_bytes()).unwrap();
        assert_eq!(span.trace_flags(), TraceFlags::SAMPLED);
    }

    #[test]
    fn an_invalid_span_writes_nothing() {
        assert!(format(&SpanContext::empty_context()).is_none());
    }
}
