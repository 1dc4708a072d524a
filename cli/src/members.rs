//! `meridian members`: list, add and remove cluster members through any
//! node's admin API.

use http::Method;
use serde_json::{Value, json};

use super::admin_client::{AdminClient, AdminError};
use super::table::{Table, cell};

/// Renders `GET /admin/v1/cluster` as a table an operator reads at a glance;
/// the leader's id carries a `*`.
pub fn table(cluster: &Value) -> String {
    let text = cell;
    let leader_region = cluster["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["id"] == cluster["leader"] && !cluster["leader"].is_null())
        .map(|m| format!(" ({})", text(&m["region"])))
        .unwrap_or_default();
    let mut out = format!(
        "node {} ({}) is {} in term {}; leader: {}{leader_region}; applied index {}\n",
        text(&cluster["id"]),
        text(&cluster["region"]),
        text(&cluster["role"]),
        text(&cluster["term"]),
        text(&cluster["leader"]),
        text(&cluster["applied_index"]),
    );
    let mut table = Table::new(&[
        "ID", "ROLE", "RAFT", "ADMIN", "REGION", "MATCHED", "LAG", "CONTACT",
    ])
    .right_align(&[5, 6, 7]);
    for m in cluster["members"].as_array().into_iter().flatten() {
        let leader = if m["id"] == cluster["leader"] {
            "*"
        } else {
            ""
        };
        table.row(vec![
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
        ]);
    }
    out.push_str(&table.render());
    out
}

/// The answer to a change (`{"changed": …, "applied_index": …}`) as a line.
pub fn change_line(what: &str, answer: &Value) -> String {
    let changed = if answer["changed"].as_bool() == Some(false) {
        "unchanged (already so)"
    } else {
        "done"
    };
    match answer["applied_index"].as_u64() {
        Some(index) => format!("{what}: {changed}, applied at index {index}\n"),
        None => format!("{what}: {changed}\n"),
    }
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
