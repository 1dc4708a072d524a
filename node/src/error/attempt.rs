//! Why one attempt at one upstream failed ([`AttemptError`]), and the
//! account of a request's failed attempts ([`Attempts`]) that the client's
//! 502, 504 or 429 quotes. Typed, so the failover decides on kinds (a
//! timeout, a 429 and its wait, the client's own mistake) rather than on
//! text; displayed, they read as the text the log lines, the failover
//! events and the error messages always had.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderMap, StatusCode};

/// Who a failed attempt's failure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureSource {
    /// The upstream, or the network on the way to it: another target may
    /// well do better.
    Upstream,
    /// The client's own request (a 400, 413, 422…): every target would say
    /// the same, so the upstream's answer is the one to give.
    Client,
    /// One of the node's own limits (`proxy.max_response_bytes`).
    Internal,
}

/// Why one attempt at one target did not give the client its answer.
/// Displays as the text the log line, the failover event and the client's
/// error message quote (`HTTP 503 (overloaded)`, `no answer within 800 ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// No answer head: the connection failed (`connected` false), or the
    /// request failed on a connection that was made.
    Connect {
        /// Whether a connection was made before the failure.
        connected: bool,
        /// The chain of causes, outermost first.
        causes: Vec<String>,
    },
    /// No answer (a first byte, a stream's first chunk, a whole plain
    /// body) within the time the attempt had.
    Timeout {
        /// The time it had.
        after: Duration,
    },
    /// An answer whose status says this target failed, not the request
    /// (or, with a 4xx the client caused, that the request did).
    Status {
        /// The status.
        code: StatusCode,
        /// For a 429, how long the upstream asked to be left alone.
        retry_after: Option<Duration>,
        /// The upstream's own error message, scrubbed and cut.
        message: Option<String>,
    },
    /// A success whose body failed to arrive whole.
    Body {
        /// What went wrong.
        cause: String,
        /// The body was larger than `proxy.max_response_bytes`.
        over_limit: bool,
    },
    /// A stream that ended, or failed, before its first data.
    EndedEarly {
        /// The failure, when it was not a plain end.
        cause: Option<String>,
    },
}

impl AttemptError {
    /// The failure an answer with `code` stands for; a 429 carries the
    /// wait its `Retry-After` asks for (a second when it names none, or
    /// none the node can read).
    pub fn status(code: StatusCode, headers: &HeaderMap, message: Option<String>) -> Self {
        let retry_after = (code == StatusCode::TOO_MANY_REQUESTS)
            .then(|| retry_after(headers).unwrap_or(Duration::from_secs(1)));
        Self::Status {
            code,
            retry_after,
            message,
        }
    }

    /// Who the failure comes from.
    pub fn failure_source(&self) -> FailureSource {
        match self {
            Self::Status { code, .. } if !retryable_status(*code) => FailureSource::Client,
            Self::Body {
                over_limit: true, ..
            } => FailureSource::Internal,
            _ => FailureSource::Upstream,
        }
    }

    /// Whether another target may still succeed where this one failed.
    /// Everything but the client's own mistakes is: even an answer over the
    /// node's size limit may come smaller from another provider's model.
    pub fn retryable(&self) -> bool {
        self.failure_source() != FailureSource::Client
    }

    /// Whether the attempt ran out of time (the request answers 504 when
    /// every attempt did).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// Whether the upstream said it is overloaded (Anthropic's 529), which
    /// a client of Anthropic's API expects to see as such.
    pub fn is_overloaded(&self) -> bool {
        matches!(self, Self::Status { code, .. } if code.as_u16() == 529)
    }

    /// The wait a rate-limited upstream asked for; `None` for any other
    /// failure.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The same failure with `clean` applied to every text an upstream or
    /// the network wrote into it (to take the node's keys out).
    pub fn map_text(self, mut clean: impl FnMut(String) -> String) -> Self {
        match self {
            Self::Connect { connected, causes } => Self::Connect {
                connected,
                causes: causes.into_iter().map(clean).collect(),
            },
            Self::Status {
                code,
                retry_after,
                message,
            } => Self::Status {
                code,
                retry_after,
                message: message.map(clean),
            },
            Self::Body { cause, over_limit } => Self::Body {
                cause: clean(cause),
                over_limit,
            },
            Self::EndedEarly { cause } => Self::EndedEarly {
                cause: cause.map(clean),
            },
            timeout @ Self::Timeout { .. } => timeout,
        }
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { connected, causes } => {
                f.write_str(if *connected {
                    "request failed"
                } else {
                    "connect failed"
                })?;
                causes.iter().try_for_each(|c| write!(f, ": {c}"))
            }
            Self::Timeout { after } => write!(f, "no answer within {} ms", after.as_millis()),
            Self::Status { code, message, .. } => {
                write!(f, "HTTP {}", code.as_u16())?;
                match message {
                    Some(m) => write!(f, " ({m})"),
                    None => Ok(()),
                }
            }
            Self::Body { cause, .. } => write!(f, "answer body failed: {cause}"),
            Self::EndedEarly { cause: None } => f.write_str("the stream ended before any data"),
            Self::EndedEarly { cause: Some(c) } => {
                write!(f, "the stream failed before any data: {c}")
            }
        }
    }
}

