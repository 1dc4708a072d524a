//! The node's monotonic clock in milliseconds, shared by every module that
//! keeps time windows (cooldowns, the classes' SLA windows), so that one
//! reading means the same instant everywhere and no module has to import
//! another only for its clock.

use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds since the node's first reading of this clock.
pub fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}
