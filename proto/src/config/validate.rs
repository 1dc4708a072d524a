//! Checks shared by every section: names, environment variable names, file
//! names and the cluster's member list.

use std::collections::HashSet;
use std::path::{Component, Path};

use super::{ConfigError, PeerAddr, Voter};

/// A file name an operator can read in a log line: not empty, at most 4096
/// bytes, no control character (a line break would forge a log line).
pub(super) fn check_path(field: &str, path: &Path) -> Result<(), ConfigError> {
    let text = path.to_string_lossy();
    if text.is_empty() || text.len() > 4096 || text.chars().any(char::is_control) {
        return Err(ConfigError::new(
            field,
            "must name a file: 1 to 4096 bytes, no control characters",
        ));
    }
    Ok(())
}

pub(super) fn has_parent_step(path: &Path) -> bool {
    path.components().any(|c| matches!(c, Component::ParentDir))
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 128.
pub(super) fn check_env_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let ok = name.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            "must be an environment variable name: A-Z a-z 0-9 _, not starting with a digit",
        ))
    }
}

pub(crate) fn check_name(field: &str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("`{value}` must be 1 to 64 of A-Z a-z 0-9 - _ ."),
        ))
    }
}

/// At most 80 characters of a refused value, control characters as `?`,
/// for an error an operator reads in one line: an overlong host name is
/// what is refused, and a line break would forge a log line.
fn shown(value: &str) -> String {
    let mut shown: String = value
        .chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if value.chars().nth(80).is_some() {
        shown.push('…');
    }
    shown
}

/// Parses `cluster.members` (`id@host:port` each), naming the entry at fault:
/// the one parser of the list, for validation and for the node's settings.
pub(super) fn parse_members(members: &[String]) -> Result<Vec<Voter>, ConfigError> {
    let mut ids = HashSet::new();
    let mut voters = Vec::with_capacity(members.len());
    for (i, member) in members.iter().enumerate() {
        let field = format!("cluster.members[{i}]");
        let (id, addr) = member
            .split_once('@')
            .ok_or_else(|| ConfigError::new(&field, "expected `id@host:port`"))?;
        let id: u64 = id
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| ConfigError::new(&field, format!("`{id}` is not a node id")))?;
        let raft_addr = addr.parse::<PeerAddr>().map_err(|e| {
            ConfigError::new(&field, format!("`{}` is not host:port: {e}", shown(addr)))
        })?;
        if !ids.insert(id) {
            return Err(ConfigError::new(
                field,
                format!("node {id} is listed twice"),
            ));
        }
        voters.push(Voter { id, raft_addr });
    }
    Ok(voters)
}