impl std::error::Error for AttemptError {}

/// Statuses that say this target failed, not the request: try another.
/// 401/403/404 mean the target is misconfigured (key, model), which another
/// target may well not be.
pub fn retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
                | StatusCode::NOT_FOUND
                | StatusCode::REQUEST_TIMEOUT
        )
}

/// `Retry-After` in seconds (fractions allowed), capped at an hour; `None`
/// for a date, a negative or non-finite number, or anything else.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// One line of a request's account of what it tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tried {
    /// An attempt at one target failed.
    Failed {
        /// The upstream's id.
        upstream: Arc<str>,
        /// The provider's model name.
        model: Arc<str>,
        /// Why.
        error: AttemptError,
    },
    /// The request's deadline passed before the next target was tried.
    DeadlinePassed {
        /// The route's request timeout.
        timeout: Duration,
    },
    /// A target was not tried: its upstream asked to be left alone
    /// (`Retry-After`), here or on another node, for this much longer.
    Cooled {
        /// The upstream's id.
        upstream: Arc<str>,
        /// The wait left.
        left: Duration,
    },
}

impl fmt::Display for Tried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed {
                upstream,
                model,
                error,
            } => write!(f, "{upstream}/{model}: {error}"),
            Self::DeadlinePassed { timeout } => {
                write!(f, "request deadline of {} ms passed", timeout.as_millis())
            }
            Self::Cooled { upstream, left } => write!(
                f,
                "{upstream}: asked to be left alone (Retry-After) for {} ms more",
                left.as_millis()
            ),
        }
    }
}

/// What a request tried, in order; displays as its lines joined by `; `
/// (`a/x: HTTP 503; b/y: no answer within 800 ms`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempts(Vec<Tried>);

impl Attempts {
    /// Adds a line.
    pub fn push(&mut self, tried: Tried) {
        self.0.push(tried);
    }

    /// The lines, in order.
    pub fn lines(&self) -> &[Tried] {
        &self.0
    }
}

impl From<Vec<Tried>> for Attempts {
    fn from(lines: Vec<Tried>) -> Self {
        Self(lines)
    }
}

impl fmt::Display for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, tried) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{tried}")?;
        }
        Ok(())
    }
}

