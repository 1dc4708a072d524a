//! Test tools for Meridian. None of this is on the product's request path: the
//! fake provider (`meridian-mock`) stands in for real AI providers in tests,
//! demos and benchmarks, the load generator drives open-loop traffic, and
//! the chaos suite (`meridian-chaos`: cases, fault proxies, runner, oracle,
//! report) proves the SLA against a real local cluster under faults.

pub mod case;
pub mod faults;
pub mod load;
pub mod mock;
pub mod oracle;
pub mod report;
pub mod runner;
