//! `GET /metrics`: the node's figures in the Prometheus text format
//! (OpenMetrics 1.0, which Prometheus asks for first), written by
//! `prometheus-client`'s encoder.
//!
//! Unauthenticated, like `/healthz` and `/readyz`, so any scraper can read
//! it without being handed the admin token (the token can change a
//! cluster's routes; a scraper should not hold it). That is safe because it
//! says nothing secret: its labels are route names, upstream ids, member
//! ids and regions, statuses and outcomes, never a provider key, a client
//! key or its holder's name, a base URL or a request. Keep it that way when
//! adding a series.
//!
//! Counters and histograms come from [`crate::metrics::Metrics`], which the
//! data plane updates with atomics; everything that describes state (the
//! circuits, Raft, the health board's reports, readiness) is read at scrape
//! time from the same sources as the admin API.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use openraft::ServerState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{AdminError, AdminState, readiness};
use crate::health::board::HealthBoard;
use crate::health::breaker::Circuit;
use crate::metrics::{CIRCUITS, gauge};
use crate::routing::RoutingSnapshot;

/// What Prometheus is told the answer is.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`.
pub(super) async fn metrics(State(state): State<AdminState>) -> Response {
    let scrape = Scrape::read(&state);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut text = String::with_capacity(16 * 1024);
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics could not be encoded");
            AdminError::Metrics.into_response()
        }
    }
}

/// One member as the scrape sees it.
#[derive(Debug)]
struct MemberFigures {
    id: String,
    voter: bool,
    matched: Option<u64>,
    last_contact_s: Option<f64>,
}