/// The account of one failed attempt (upstream `a`, model `x`), which the
/// error tests of this module and of [`ProxyError`](super::ProxyError) quote.
#[cfg(test)]
pub(crate) fn attempts(error: AttemptError) -> Attempts {
    Attempts::from(vec![Tried::Failed {
        upstream: "a".into(),
        model: "x".into(),
        error,
    }])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use http::HeaderValue;

    use super::*;
    use crate::error::ProxyError;

    /// The accounts read as they did when they were built as strings.
    #[test]
    fn attempt_accounts_read_as_before() {
        let mut list = attempts(AttemptError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            &HeaderMap::new(),
            Some("overloaded".into()),
        ));
        list.push(Tried::Failed {
            upstream: "b".into(),
            model: "y".into(),
            error: AttemptError::Timeout {
                after: Duration::from_millis(800),
            },
        });
        list.push(Tried::Failed {
            upstream: "c".into(),
            model: "z".into(),
            error: AttemptError::Connect {
                connected: false,
                causes: vec!["client error (Connect)".into(), "refused".into()],
            },
        });
        list.push(Tried::DeadlinePassed {
            timeout: Duration::from_secs(30),
        });
        assert_eq!(
            ProxyError::UpstreamsFailed { attempts: list }.to_string(),
            "No upstream could answer: a/x: HTTP 503 (overloaded); b/y: no answer within 800 ms; \
             c/z: connect failed: client error (Connect): refused; request deadline of 30000 ms passed"
        );
        let texts = [
            (
                AttemptError::Connect {
                    connected: true,
                    causes: vec![],
                },
                "request failed",
            ),
            (
                AttemptError::Body {
                    cause: "length limit exceeded".into(),
                    over_limit: true,
                },
                "answer body failed: length limit exceeded",
            ),
            (
                AttemptError::EndedEarly { cause: None },
                "the stream ended before any data",
            ),
            (
                AttemptError::EndedEarly {
                    cause: Some("reset".into()),
                },
                "the stream failed before any data: reset",
            ),
        ];
        for (error, text) in texts {
            assert_eq!(error.to_string(), text);
        }
        assert_eq!(Attempts::default().to_string(), "");
    }

    fn headers(retry_after: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static(retry_after));
        h
    }

    #[test]
    fn retry_after_reads_seconds() {
        assert_eq!(retry_after(&headers("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    }

    /// Whatever an upstream writes, the wait is a number of seconds
    /// between none and an hour, or nothing.
    #[test]
    fn retry_after_survives_hostile_values() {
        let read = |v| retry_after(&headers(v));
        assert_eq!(read(" 2.5 "), Some(Duration::from_millis(2_500)));
        assert_eq!(read("0"), Some(Duration::ZERO));
        assert_eq!(read("99999999999"), Some(Duration::from_secs(3600)));
        assert_eq!(read("1e308"), Some(Duration::from_secs(3600)));
        for hostile in [
            "-1", "-0.5", "NaN", "inf", "-inf", "1e400", "", "3s", "0x10", "1,5",
        ] {
            assert_eq!(read(hostile), None, "{hostile:?}");
        }
        assert_eq!(retry_after(&HeaderMap::new()), None);
        let mut bytes = HeaderMap::new();
        bytes.insert(RETRY_AFTER, HeaderValue::from_bytes(b"\xff1").unwrap());
        assert_eq!(retry_after(&bytes), None);
    }

    #[test]
    fn which_statuses_fail_over() {
        for s in [500, 502, 503, 504, 429, 401, 403, 404, 408] {
            assert!(retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 413, 422] {
            assert!(!retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    /// A 429 waits what it asks for (a second when it asks nothing
    /// readable); a 5xx is the upstream's failure; a 400, 413 or 422 is
    /// the client's and is never retried.
    #[test]
    fn statuses_are_classified() {
        let limited = AttemptError::status(StatusCode::TOO_MANY_REQUESTS, &headers("7"), None);
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
        assert!(limited.retryable());
        assert_eq!(limited.failure_source(), FailureSource::Upstream);
        assert!(!limited.is_timeout());
        for hostile in ["NaN", "-3", "soon"] {
            let e = AttemptError::status(StatusCode::TOO_MANY_REQUESTS, &headers(hostile), None);
            assert_eq!(e.retry_after(), Some(Duration::from_secs(1)), "{hostile}");
        }
        for code in [500, 502, 503, 504, 401, 403, 404, 408] {
            let e = AttemptError::status(StatusCode::from_u16(code).unwrap(), &headers("7"), None);
            // Only a 429's wait counts.
            assert_eq!(e.retry_after(), None, "{code}");
            assert!(e.retryable(), "{code}");
            assert_eq!(e.failure_source(), FailureSource::Upstream, "{code}");
        }
        for code in [400, 413, 422] {
            let e = AttemptError::status(StatusCode::from_u16(code).unwrap(), &headers("7"), None);
            assert!(!e.retryable(), "{code}");
            assert_eq!(e.failure_source(), FailureSource::Client, "{code}");
        }
        let big = AttemptError::Body {
            cause: "length limit exceeded".into(),
            over_limit: true,
        };
        assert_eq!(big.failure_source(), FailureSource::Internal);
        assert!(big.retryable());
        let timeout = AttemptError::Timeout {
            after: Duration::from_millis(5),
        };
        assert!(timeout.is_timeout() && timeout.retryable());
        assert_eq!(timeout.retry_after(), None);
    }

    #[test]
    fn texts_can_be_cleaned() {
        let e = AttemptError::Connect {
            connected: false,
            causes: vec!["key sk-1".into()],
        }
        .map_text(|t| t.replace("sk-1", "[redacted]"));
        assert_eq!(e.to_string(), "connect failed: key [redacted]");
        let e = AttemptError::status(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            Some("sk-1".into()),
        )
        .map_text(|_| "x".into());
        assert_eq!(e.to_string(), "HTTP 502 (x)");
    }
}
