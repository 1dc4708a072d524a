//! A typed client of one node's admin API, and the two ways launchers find
//! the leader from the nodes' views.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;

use crate::HarnessError;
use crate::http::{Http, Reply};

pub use proto::api::admin::{ClusterView, MemberRole, MemberView, Role};

/// The leader every viewing node agrees on: one of them says it leads and
/// every one names it. `None` while any node disagrees or has no view.
pub fn agreed_leader(views: &[(u64, Option<ClusterView>)]) -> Option<u64> {
    let mut claimed = None;
    for (id, view) in views {
        let view = view.as_ref()?;
        if view.is_leader() {
            claimed = Some(*id);
        }
    }
    let leader = claimed?;
    views
        .iter()
        .all(|(_, v)| v.as_ref().and_then(|v| v.leader) == Some(leader))
        .then_some(leader)
}

/// The likeliest leader while nodes may disagree (a partition, an election
/// under way): the node claiming leadership with the highest term, else the
/// leader most nodes name.
pub fn likely_leader(views: &[(u64, Option<ClusterView>)]) -> Option<u64> {
    let mut claims = Vec::new();
    let mut named: HashMap<u64, usize> = HashMap::new();
    for (id, view) in views {
        let Some(view) = view else { continue };
        if view.is_leader() {
            claims.push((view.term, *id));
        }
        if let Some(leader) = view.leader {
            *named.entry(leader).or_default() += 1;
        }
    }
    claims.sort_unstable();
    claims
        .last()
        .map(|(_, id)| *id)
        .or_else(|| named.into_iter().max_by_key(|(_, n)| *n).map(|(id, _)| id))
}

/// One node's admin API.
#[derive(Clone)]
pub struct Admin {
    http: Http,
    addr: SocketAddr,
    token: Option<String>,
}

impl Admin {
    /// The admin API at `addr`, through `http`.
    pub fn new(http: Http, addr: SocketAddr) -> Self {
        Self {
            http,
            addr,
            token: None,
        }
    }

    /// The same, sending `Authorization: Bearer token`.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(format!("Bearer {token}"));
        self
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Any call within `timeout`; a body is sent as JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Reply, HarnessError> {
        let url = format!("http://{}{path}", self.addr);
        let auth;
        let headers: &[(&str, &str)] = match &self.token {
            Some(token) => {
                auth = [("authorization", token.as_str())];
                &auth
            }
            None => &[],
        };
        self.http
            .send(method, &url, headers, body.map(Value::to_string), timeout)
            .await
            .map_err(|e| HarnessError::Http(format!("{path} on {}: {e}", self.addr)))
    }

    /// Whether `/readyz` answers 200 within `timeout`.
    pub async fn ready(&self, timeout: Duration) -> bool {
        matches!(
            self.call(Method::GET, "/readyz", None, timeout).await,
            Ok(reply) if reply.status == StatusCode::OK
        )
    }

    /// Whether `/healthz` answers 200 within `timeout`.
    pub async fn healthy(&self, timeout: Duration) -> bool {
        matches!(
            self.call(Method::GET, "/healthz", None, timeout).await,
            Ok(reply) if reply.status == StatusCode::OK
        )
    }

    /// `GET /admin/v1/health`: this node's health windows and board.
    pub async fn health(&self, timeout: Duration) -> Result<Reply, HarnessError> {
        self.call(Method::GET, "/admin/v1/health", None, timeout)
            .await
    }

    /// `GET /admin/v1/cluster`; `None` without a 200 JSON answer in time.
    pub async fn view(&self, timeout: Duration) -> Option<ClusterView> {
        let reply = self
            .call(Method::GET, "/admin/v1/cluster", None, timeout)
            .await
            .ok()?;
        (reply.status == StatusCode::OK)
            .then(|| serde_json::from_slice(&reply.body).ok())
            .flatten()
    }

    /// `PUT /admin/v1/upstreams/{id}`.
    pub async fn put_upstream(
        &self,
        id: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Reply, HarnessError> {
        let path = format!("/admin/v1/upstreams/{id}");
        self.call(Method::PUT, &path, Some(body), timeout).await
    }

    /// `DELETE /admin/v1/upstreams/{id}`.
    pub async fn delete_upstream(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Reply, HarnessError> {
        let path = format!("/admin/v1/upstreams/{id}");
        self.call(Method::DELETE, &path, None, timeout).await
    }

    /// `PUT /admin/v1/routes/{model}`.
    pub async fn put_route(
        &self,
        model: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Reply, HarnessError> {
        let path = format!("/admin/v1/routes/{model}");
        self.call(Method::PUT, &path, Some(body), timeout).await
    }

    /// `DELETE /admin/v1/routes/{model}`.
    pub async fn delete_route(
        &self,
        model: &str,
        timeout: Duration,
    ) -> Result<Reply, HarnessError> {
        let path = format!("/admin/v1/routes/{model}");
        self.call(Method::DELETE, &path, None, timeout).await
    }

    /// `GET /admin/v1/members`.
    pub async fn members(&self, timeout: Duration) -> Result<Reply, HarnessError> {
        self.call(Method::GET, "/admin/v1/members", None, timeout)
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn view(role: &str, term: u64, leader: Option<u64>) -> Option<ClusterView> {
        Some(ClusterView {
            id: 0,
            region: String::new(),
            role: serde_json::from_value(serde_json::json!(role)).unwrap(),
            term,
            leader,
            last_log_index: None,
            commit_index: None,
            applied_index: None,
            snapshot_index: None,
            purged_index: None,
            quorum_ack_ms: None,
            members: Vec::new(),
        })
    }

    #[test]
    fn agreement_needs_a_claim_and_every_node_naming_it() {
        let all = [
            (1, view("leader", 2, Some(1))),
            (2, view("follower", 2, Some(1))),
        ];
        assert_eq!(agreed_leader(&all), Some(1));
        let split = [
            (1, view("leader", 2, Some(1))),
            (2, view("follower", 2, Some(3))),
        ];
        assert_eq!(agreed_leader(&split), None);
        let silent = [(1, view("leader", 2, Some(1))), (2, None)];
        assert_eq!(agreed_leader(&silent), None);
    }

    #[test]
    fn the_likely_leader_is_the_highest_term_claim_else_the_most_named() {
        let two_claims = [
            (1, view("leader", 2, Some(1))),
            (2, view("leader", 3, Some(2))),
            (3, view("follower", 2, Some(1))),
        ];
        assert_eq!(likely_leader(&two_claims), Some(2));
        let none_claims = [
            (1, view("follower", 3, Some(3))),
            (2, view("candidate", 3, None)),
            (4, None),
        ];
        assert_eq!(likely_leader(&none_claims), Some(3));
        assert_eq!(likely_leader(&[]), None);
    }

    #[test]
    fn a_view_parses_from_the_admin_answer() {
        let json = r#"{"id":2,"region":"r2","role":"follower","term":4,"leader":1,
            "applied_index":9,"commit_index":9,"members":[{"id":1,"role":"voter",
            "raft_addr":"127.0.0.1:7001","admin_addr":"127.0.0.1:9001","region":"r1",
            "lag":0}]}"#;
        let v: ClusterView = serde_json::from_str(json).unwrap();
        assert_eq!(v.leader, Some(1));
        assert!(v.announced(1, "127.0.0.1:9001".parse().unwrap()));
        assert!(!v.announced(2, "127.0.0.1:9001".parse().unwrap()));
    }
}
