//! `meridian members`: list, add and remove cluster members through any
//! node's admin API.

use http::Method;
use proto::api::admin::{AddMember, ClusterView, MemberAdded, MemberRemoved, WriteAck};

use super::admin_client::AdminClient;
use super::table::Table;
use super::{CliError, Printed};

/// An optional figure as a cell: `-` when absent.
fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Renders `GET /admin/v1/cluster` as a table an operator reads at a glance;
/// the leader's id carries a `*`.
pub fn table(cluster: &ClusterView) -> String {
    let leader_region = cluster
        .members
        .iter()
        .find(|m| Some(m.id) == cluster.leader)
        .map(|m| format!(" ({})", opt(m.region.as_deref())))
        .unwrap_or_default();
    let mut out = format!(
        "node {} ({}) is {} in term {}; leader: {}{leader_region}; applied index {}\n",
        cluster.id,
        cluster.region,
        cluster.role.as_str(),
        cluster.term,
        opt(cluster.leader),
        opt(cluster.applied_index),
    );
    let mut table = Table::new(&[
        "ID", "ROLE", "RAFT", "ADMIN", "REGION", "MATCHED", "LAG", "CONTACT",
    ])
    .right_align(&[5, 6, 7]);
    for m in &cluster.members {
        let leader = if Some(m.id) == cluster.leader {
            "*"
        } else {
            ""
        };
        table.row(vec![
            format!("{}{leader}", m.id),
            m.role.as_str().to_owned(),
            m.raft_addr.clone(),
            opt(m.admin_addr.as_deref()),
            opt(m.region.as_deref()),
            opt(m.matched_index),
            opt(m.lag),
            match m.last_contact_ms {
                Some(ms) => format!("{ms} ms ago"),
                None => "-".to_owned(),
            },
        ]);
    }
    out.push_str(&table.render());
    out
}

/// The answer to a change (`{"changed": …, "applied_index": …}`) as a line.
pub fn change_line(what: &str, answer: &WriteAck) -> String {
    let changed = if answer.changed {
        "done"
    } else {
        "unchanged (already so)"
    };
    match answer.applied_index {
        Some(index) => format!("{what}: {changed}, applied at index {index}\n"),
        None => format!("{what}: {changed}\n"),
    }
}

/// `GET /admin/v1/cluster`.
pub async fn list(client: &AdminClient) -> Result<Printed, CliError> {
    let answer = client
        .call_as::<ClusterView>(Method::GET, "/admin/v1/cluster", None)
        .await?;
    Ok(Printed {
        text: table(&answer.typed),
        json: answer.json,
    })
}

/// `POST /admin/v1/members`.
pub async fn add(
    client: &AdminClient,
    id: u64,
    raft_addr: &str,
    voter: bool,
) -> Result<Printed, CliError> {
    let request = AddMember {
        id,
        raft_addr: raft_addr.to_owned(),
        voter,
    };
    let body = serde_json::to_value(&request).map_err(|e| CliError::Input(e.to_string()))?;
    let answer = client
        .call_as::<MemberAdded>(Method::POST, "/admin/v1/members", Some(&body))
        .await?;
    Ok(Printed {
        text: format!("member {} added: done\n", answer.typed.added),
        json: answer.json,
    })
}

/// `DELETE /admin/v1/members/{id}`.
pub async fn remove(client: &AdminClient, id: u64) -> Result<Printed, CliError> {
    let answer = client
        .call_as::<MemberRemoved>(Method::DELETE, &format!("/admin/v1/members/{id}"), None)
        .await?;
    Ok(Printed {
        text: format!("member {} removed: done\n", answer.typed.removed),
        json: answer.json,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    #[test]
    fn the_table_marks_the_leader() {
        let cluster: ClusterView = serde_json::from_value(json!({
            "id": 1, "region": "us", "role": "leader", "term": 3, "leader": 1, "applied_index": 9,
            "members": [
                {"id": 1, "role": "voter", "raft_addr": "127.0.0.1:7080", "admin_addr": "127.0.0.1:9080", "region": "us", "matched_index": 9, "lag": 0},
                {"id": 2, "role": "learner", "raft_addr": "127.0.0.1:7081", "admin_addr": null, "region": null, "matched_index": 7, "lag": 2, "last_contact_ms": 40}
            ]
        }))
        .unwrap();
        let t = table(&cluster);
        assert!(t.contains("leader: 1"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("1*") && l.contains("voter")),
            "{t}"
        );
        assert!(
            t.lines().any(|l| l.starts_with("2 ")
                && l.contains("learner")
                && l.trim_end().ends_with("40 ms ago")),
            "{t}"
        );
    }
}
