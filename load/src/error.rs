//! The load generator's error type.

/// Why a load run (or a one-off request made through the generator's client)
/// could not be carried out. Failures of individual requests during a run are
/// not errors: they are recorded as [`Outcome`](super::Outcome)s.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The arrival rate must be a positive, finite number of requests per second.
    #[error("arrival rate must be positive and finite, got {0}")]
    InvalidRate(f64),
    /// A run needs a non-zero duration.
    #[error("duration must be greater than zero")]
    ZeroDuration,
    /// Closed loop needs at least one worker.
    #[error("concurrency must be at least 1")]
    ZeroConcurrency,
    /// The in-flight cap must be at least 1 and fit a semaphore's permit count.
    #[error("in-flight cap must be between 1 and {max}, got {got}")]
    InvalidInFlightCap {
        /// The cap that was asked for.
        got: usize,
        /// The largest cap supported.
        max: usize,
    },
    /// A mix needs at least one request with a non-zero weight.
    #[error("request mix is empty or all its weights are zero")]
    EmptyMix,
    /// A request's URL could not be parsed.
    #[error("invalid URL {url:?}: {source}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        source: http::uri::InvalidUri,
    },
    /// A histogram could not be created or merged.
    #[error("histogram: {0}")]
    Histogram(String),
    /// A worker task of the run panicked or was cancelled.
    #[error("load worker failed: {0}")]
    Worker(String),
    /// A one-off request ([`Generator::fetch`](super::Generator::fetch)) failed
    /// before its answer's headers arrived.
    #[error("request failed: {0}")]
    Request(#[source] hyper_util::client::legacy::Error),
    /// A one-off request's answer body could not be read.
    #[error("reading the answer body failed: {0}")]
    Body(#[source] hyper::Error),
    /// A one-off request took longer than its timeout.
    #[error("request timed out")]
    Timeout,
}
