//! The file descriptors the connection caps may take, against the
//! process's own limit: a node whose `ulimit -n` is below what
//! `[connections]` allows runs out of descriptors before it reaches its
//! caps, so start-up compares the two and warns.

/// Descriptors a node may need at its connection caps: a client and an
/// upstream connection for each data-plane connection, the admin ones, and
/// a margin for Raft, the store and logs.
pub fn descriptors_needed(config: &proto::config::ConnectionsConfig) -> u64 {
    2 * config.max_connections as u64 + config.admin_max_connections as u64 + 256
}

/// This process's soft descriptor limit (`ulimit -n`), from
/// `/proc/self/limits`; `None` where that cannot be read.
pub fn descriptor_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_descriptor_limit(&limits)
}

fn parse_descriptor_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_descriptor_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             95571                95571                processes\n\
                      Max open files            20000                524288               files\n";
        assert_eq!(parse_descriptor_limit(limits), Some(20_000));
        assert_eq!(
            parse_descriptor_limit("Max open files  unlimited  unlimited  files"),
            None
        );
        assert_eq!(parse_descriptor_limit(""), None);
        let defaults = proto::config::ConnectionsConfig::default();
        assert_eq!(descriptors_needed(&defaults), 2 * 8192 + 256 + 256);
    }
}
