//! The standard `process_*` metrics (resident and virtual memory, CPU
//! seconds, open and allowed descriptors, threads, start time) that every
//! Prometheus client library exports and dashboards expect, read from
//! Linux's `/proc` at scrape time. `prometheus-client` has no process
//! collector; elsewhere each figure is simply left out.

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::render::gauge;

/// Clock ticks per second of `/proc/*/stat` times: `USER_HZ`, which Linux
/// fixes at 100 for user space on every architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc` says about this process.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Process {
    pub(super) resident_bytes: Option<u64>,
    pub(super) virtual_bytes: Option<u64>,
    pub(super) threads: Option<u64>,
    pub(super) cpu_seconds: Option<f64>,
    pub(super) start_time_seconds: Option<f64>,
    pub(super) open_fds: Option<u64>,
    pub(super) max_fds: Option<u64>,
}

impl Process {
    /// Reads this process's figures (none off Linux).
    pub(super) fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let mut process = Self::parse(&status, &stat, &boot);
        process.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        process.max_fds = crate::server::descriptor_limit();
        process
    }

    /// The figures in the text of `/proc/self/status`, `/proc/self/stat`
    /// and `/proc/stat`.
    pub(super) fn parse(status: &str, stat: &str, boot: &str) -> Self {
        let kb = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name))?;
            let value: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(value * 1024)
        };
        let threads = status
            .lines()
            .find(|l| l.starts_with("Threads:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
        // The command name (field 2) is in parentheses and may hold
        // spaces: fields are counted after its closing one, from field 3.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let cpu_seconds = match (field(14), field(15)) {
            (Some(user), Some(system)) => Some((user + system) as f64 / TICKS_PER_SECOND),
            _ => None,
        };
        let boot_time = boot
            .lines()
            .find(|l| l.starts_with("btime "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
        let start_time_seconds = match (boot_time, field(22)) {
            (Some(boot), Some(ticks)) => Some(boot as f64 + ticks as f64 / TICKS_PER_SECOND),
            _ => None,
        };
        Self {
            resident_bytes: kb("VmRSS:"),
            virtual_bytes: kb("VmSize:"),
            threads,
            cpu_seconds,
            start_time_seconds,
            open_fds: None,
            max_fds: None,
        }
    }

    /// Writes the figures known, under the names other clients use.
    pub(super) fn encode(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        if let Some(seconds) = self.cpu_seconds {
            let mut m = encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent, in seconds",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            m.encode_counter::<NoLabelSet, f64, u64>(&seconds, None)?;
        }
        let gauges: [(&str, &str, Option<Unit>, Option<f64>); 6] = [
            (
                "process_resident_memory",
                "Resident memory size, in bytes",
                Some(Unit::Bytes),
                self.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size, in bytes",
                Some(Unit::Bytes),
                self.virtual_bytes.map(|v| v as f64),
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch, in seconds",
                Some(Unit::Seconds),
                self.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Open file descriptors (sockets included)",
                None,
                self.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "The most file descriptors the process may open (ulimit -n)",
                None,
                self.max_fds.map(|v| v as f64),
            ),
            (
                "process_threads",
                "OS threads of the process",
                None,
                self.threads.map(|v| v as f64),
            ),
        ];
        for (name, help, unit, value) in gauges {
            if let Some(value) = value {
                let mut m =
                    encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
                gauge(&mut m, &[], value)?;
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
    fn reads_procs_text() {
        let status = "Name:\tmeridian\nVmSize:\t  200000 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
        // A command name with a space and a parenthesis, as /proc shows one.
        let stat = "4242 (meri dian)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 \
                    1000 204800000 5120 18446744073709551615";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n";
        let p = Process::parse(status, stat, boot);
        assert_eq!(p.resident_bytes, Some(20480 * 1024));
        assert_eq!(p.virtual_bytes, Some(200000 * 1024));
        assert_eq!(p.threads, Some(9));
        assert_eq!(p.cpu_seconds, Some(3.0));
        assert_eq!(p.start_time_seconds, Some(1_700_000_010.0));
    }

    #[test]
    fn unreadable_proc_gives_nothing() {
        assert_eq!(Process::parse("", "", ""), Process::default());
    }

    #[test]
    fn this_process_is_read_on_linux() {
        let p = Process::read();
        if cfg!(target_os = "linux") {
            assert!(p.resident_bytes.unwrap() > 0);
            assert!(p.open_fds.unwrap() > 0);
            assert!(p.cpu_seconds.is_some() && p.start_time_seconds.is_some());
        }
    }
}
