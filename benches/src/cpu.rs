//! CPU time of a process group, read from `/proc`. What a proxy spends per
//! request is the steadiest figure on a shared machine, where latency and
//! throughput move with the neighbours' load.

use std::path::Path;

/// Reads CPU time in seconds; knows the kernel's clock-tick rate.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    ticks_per_sec: f64,
}

impl CpuClock {
    /// Asks `getconf CLK_TCK` for the tick rate (100 on every usual Linux,
    /// the fallback).
    pub fn new() -> Self {
        let ticks_per_sec = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .filter(|&t: &f64| t > 0.0)
            .unwrap_or(100.0);
        Self { ticks_per_sec }
    }

    /// User plus system CPU seconds used so far by every live process of
    /// process group `group`; `None` without a readable `/proc`.
    pub fn group_secs(&self, group: u32) -> Option<f64> {
        let mut ticks = 0;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            if !is_pid(&entry.path()) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((pgrp, t)) = parse_stat(&stat)
                && pgrp == group
            {
                ticks += t;
            }
        }
        Some(ticks as f64 / self.ticks_per_sec)
    }
}

fn is_pid(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
}

/// Process group and user + system clock ticks from a `/proc/PID/stat` line.
/// The command name (field 2) may hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let pgrp = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((pgrp, utime + stime))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "1234 (nginx: worker (x)) S 1 1230 1230 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 1 0 5 0";
        assert_eq!(parse_stat(line), Some((1230, 380)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_group_has_some_cpu() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (group, _) = parse_stat(&stat).unwrap();
        assert!(CpuClock::new().group_secs(group).is_some());
    }
}
