//! Node configurations as [`Config`] values, written with `toml`: every
//! launcher starts from [`node`] and sets the fields its nodes need, so a
//! renamed or retyped field breaks the build instead of a node's start.

use std::net::SocketAddr;
use std::path::Path;

use proto::config::{
    AdminConfig, CatalogueConfig, ClusterConfig, Config, ConnectionsConfig, HealthConfig,
    ListenConfig, NodeConfig, ProxyConfig, RouteConfig, SecretsConfig, TargetConfig, UpstreamAuth,
    UpstreamConfig, UpstreamKind,
};

use crate::HarnessError;

/// Loopback, port 0: the node picks a port and prints it on its ready line.
pub const ANY_PORT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// A lone node `id` in `region` keeping its state in `data_dir`, every
/// listener on [`ANY_PORT`], everything else at the configuration's
/// defaults (no upstreams, routes, keys or TLS).
pub fn node(id: u64, region: &str, data_dir: &Path) -> Config {
    Config {
        node: NodeConfig {
            id,
            region: region.to_owned(),
            data_dir: data_dir.to_path_buf(),
        },
        listen: ListenConfig {
            api: ANY_PORT,
            admin: ANY_PORT,
            raft: ANY_PORT,
        },
        cluster: ClusterConfig::default(),
        tls: None,
        admin: AdminConfig::default(),
        proxy: ProxyConfig::default(),
        connections: ConnectionsConfig::default(),
        health: HealthConfig::default(),
        catalogue: CatalogueConfig::default(),
        tenants: Default::default(),
        classes: Vec::new(),
        keys: Vec::new(),
        upstreams: Vec::new(),
        routes: Vec::new(),
        secrets: SecretsConfig::default(),
        responses: Default::default(),
        telemetry: Default::default(),
    }
}

/// An upstream `id` at `base_url` (no key, bearer auth, HTTP/1.1).
pub fn upstream(id: &str, base_url: &str) -> UpstreamConfig {
    UpstreamConfig {
        id: id.to_owned(),
        base_url: base_url.to_owned(),
        region: String::new(),
        api_key_env: None,
        api_key_file: None,
        auth: UpstreamAuth::Bearer,
        http2: false,
        ca_file: None,
        kind: UpstreamKind::Openai,
        ..UpstreamConfig::default()
    }
}

/// A target: `model` on upstream `upstream`, free of charge.
pub fn target(upstream: &str, model: &str) -> TargetConfig {
    TargetConfig {
        upstream: upstream.to_owned(),
        model: model.to_owned(),
        input_per_mtok: 0.0,
        output_per_mtok: 0.0,
        cached_input_per_mtok: None,
    }
}

/// A route for `model` with these tiers and no overrides.
pub fn route(model: &str, tiers: Vec<Vec<TargetConfig>>) -> RouteConfig {
    RouteConfig {
        model: model.to_owned(),
        tiers,
        max_attempts: None,
        first_byte_timeout_ms: None,
        request_timeout_ms: None,
        error_threshold: None,
        hedge: None,
    }
}

/// `id@addr`, as `cluster.members` lists a voter.
pub fn member(id: u64, raft: SocketAddr) -> String {
    format!("{id}@{raft}")
}

/// The config as TOML text, leaving out every value that equals its
/// default: the file says what this launcher chose, and an older binary
/// that lacks a newer section (a benchmark's baseline) still reads it.
pub fn to_toml(config: &Config) -> Result<String, HarnessError> {
    let mut table = toml::Table::try_from(config)?;
    let mut reference = toml::Table::try_from(defaults(config))?;
    // The node's identity is always written whole.
    reference.remove("node");
    prune(&mut table, &reference);
    let upstream = toml::Value::try_from(upstream("", ""))?;
    let target = toml::Value::try_from(target("", ""))?;
    if let Some(toml::Value::Array(upstreams)) = table.get_mut("upstreams") {
        for each in upstreams {
            prune_value(each, &upstream);
        }
    }
    if let Some(toml::Value::Array(routes)) = table.get_mut("routes") {
        for route in routes {
            let tiers = match route {
                toml::Value::Table(route) => route.get_mut("tiers"),
                _ => None,
            };
            if let Some(toml::Value::Array(tiers)) = tiers {
                for each in tiers.iter_mut().flat_map(|tier| match tier {
                    toml::Value::Array(tier) => tier.iter_mut(),
                    _ => [].iter_mut(),
                }) {
                    prune_value(each, &target);
                }
            }
        }
    }
    Ok(toml::to_string(&table)?)
}

/// `config` with every section but `node` at its default.
fn defaults(config: &Config) -> Config {
    Config {
        listen: ListenConfig::default(),
        ..node(config.node.id, &config.node.region, &config.node.data_dir)
    }
}

/// Removes from `table` each key whose value equals `reference`'s, and
/// each table left empty by that.
fn prune(table: &mut toml::Table, reference: &toml::Table) {
    table.retain(|key, value| match reference.get(key) {
        Some(default) => {
            prune_value(value, default);
            value != default && !matches!(value, toml::Value::Table(t) if t.is_empty())
        }
        None => true,
    });
}

fn prune_value(value: &mut toml::Value, reference: &toml::Value) {
    if let (toml::Value::Table(table), toml::Value::Table(reference)) = (value, reference) {
        prune(table, reference);
    }
}

/// Writes the config to `path`.
pub fn write(path: &Path, config: &Config) -> Result<(), HarnessError> {
    let text = to_toml(config)?;
    std::fs::write(path, text).map_err(|e| HarnessError::io(format!("write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use proto::config::Config;

    use super::*;

    /// What the harness writes is what the node reads back, and it passes
    /// the node's own validation.
    #[test]
    fn a_built_config_round_trips_through_toml_and_validates() {
        let mut config = node(3, "eu-west", Path::new("/tmp/n3/data"));
        config.cluster.members = vec![
            member(1, "127.0.0.1:7001".parse().unwrap()),
            member(3, "127.0.0.1:7003".parse().unwrap()),
        ];
        config.listen.raft = "127.0.0.1:7003".parse().unwrap();
        config.tls = Some(crate::certs::tls_config(Path::new("/tmp/certs"), "n3"));
        config.proxy.workers = 1;
        let mut a = upstream("a", "http://127.0.0.1:9000/v1");
        a.region = "local".to_owned();
        a.api_key_env = Some("KEY_A".to_owned());
        config.upstreams.push(a);
        let mut priced = target("a", "model-a");
        priced.input_per_mtok = 0.1;
        let mut chat = route("chat", vec![vec![priced], vec![target("a", "b")]]);
        chat.max_attempts = Some(2);
        config.routes.push(chat);

        let text = to_toml(&config).unwrap();
        let back = Config::from_toml(&text).unwrap();
        assert_eq!(back, config);
        // Defaults are left out; what was chosen is written.
        assert!(!text.contains("[connections]"), "{text}");
        assert!(!text.contains("output_per_mtok"), "{text}");
        assert!(!text.contains("http2"), "{text}");
        assert!(text.contains("input_per_mtok = 0.1"), "{text}");
        assert!(text.contains("workers = 1"), "{text}");
        assert!(text.contains("api = \"127.0.0.1:0\""), "{text}");
    }
}
