//! Meridian's chaos suite. None of this is on the product's request path:
//! `meridian-chaos` (cases, fault proxies, runner, oracle, report) proves the
//! SLA against a real local cluster under faults. The fake provider it
//! starts lives in `mock/` (`meridian-mock`), the open-loop load it drives in
//! `load/` (`meridian-load`), the cluster launcher in `harness/`.

pub mod case;
pub mod faults;
pub mod oracle;
pub mod report;
pub mod runner;
pub mod tenants;
