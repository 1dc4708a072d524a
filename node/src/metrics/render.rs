//! The Prometheus text of the counters and histograms kept in [`Metrics`],
//! through `prometheus-client`'s encoder.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use raft::network::Traffic;

use super::{
    CIRCUITS, Metrics, OUTCOMES, RouteMetrics, StatusCounts, TOKEN_KINDS, TargetMetrics,
    UpstreamMetrics, lock,
};

/// A route's per-upstream counters, as one scrape reads them.
type Targets = Vec<(Arc<str>, Arc<TargetMetrics>)>;

impl Metrics {
    /// Writes the counters and histograms kept here: those of the routes
    /// and upstreams of the current configuration (see [`Metrics::retain`]).
    pub fn encode(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let routes: Vec<(Arc<str>, Arc<RouteMetrics>)> = lock(&self.routes)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let upstreams: Vec<(Arc<str>, Arc<UpstreamMetrics>)> = lock(&self.upstreams)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let targets: Vec<(Arc<str>, Targets)> = routes
            .iter()
            .map(|(name, r)| {
                let t = lock(&r.targets)
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (name.clone(), t)
            })
            .collect();

        // Requests by route, upstream and status.
        let mut m = encoder.encode_descriptor(
            "meridian_requests",
            "Requests answered, by route, answering upstream and HTTP status (route and upstream empty \
             when no route was chosen, upstream empty when no upstream answered)",
            None,
            MetricType::Counter,
        )?;
        let mut requests = |route: &str, upstream: &str, counts: &StatusCounts| {
            for (status, n) in counts.counts() {
                let status = if status == 0 {
                    "other".to_owned()
                } else {
                    status.to_string()
                };
                let labels = [
                    ("route", route),
                    ("upstream", upstream),
                    ("status", &status),
                ];
                counter(&mut m, &labels, n)?;
            }
            Ok::<(), std::fmt::Error>(())
        };
        requests("", "", &self.unrouted)?;
        for ((name, route), (_, route_targets)) in routes.iter().zip(&targets) {
            requests(name, "", &route.unanswered)?;
            for (upstream, t) in route_targets {
                requests(name, upstream, &t.answers)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "meridian_request_duration",
            "Time from choosing a request's targets to its answer being ready (a plain answer read whole, a \
             stream's first chunk) or its final failure, by route",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (name, route) in &routes {
            route
                .latency
                .encode(m.encode_family(&[("route", &**name)])?)?;
        }

        let mut m = encoder.encode_descriptor(
            "meridian_failovers",
            "Attempts that failed and were followed by another attempt, by route and the upstream that failed",
            None,
            MetricType::Counter,
        )?;
        for (name, route_targets) in &targets {
            for (upstream, t) in route_targets {
                let labels = [("route", &**name), ("upstream", &**upstream)];
                counter(&mut m, &labels, t.failovers.load(Ordering::Relaxed))?;
            }
        }

        // What answers cost, by route and the upstream that answered: the
        // label sets are the configured pairs, bounded like the ones above.
        let mut m = encoder.encode_descriptor(
            "meridian_cost_usd",
            "What answers cost at the configured prices, in dollars, by route and answering upstream \
             (answers without a price or without usage add nothing)",
            None,
            MetricType::Counter,
        )?;
        for (name, route_targets) in &targets {
            for (upstream, t) in route_targets {
                let nanos = t.cost_nanodollars.load(Ordering::Relaxed);
                let labels = [("route", &**name), ("upstream", &**upstream)];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, f64, u64>(&(nanos as f64 / 1e9), None)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "meridian_tokens",
            "Tokens of answers with usage, by route, answering upstream and kind (input not read from \
             the prompt cache, cached_input, output); a plain answer's are read when its target has a \
             price or the log is at info",
            None,
            MetricType::Counter,
        )?;
        for (name, route_targets) in &targets {
            for (upstream, t) in route_targets {
                for (i, kind) in TOKEN_KINDS.iter().enumerate() {
                    let labels = [
                        ("route", &**name),
                        ("upstream", &**upstream),
                        ("kind", *kind),
                    ];
                    counter(&mut m, &labels, t.tokens(i))?;
                }
            }
        }

        for (metric, help, pick) in [
            (
                "meridian_hedges_sent",
                "Hedged second attempts sent, by route",
                (|r: &RouteMetrics| r.hedges_sent.load(Ordering::Relaxed))
                    as fn(&RouteMetrics) -> u64,
            ),
            (
                "meridian_hedges_won",
                "Requests answered by their hedged attempt, by route",
                |r: &RouteMetrics| r.hedges_won.load(Ordering::Relaxed),
            ),
        ] {
            let mut m = encoder.encode_descriptor(metric, help, None, MetricType::Counter)?;
            for (name, route) in &routes {
                counter(&mut m, &[("route", &**name)], pick(route))?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "meridian_requests_in_flight",
            "Requests admitted and not yet answered (a stream until it ends)",
            None,
            MetricType::Gauge,
        )?;
        gauge(&mut m, &[], self.in_flight.load(Ordering::Relaxed) as i64)?;

        let mut m = encoder.encode_descriptor(
            "meridian_upstream_attempts",
            "Attempts at each upstream, by outcome (success, client_error, error, timeout)",
            None,
            MetricType::Counter,
        )?;
        for (id, u) in &upstreams {
            for (outcome, n) in OUTCOMES.iter().zip(&u.outcomes) {
                let labels = [("upstream", &**id), ("outcome", *outcome)];
                counter(&mut m, &labels, n.load(Ordering::Relaxed))?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "meridian_upstream_ttfb",
            "Time to first byte of each upstream's attempts that got an answer (a stream's first chunk)",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (id, u) in &upstreams {
            u.ttfb.encode(m.encode_family(&[("upstream", &**id)])?)?;
        }

        let mut m = encoder.encode_descriptor(
            "meridian_upstream_circuit_transitions",
            "Circuit breaker changes on this node, by upstream and the state entered",
            None,
            MetricType::Counter,
        )?;
        for (id, u) in &upstreams {
            for (state, n) in CIRCUITS.iter().zip(&u.transitions) {
                let labels = [("upstream", &**id), ("to", *state)];
                counter(&mut m, &labels, n.load(Ordering::Relaxed))?;
            }
        }
        self.encode_keys(encoder)?;
        self.classes
            .load()
            .encode(encoder, crate::clock::monotonic_ms())?;
        self.shed.encode(encoder)?;
        super::raft_traffic::encode(&Traffic::process(), &self.health_report, encoder)?;
        super::logs::encode(encoder)?;
        super::process::Process::read().encode(encoder)
    }
}
/// Writes one counter value with its labels.
pub fn counter(
    m: &mut MetricEncoder<'_>,
    labels: &[(&str, &str)],
    value: u64,
) -> Result<(), std::fmt::Error> {
    if labels.is_empty() {
        return m.encode_counter::<NoLabelSet, u64, u64>(&value, None);
    }
    m.encode_family(&labels)?
        .encode_counter::<NoLabelSet, u64, u64>(&value, None)
}

/// Writes one gauge value with its labels (none: a bare `name value`).
pub fn gauge<V: EncodeGaugeValue>(
    m: &mut MetricEncoder<'_>,
    labels: &[(&str, &str)],
    value: V,
) -> Result<(), std::fmt::Error> {
    if labels.is_empty() {
        return m.encode_gauge(&value);
    }
    m.encode_family(&labels)?.encode_gauge(&value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::time::Duration;

    #[test]
    fn encodes_as_prometheus_text() {
        let m = Metrics::default();
        let route = m.route(&Arc::from("fast"));
        let t = route.target(&Arc::from("a"));
        t.answers.inc(200);
        t.failovers.fetch_add(1, Ordering::Relaxed);
        t.spent(1_000, 400, 100, Some(3_000_000));
        route.latency.observe(Duration::from_millis(30));
        // A success (OUTCOMES[0]) answered in 20 ms.
        m.upstream(&Arc::from("a"))
            .attempt(0, Some(Duration::from_millis(20)));
        let key = m.key(&Arc::from("acme"));
        key.outcome(crate::metrics::KeyOutcome::RateLimited);
        key.spent(10, 5, 2_000_000);
        key.set_balance(Some(1_500_000_000));
        m.key(&Arc::from("gone"));
        m.retain_keys(|k| k != "gone");
        #[derive(Debug)]
        struct C(Arc<Metrics>);
        impl prometheus_client::collector::Collector for C {
            fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
                self.0.encode(&mut e)
            }
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(C(Arc::new(m))));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "meridian_requests_total{route=\"fast\",upstream=\"a\",status=\"200\"} 1",
            "meridian_failovers_total{route=\"fast\",upstream=\"a\"} 1",
            "meridian_cost_usd_total{route=\"fast\",upstream=\"a\"} 0.003",
            "meridian_tokens_total{route=\"fast\",upstream=\"a\",kind=\"input\"} 600",
            "meridian_tokens_total{route=\"fast\",upstream=\"a\",kind=\"cached_input\"} 400",
            "meridian_tokens_total{route=\"fast\",upstream=\"a\",kind=\"output\"} 100",
            "meridian_request_duration_seconds_bucket{le=\"0.05\",route=\"fast\"} 1",
            "meridian_upstream_ttfb_seconds_count{upstream=\"a\"} 1",
            "meridian_upstream_attempts_total{upstream=\"a\",outcome=\"success\"} 1",
            "# TYPE meridian_request_duration_seconds histogram",
            "meridian_key_requests_total{key=\"acme\",outcome=\"rate_limited\"} 1",
            "meridian_key_requests_total{key=\"acme\",outcome=\"admitted\"} 0",
            "meridian_key_tokens_total{key=\"acme\",kind=\"output\"} 5",
            "meridian_key_cost_usd_total{key=\"acme\"} 0.002",
            "meridian_key_credits_balance_usd{key=\"acme\"} 1.5",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(!text.contains("gone"), "a deleted key's series go away");
    }
}
