//! Log lines the node dropped because its log thread fell behind
//! (`meridian_log_lines_dropped_total`). The log queue is bounded so that a
//! stalled reader of stderr (a full pipe, a slow journald) cannot hold the
//! data plane or grow memory without end; what it drops instead must show,
//! or an operator would read a quiet log as a quiet node.

use std::sync::OnceLock;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use tracing_appender::non_blocking::ErrorCounter;

use super::render::counter;

/// The count of the process's one log writer, set once at start-up.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Has `/metrics` report the lines the process's log writer dropped. The
/// binary calls it once, when it sets up logging; a later call is ignored
/// (there is one log writer per process).
pub fn count_dropped_log_lines(dropped: ErrorCounter) {
    let _ = DROPPED.set(dropped);
}

/// Writes the counter, once the binary has set it up.
pub(super) fn encode(encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
    match DROPPED.get() {
        Some(dropped) => encode_count(dropped.dropped_lines() as u64, encoder),
        None => Ok(()),
    }
}

fn encode_count(dropped: u64, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(
        "meridian_log_lines_dropped",
        "Log lines dropped because the log thread fell behind its queue",
        None,
        MetricType::Counter,
    )?;
    counter(&mut m, &[], dropped)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::io::Write;
    use std::sync::mpsc;

    /// A log reader that takes nothing until it is let go.
    struct Stalled(mpsc::Receiver<()>);

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Count(u64);

    impl prometheus_client::collector::Collector for Count {
        fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
            encode_count(self.0, &mut e)
        }
    }

    #[test]
    fn lines_past_a_stalled_readers_queue_are_dropped_counted_and_reported() {
        let (release, stalled) = mpsc::channel();
        let (mut writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .buffered_lines_limit(4)
            .finish(Stalled(stalled));
        let dropped = writer.error_counter();
        for i in 0..100 {
            writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        // The queue's four and the line being written got through: the
        // writer never waited for the stalled reader.
        assert!(dropped.dropped_lines() >= 95, "{}", dropped.dropped_lines());

        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Count(dropped.dropped_lines() as u64)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let line = format!(
            "meridian_log_lines_dropped_total {}",
            dropped.dropped_lines()
        );
        assert!(text.contains(&line), "{line} not in\n{text}");
        assert!(
            text.contains("# TYPE meridian_log_lines_dropped counter"),
            "{text}"
        );
        drop(release);
        drop(guard);
    }
}
