//! What to send: request specifications and a weighted mix of them.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::Full;
use rand::Rng;

use super::LoadError;

/// How an answer is timed, because "first byte" means different things for
/// the two kinds of AI API calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// A buffered answer: TTFB is the time to the response headers.
    Plain,
    /// A streamed (SSE) answer: TTFB is the time to the first body chunk, the
    /// figure a chat user feels as "time to first token".
    Stream,
}

/// One request to send, possibly many times. Cheap to send repeatedly: the
/// body is shared [`Bytes`] and the URL is parsed once.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// HTTP method.
    pub method: Method,
    /// Absolute `http://` URL.
    pub uri: Uri,
    /// Request headers, sent as given.
    pub headers: HeaderMap,
    /// Request body (may be empty).
    pub body: Bytes,
    /// How the answer is timed.
    pub kind: RequestKind,
}

impl RequestSpec {
    /// A request with no headers and an empty body, for anything that is not
    /// a JSON POST (control calls, health probes).
    pub fn new(method: Method, url: &str, kind: RequestKind) -> Result<Self, LoadError> {
        let uri = Uri::try_from(url).map_err(|source| LoadError::InvalidUrl {
            url: url.to_owned(),
            source,
        })?;
        Ok(Self {
            method,
            uri,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            kind,
        })
    }

    /// A JSON request with `content-type: application/json`, the shape of
    /// every OpenAI data-plane call.
    pub fn json(
        method: Method,
        url: &str,
        body: impl Into<Bytes>,
        kind: RequestKind,
    ) -> Result<Self, LoadError> {
        let mut spec = Self::new(method, url, kind)?;
        spec.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        spec.body = body.into();
        Ok(spec)
    }

    /// Builds one HTTP request from the spec.
    pub(crate) fn to_request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// A weighted choice among request specs, so one run can mix plain and
/// streamed calls (or models, or regions) in set proportions.
#[derive(Debug, Clone)]
pub struct Mix {
    specs: Vec<RequestSpec>,
    /// Running sums of the weights: spec `i` owns tickets
    /// `cumulative[i - 1]..cumulative[i]`.
    cumulative: Vec<u64>,
}

impl Mix {
    /// A mix from `(weight, spec)` pairs. Zero-weight entries are kept (so
    /// indices in records match the caller's list) but never chosen.
    pub fn new(weighted: Vec<(u32, RequestSpec)>) -> Result<Self, LoadError> {
        let mut total = 0u64;
        let mut cumulative = Vec::with_capacity(weighted.len());
        let mut specs = Vec::with_capacity(weighted.len());
        for (weight, spec) in weighted {
            total += u64::from(weight);
            cumulative.push(total);
            specs.push(spec);
        }
        if total == 0 {
            return Err(LoadError::EmptyMix);
        }
        Ok(Self { specs, cumulative })
    }

    /// A mix of one spec.
    pub fn single(spec: RequestSpec) -> Self {
        Self {
            specs: vec![spec],
            cumulative: vec![1],
        }
    }

    /// The specs, in the order given; records refer to them by index.
    pub fn specs(&self) -> &[RequestSpec] {
        &self.specs
    }

    /// Sum of all weights.
    fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// Draws a spec with probability proportional to its weight, and its index.
    pub fn pick(&self, rng: &mut impl Rng) -> (usize, &RequestSpec) {
        let index = if self.specs.len() == 1 {
            0
        } else {
            self.index_of_ticket(rng.random_range(0..self.total()))
        };
        // In range: a ticket below the total belongs to some spec.
        (index, &self.specs[index])
    }

    /// The spec that owns `ticket` (in `0..total`).
    fn index_of_ticket(&self, ticket: u64) -> usize {
        self.cumulative.partition_point(|&end| end <= ticket)
    }

    /// The spec at `index`, if any.
    pub fn get(&self, index: usize) -> Option<&RequestSpec> {
        self.specs.get(index)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    fn spec(kind: RequestKind) -> RequestSpec {
        RequestSpec::json(Method::POST, "http://127.0.0.1:1/x", "{}", kind).unwrap()
    }

    #[test]
    fn tickets_map_to_weights() {
        let mix = Mix::new(vec![
            (3, spec(RequestKind::Plain)),
            (0, spec(RequestKind::Plain)),
            (1, spec(RequestKind::Stream)),
        ])
        .unwrap();
        let owners: Vec<usize> = (0..4).map(|t| mix.index_of_ticket(t)).collect();
        assert_eq!(owners, vec![0, 0, 0, 2]);
    }

    #[test]
    fn seeded_choice_is_repeatable_and_follows_weights() {
        let mix = Mix::new(vec![
            (9, spec(RequestKind::Plain)),
            (1, spec(RequestKind::Stream)),
        ])
        .unwrap();
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..10_000)
                .map(|_| mix.pick(&mut rng).0)
                .collect::<Vec<_>>()
        };
        let first = draw(7);
        assert_eq!(first, draw(7));
        let streams = first.iter().filter(|&&i| i == 1).count();
        assert!((800..1200).contains(&streams), "{streams} streams of 10000");
    }

    #[test]
    fn empty_or_weightless_mix_is_rejected() {
        assert!(matches!(Mix::new(vec![]), Err(LoadError::EmptyMix)));
        assert!(matches!(
            Mix::new(vec![(0, spec(RequestKind::Plain))]),
            Err(LoadError::EmptyMix)
        ));
    }

    #[test]
    fn json_spec_sets_content_type_and_rejects_bad_urls() {
        let s = spec(RequestKind::Plain);
        assert_eq!(s.headers[CONTENT_TYPE], "application/json");
        assert!(matches!(
            RequestSpec::new(Method::GET, "http://bad host/", RequestKind::Plain),
            Err(LoadError::InvalidUrl { .. })
        ));
    }
}