/// Everything one scrape reports, read once at its start.
struct Scrape {
    snapshot: Arc<RoutingSnapshot>,
    board: Arc<HealthBoard>,
    ready: bool,
    config_applied: bool,
    role: ServerState,
    term: u64,
    leader: Option<u64>,
    last_log: Option<u64>,
    applied: Option<u64>,
    snapshot_index: Option<u64>,
    quorum_ack_ms: Option<u64>,
    leader_view: bool,
    members: Vec<MemberFigures>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

impl Scrape {
    fn read(state: &AdminState) -> Self {
        let raft = state.cluster.raft.metrics().borrow().clone();
        let membership = raft.membership_config.membership();
        let replication = raft.replication.as_ref();
        let members = membership
            .nodes()
            .map(|(id, node)| MemberFigures {
                id: id.to_string(),
                voter: membership.voter_ids().any(|v| v == *id),
                matched: replication
                    .and_then(|r| r.get(id))
                    .map(|m| m.map_or(0, |l| l.index)),
                last_contact_s: (*id != state.node_id)
                    .then(|| state.cluster.last_contact(&node.raft_addr))
                    .flatten()
                    .map(|d| d.as_secs_f64()),
            })
            .collect();
        let readiness = readiness(state);
        Self {
            snapshot: state.snapshot.load_full(),
            board: state.board.load_full(),
            ready: readiness.ready,
            config_applied: readiness.config_applied,
            role: raft.state,
            term: raft.current_term,
            leader: raft.current_leader,
            last_log: raft.last_log_index,
            applied: raft.last_applied.map(|l| l.index),
            snapshot_index: raft.snapshot.map(|l| l.index),
            quorum_ack_ms: raft.millis_since_quorum_ack,
            leader_view: replication.is_some(),
            members,
        }
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.snapshot.metrics.encode(&mut encoder)?;
        self.encode_state(&mut encoder)
    }
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

impl Scrape {
    fn encode_state(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut m = e.encode_descriptor(
            "meridian_ready",
            "1 when /readyz answers 200: the cluster's configuration is applied and a route has a usable upstream",
            None,
            MetricType::Gauge,
        )?;
        gauge(&mut m, &[], flag(self.ready))?;
        let mut m = e.encode_descriptor(
            "meridian_config_applied",
            "1 once this node has applied the cluster's seeded configuration",
            None,
            MetricType::Gauge,
        )?;
        gauge(&mut m, &[], flag(self.config_applied))?;

        // Upstreams: this node's circuits and attempts in flight.
        let upstreams = &self.snapshot.upstreams;
        let mut m = e.encode_descriptor(
            "meridian_upstream_circuit",
            "This node's circuit breaker of each upstream: 1 for its current state, 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for u in upstreams {
            let current = u.live.circuit();
            for (i, name) in CIRCUITS.iter().enumerate() {
                let on = Circuit::from_u8(i as u8) == current;
                gauge(&mut m, &[("upstream", &u.id), ("state", name)], flag(on))?;
            }
        }
        let mut m = e.encode_descriptor(
            "meridian_upstream_in_flight",
            "Attempts running against each upstream from this node",
            None,
            MetricType::Gauge,
        )?;
        for u in upstreams {
            let n = u.live.in_flight.load(Ordering::Relaxed) as i64;
            gauge(&mut m, &[("upstream", &u.id)], n)?;
        }
        let mut m = e.encode_descriptor(
            "meridian_upstream_cooldown",
            "How long each upstream stays cooled on this node (its own or another node's answer \
             asked to be left alone with Retry-After); 0 when it is not",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        let now_ms = crate::health::cooldown::now_ms();
        for u in upstreams {
            let left = u.live.cooldown.left(now_ms).unwrap_or_default();
            gauge(&mut m, &[("upstream", &u.id)], left.as_secs_f64())?;
        }
        let mut m = e.encode_descriptor(
            "meridian_upstream_usable",
            "1 when this node holds what it needs to send to the upstream (its provider key)",
            None,
            MetricType::Gauge,
        )?;
        for u in upstreams {
            gauge(&mut m, &[("upstream", &u.id)], flag(u.usable()))?;
        }
        let mut m = e.encode_descriptor(
            "meridian_upstream_p99_ttfb",
            "p99 time to first byte of each upstream on the shared health board, per region (and \
             region=\"\" for the whole cluster); absent while no report has samples",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        let mut ids: Vec<&Arc<str>> = self.board.upstreams.keys().collect();
        ids.sort();
        for id in ids {
            let Some(b) = self.board.upstream(id) else {
                continue;
            };
            let views = b
                .regions
                .iter()
                .map(|(r, v)| (r.as_str(), v))
                .chain(std::iter::once(("", &b.merged)));
            for (region, view) in views.filter(|(_, v)| v.ttfb_ms.count > 0) {
                let labels = [("upstream", &**id), ("region", region)];
                gauge(&mut m, &labels, view.ttfb_ms.p99 / 1000.0)?;
            }
        }

        // Raft.
        let mut m = e.encode_descriptor(
            "meridian_raft_role",
            "This node's Raft role: 1 for its current role, 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for (role, state) in [
            ("leader", ServerState::Leader),
            ("follower", ServerState::Follower),
            ("candidate", ServerState::Candidate),
            ("learner", ServerState::Learner),
            ("shutdown", ServerState::Shutdown),
        ] {
            gauge(&mut m, &[("role", role)], flag(self.role == state))?;
        }
        let mut m = e.encode_descriptor(
            "meridian_raft_term",
            "This node's current Raft term",
            None,
            MetricType::Gauge,
        )?;
        gauge(&mut m, &[], self.term)?;
        if let Some(leader) = self.leader {
            let mut m = e.encode_descriptor(
                "meridian_raft_leader",
                "The id of the leader this node knows (absent when it knows none)",
                None,
                MetricType::Gauge,
            )?;
            gauge(&mut m, &[], leader)?;
        }
        for (name, help, value) in [
            (
                "meridian_raft_last_log_index",
                "Index of the last entry in this node's Raft log",
                self.last_log,
            ),
            (
                "meridian_raft_commit_index",
                "Highest index this node knows committed: its applied index (openraft 0.9 exposes no other), \
                 as /admin/v1/cluster says",
                self.applied,
            ),
            (
                "meridian_raft_applied_index",
                "Index of the last entry applied to this node's state",
                self.applied,
            ),
            (
                "meridian_raft_snapshot_index",
                "Index of this node's last snapshot",
                self.snapshot_index,
            ),
        ] {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            gauge(&mut m, &[], value.unwrap_or(0))?;
        }
        if let Some(ms) = self.quorum_ack_ms {
            let mut m = e.encode_descriptor(
                "meridian_raft_quorum_ack_age",
                "On the leader: time since a quorum last acknowledged it",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            gauge(&mut m, &[], ms as f64 / 1000.0)?;
        }
        let mut m = e.encode_descriptor(
            "meridian_raft_member",
            "Members of the cluster as this node knows them, by id and role (voter or learner)",
            None,
            MetricType::Gauge,
        )?;
        for member in &self.members {
            let role = if member.voter { "voter" } else { "learner" };
            gauge(&mut m, &[("member", &member.id), ("role", role)], 1i64)?;
        }
        if self.leader_view {
            let last = self.last_log.unwrap_or(0);
            let mut m = e.encode_descriptor(
                "meridian_raft_replication_lag",
                "On the leader: entries each member is behind the leader's log",
                None,
                MetricType::Gauge,
            )?;
            for member in &self.members {
                if let Some(matched) = member.matched {
                    gauge(
                        &mut m,
                        &[("member", &member.id)],
                        last.saturating_sub(matched),
                    )?;
                }
            }
            let mut m = e.encode_descriptor(
                "meridian_raft_matched_index",
                "On the leader: the last log index each member is known to hold",
                None,
                MetricType::Gauge,
            )?;
            for member in &self.members {
                if let Some(matched) = member.matched {
                    gauge(&mut m, &[("member", &member.id)], matched)?;
                }
            }
        }
        let mut m = e.encode_descriptor(
            "meridian_raft_last_contact",
            "Time since each other member last answered this node over the Raft transport",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for member in &self.members {
            if let Some(s) = member.last_contact_s {
                gauge(&mut m, &[("member", &member.id)], s)?;
            }
        }

        // The shared health board's reports.
        let mut m = e.encode_descriptor(
            "meridian_health_report_age",
            "Age of each member's latest health report, as this node judges it",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        let reports: Vec<(String, &crate::health::board::ReportInfo)> = self
            .board
            .reports
            .iter()
            .map(|(id, r)| (id.to_string(), r))
            .collect();
        for (id, r) in &reports {
            let labels = [("member", id.as_str()), ("region", r.region.as_str())];
            gauge(&mut m, &labels, r.age_ms as f64 / 1000.0)?;
        }
        let mut m = e.encode_descriptor(
            "meridian_health_report_stale",
            "1 when a member's latest health report is older than its window and no longer counts",
            None,
            MetricType::Gauge,
        )?;
        for (id, r) in &reports {
            let labels = [("member", id.as_str()), ("region", r.region.as_str())];
            gauge(&mut m, &labels, flag(r.stale))?;
        }
        Ok(())
    }
}
