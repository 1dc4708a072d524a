//! `meridian members`: list, add and remove cluster members through any
//! node's admin API.

use http::Method;
use serde_json::{Value, json};

use super::admin_client::{AdminClient, AdminError};

/// Renders `GET /admin/v1/cluster` as a table an operator reads at a glance.
pub fn table(cluster: &Value) -> String {
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = format!(
        "node {} ({}) is {} in term {}; leader: {}; applied index {}\n\n",
        text(&cluster["id"]),
        text(&cluster["region"]),
        text(&cluster["role"]),
        text(&cluster["term"]),
        text(&cluster["leader"]),
        text(&cluster["applied_index"]),
    );
    out.push_str(&format!(
        "{:<4} {:<8} {:<22} {:<22} {:<10} {:>8} {:>6} {:>10}\n",
        "ID", "ROLE", "RAFT", "ADMIN", "REGION", "MATCHED", "LAG", "CONTACT"
    ));
    for m in cluster["members"].as_array().into_iter().flatten() {
        let leader = if m["id"] == cluster["leader"] {
            "*"
        } else {
            ""
        };
        out.push_str(&format!(
            "{:<4} {:<8} {:<22} {:<22} {:<10} {:>8} {:>6} {:>10}\n",
            format!("{}{leader}", text(&m["id"])),
            text(&m["role"]),
            text(&m["raft_addr"]),
            text(&m["admin_addr"]),
            text(&m["region"]),
            text(&m["matched_index"]),
            text(&m["lag"]),
            match m["last_contact_ms"].as_u64() {
                Some(ms) => format!("{ms} ms ago"),
                None => "-".to_owned(),
            },
        ));
    }
    out
}

/// `GET /admin/v1/cluster`.
pub async fn list(client: &AdminClient) -> Result<Value, AdminError> {
    client.call(Method::GET, "/admin/v1/cluster", None).await
}

/// `POST /admin/v1/members`.
pub async fn add(
    client: &AdminClient,
    id: u64,
    raft_addr: &str,
    voter: bool,
) -> Result<Value, AdminError> {
    let body = json!({ "id": id, "raft_addr": raft_addr, "voter": voter });
    client
        .call(Method::POST, "/admin/v1/members", Some(&body))
        .await
}

/// `DELETE /admin/v1/members/{id}`.
pub async fn remove(client: &AdminClient, id: u64) -> Result<Value, AdminError> {
    client
        .call(Method::DELETE, &format!("/admin/v1/members/{id}"), None)
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_table_marks_the_leader() {
        let cluster = json!({
            "id": 1, "region": "us", "role": "leader", "term": 3, "leader": 1, "applied_index": 9,
            "members": [
                {"id": 1, "role": "voter", "raft_addr": "127.0.0.1:7080", "admin_addr": "127.0.0.1:9080", "region": "us", "matched_index": 9, "lag": 0},
                {"id": 2, "role": "learner", "raft_addr": "127.0.0.1:7081", "admin_addr": null, "region": null, "matched_index": 7, "lag": 2, "last_contact_ms": 40}
            ]
        });
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
