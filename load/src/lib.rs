//! Open-loop load generator.
//!
//! Benchmarks and the chaos suite need traffic that behaves like many
//! independent clients: request `i` leaves at `t0 + i / rate` whatever happened
//! to the requests before it, and its latency is measured from that *scheduled*
//! time. A generator that waits for answers before sending more (closed loop)
//! slows down exactly when the system under test does, and so hides the worst
//! latencies (coordinated omission). The closed-loop mode is still offered, for
//! the one thing it is good at: finding saturation throughput.
//!
//! Use it in three steps: describe the traffic ([`RequestSpec`] and [`Mix`]),
//! pick a plan ([`OpenLoop`] or [`ClosedLoop`]) and [`RunOptions`], then run it
//! with a [`Generator`]. The [`Report`] always has HDR histograms and a
//! [`Summary`]; per-request [`Record`]s are kept on request.

mod client;
mod error;
mod record;
mod run;
mod schedule;
mod spec;

pub use error::LoadError;
pub use record::{Counts, Outcome, Percentiles, Record, Report, Summary};
pub use run::Generator;
pub use schedule::{ClosedLoop, DEFAULT_BATCH_WINDOW, DEFAULT_MAX_IN_FLIGHT, OpenLoop, RunOptions};
pub use spec::{Mix, RequestKind, RequestSpec};

#[cfg(test)]
mod tests;
