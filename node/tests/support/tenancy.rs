//! The tenants' ledger from a test: a usage report sent as a member would
//! send it (`Command::Tenancy` forwarded to the leader over the Raft
//! transport, with that member's certificate), so the admin API's usage
//! and balances can be checked against known figures without depending on
//! traffic and the report interval.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use proto::state::{Command, CommandResponse, Member};
use proto::tenancy::{Counters, TenantReport, UsageBucket};
use raft::network::{ForwardError, NetworkSettings, TlsPaths, Transport};

use super::cluster::Cluster;

/// Today, in days since 1970-01-01 (UTC), as a node's reporter counts it.
pub fn today() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    u32::try_from(secs / 86_400).unwrap()
}

/// A usage cell of `key` on `day`.
pub fn cell(key: &str, day: u32, model: &str, upstream: &str) -> UsageBucket {
    UsageBucket {
        key: key.to_owned(),
        day,
        model: model.to_owned(),
        upstream: upstream.to_owned(),
    }
}

/// Counters for a cell.
pub fn counters(requests: u64, input: u64, output: u64, cost_nanos: u64) -> Counters {
    Counters {
        requests,
        input_tokens: input,
        output_tokens: output,
        cost_nanos,
    }
}

/// A report of boot `boot`, number `seq`, carrying cumulative `usage`.
pub fn report(boot: u64, seq: u64, usage: Vec<(UsageBucket, Counters)>) -> TenantReport {
    TenantReport {
        boot,
        seq,
        usage_days: 90,
        demand: BTreeMap::new(),
        usage,
    }
}

impl Cluster {
    /// Sends `report` to the leader as member `id` would (with its
    /// certificate), and returns once it is committed and applied there.
    pub async fn report_as(&self, id: u64, report: TenantReport) -> CommandResponse {
        let certs = self.certs();
        let tls = TlsPaths {
            ca: certs.join("ca.pem"),
            cert: certs.join(format!("n{id}.pem")),
            key: certs.join(format!("n{id}.key")),
        };
        let transport = Transport::bind(
            "127.0.0.1:0".parse().unwrap(),
            &tls,
            NetworkSettings::default(),
        )
        .unwrap();
        // Sent to the leader the nodes agree on; a node that is not (any
        // more) says which is, and the report goes there.
        let mut leader = self.leader().await;
        let mut tries = 0;
        let answer = loop {
            let member = Member {
                raft_addr: self.node(leader).raft_addr(),
                admin_addr: String::new(),
                region: String::new(),
            };
            let command = Command::Tenancy {
                id,
                report: report.clone(),
            };
            match transport
                .network(id)
                .forward(leader, &member, command)
                .await
            {
                Ok(answer) => break answer.response,
                Err(ForwardError::NotLeader {
                    leader_id: Some(next),
                    ..
                }) if tries < 20 => {
                    tries += 1;
                    leader = next;
                }
                Err(e) => panic!("the report was not forwarded: {e}"),
            }
        };
        transport.close().await;
        answer
    }
}
