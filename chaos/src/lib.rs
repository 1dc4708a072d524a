//! Test tools for Meridian. None of this is on the product's request path: the
//! fake provider (`meridian-mock`) stands in for real AI providers in tests,
//! demos and benchmarks, and the load generator drives open-loop traffic.

pub mod load;
pub mod mock;
