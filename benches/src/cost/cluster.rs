//! The cluster under measurement: one `meridian-mock` serving every
//! upstream, and N `meridian` nodes with TLS on loopback, one region each,
//! every node routing model `model-J` to upstream `uJ` so that each node's
//! health report carries every upstream; and the reading of their
//! `/metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use harness::http::Http;
use harness::mocks::MockProcess;
use harness::process::{NodeCommand, NodeProcess};
use http::Method;
use proto::config::KeyConfig;

/// How long a process gets to start.
const START_LIMIT: Duration = Duration::from_secs(60);

/// What a cluster is made of.
pub struct Shape {
    /// The meridian binary.
    pub meridian_bin: PathBuf,
    /// The meridian-mock binary.
    pub mock_bin: PathBuf,
    /// Nodes (one region each).
    pub nodes: usize,
    /// Upstreams (one route each).
    pub upstreams: usize,
    /// Client keys the load spreads over (each a tenant with usage).
    pub keys: usize,
    /// `health.report_interval_ms`.
    pub report_interval_ms: u64,
    /// `cluster.heartbeat_ms`.
    pub heartbeat_ms: u64,
}

/// A running node.
pub struct Node {
    /// Its Raft id.
    pub id: u64,
    /// Its data plane.
    pub api: SocketAddr,
    /// Its admin listener (`/metrics`).
    pub admin: SocketAddr,
    process: NodeProcess,
}

/// The mock and the nodes, killed by [`Cluster::stop`].
pub struct Cluster {
    /// The nodes, by id - 1.
    pub nodes: Vec<Node>,
    mock: MockProcess,
    dir: PathBuf,
}

/// The secret of client key `k`.
pub fn key_secret(k: usize) -> String {
    format!("sk-cost-key-{k:04}-0123456789abcdef0123456789")
}

fn key_env(k: usize) -> String {
    format!("COST_KEY_{k}")
}

/// Starts the mock and every node, and waits until each is ready.
pub async fn start(shape: &Shape, dir: &Path) -> Result<Cluster> {
    std::fs::create_dir_all(dir)?;
    // Latencies spread like a provider's, so that the histograms in the
    // reports have the size real ones have.
    let behavior = r#"{"first_byte":{"p50_ms":150,"p99_ms":900}}"#;
    let mock = MockProcess::start(
        &shape.mock_bin,
        &["--behavior".into(), behavior.into()],
        Some(&dir.join("mock.log")),
        false,
        START_LIMIT,
    )
    .await
    .context("meridian-mock did not start")?;

    let certs = dir.join("certs");
    let names: Vec<String> = (1..=shape.nodes).map(|i| format!("n{i}")).collect();
    harness::certs::write(&certs, &names)?;
    let raft: Vec<SocketAddr> = (0..shape.nodes)
        .map(|_| harness::ports::free_udp())
        .collect::<Result<_, _>>()?;
    let members: Vec<String> = raft
        .iter()
        .enumerate()
        .map(|(i, a)| harness::config::member(i as u64 + 1, *a))
        .collect();

    let mut processes = Vec::new();
    for (i, bind) in raft.iter().enumerate() {
        let id = i as u64 + 1;
        let home = dir.join(format!("n{id}"));
        std::fs::create_dir_all(&home)?;
        let mut config = harness::config::node(id, &format!("region-{id}"), &home.join("data"));
        config.listen.raft = *bind;
        config.cluster.members = members.clone();
        config.cluster.heartbeat_ms = shape.heartbeat_ms;
        config.tls = Some(harness::certs::tls_config(&certs, &format!("n{id}")));
        config.health.report_interval_ms = shape.report_interval_ms;
        config.upstreams = (0..shape.upstreams)
            .map(|j| harness::config::upstream(&format!("u{j}"), &mock.base_url()))
            .collect();
        config.routes = (0..shape.upstreams)
            .map(|j| {
                harness::config::route(
                    &format!("model-{j}"),
                    vec![vec![harness::config::target(&format!("u{j}"), "m")]],
                )
            })
            .collect();
        config.keys = (0..shape.keys)
            .map(|k| KeyConfig {
                name: format!("tenant-{k}"),
                key_env: key_env(k),
                ..Default::default()
            })
            .collect();
        let path = home.join("meridian.toml");
        harness::config::write(&path, &config)?;
        let mut command = NodeCommand::new(&shape.meridian_bin, &path, &home.join("meridian.log"));
        command.log_level = "warn".into();
        command.env = (0..shape.keys)
            .map(|k| (key_env(k), key_secret(k)))
            .collect();
        let mut process = NodeProcess::new(command);
        // All first: none is ready before a quorum is up.
        process.spawn()?;
        processes.push((id, process));
    }
    let mut nodes = Vec::new();
    for (id, mut process) in processes {
        let ready = process
            .await_ready(START_LIMIT)
            .await
            .with_context(|| format!("node {id} did not get ready: {}", process.log_tail(20)))?;
        nodes.push(Node {
            id,
            api: ready.api,
            admin: ready.admin,
            process,
        });
    }
    Ok(Cluster {
        nodes,
        mock,
        dir: dir.to_path_buf(),
    })
}

impl Cluster {
    /// Kills every process and removes the cluster's directory.
    pub async fn stop(mut self) {
        for node in &mut self.nodes {
            let _ = node.process.kill().await;
        }
        self.mock.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One scrape of a node's `/metrics`: each sample by its series (name and
/// labels as printed).
#[derive(Debug, Clone, Default)]
pub struct Scrape(pub BTreeMap<String, f64>);

impl Scrape {
    /// Reads `admin`'s `/metrics`, trying again (a pooled connection the
    /// node closed while idle is reset at its next use).
    pub async fn read(http: &Http, admin: SocketAddr) -> Result<Scrape> {
        let url = format!("http://{admin}/metrics");
        let mut last = String::new();
        for _ in 0..3 {
            match http
                .send(Method::GET, &url, &[], None, Duration::from_secs(10))
                .await
            {
                Ok(reply) if reply.status == 200 => return Ok(Scrape::parse(&reply.text())),
                Ok(reply) => last = format!("status {}", reply.status),
                Err(e) => last = e,
            }
        }
        Err(anyhow!("{url}: {last}"))
    }

    /// Parses Prometheus text (comments skipped).
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Scrape(samples)
    }

    /// The value of `series`, 0 when absent.
    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// The sum of every series of metric `name` whose labels contain all of
    /// `labels` (each `key="value"`).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
                n == name && labels.iter().all(|l| rest.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// `self - before`, series by series (counters' growth).
    pub fn since(&self, before: &Scrape) -> Scrape {
        Scrape(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - before.get(k)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn scrapes_parse_and_sum_by_label() {
        let text = "# HELP x\nmeridian_raft_bytes_sent_total{peer=\"2\"} 100\n\
                    meridian_raft_bytes_sent_total{peer=\"3\"} 50\nmeridian_health_report_bytes 812\n";
        let s = Scrape::parse(text);
        assert_eq!(s.sum("meridian_raft_bytes_sent_total", &[]), 150.0);
        assert_eq!(
            s.sum("meridian_raft_bytes_sent_total", &["peer=\"3\""]),
            50.0
        );
        assert_eq!(s.get("meridian_health_report_bytes"), 812.0);
        let later = Scrape::parse("meridian_raft_bytes_sent_total{peer=\"2\"} 130\n");
        assert_eq!(
            later
                .since(&s)
                .get("meridian_raft_bytes_sent_total{peer=\"2\"}"),
            30.0
        );
    }
}
