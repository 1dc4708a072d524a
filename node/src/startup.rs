//! What `meridian serve` tells the operator: the log filter (libraries at
//! warn, so that the few lines a person needs are not buried under Raft
//! internals), and one line per thing to know once the node is ready.

use std::time::Duration;

use meridian::defaults::{self, DefaultConfig, FollowKeys};
use meridian::node::Node;
use proto::Config;
use proto::state::CommandResponse;

/// The filter when `RUST_LOG` is not set: Meridian at info, the libraries
/// at warn. openraft alone printed 18 of a node's 22 start-up lines at info
/// (one a 1.2 KB state dump); sled, quinn, rustls and hyper say nothing an
/// operator acts on below warn. openraft's `raft_inner` logs at error each
/// call that was in flight when its core stopped, which a node that is
/// shutting down does every time a write or read races the stop (two
/// "failure receiving rx from RaftCore … Stopped" lines on a plain
/// shutdown); the caller gets the error back and says what it means, and a
/// core that stopped on a fault logs that fault itself (`openraft::core`).
pub(crate) const DEFAULT_LOG_FILTER: &str = "info,openraft=warn,openraft::raft::raft_inner=off,\
     sled=warn,quinn=warn,quinn_proto=warn,quinn_udp=warn,rustls=warn,hyper=warn,hyper_util=warn,\
     h2=warn,mock=warn";

/// Logs, once the node is ready: who it is, where it listens, the cluster
/// and what it serves; then what needs the operator's attention.
pub(crate) fn announce(node: &Node, config: &Config, embedded: bool) {
    let raft = match &config.tls {
        Some(_) => format!("raft quic://{} (mutual TLS)", config.listen.raft),
        None => "no raft listener (a cluster of one: no [tls])".to_owned(),
    };
    tracing::info!(
        "node {} in region {}, data in {}",
        config.node.id,
        config.node.region,
        config.node.data_dir.display()
    );
    tracing::info!(
        "listening: api http://{} (OpenAI and Anthropic APIs), admin http://{} (dashboard /admin/, \
         /metrics), {raft}",
        node.api_addr,
        node.admin_addr
    );
    let applied = node.cluster.applied();
    let metrics = node.cluster.raft.metrics().borrow().clone();
    let members = applied.membership.membership().nodes().count();
    let leader = metrics
        .current_leader
        .map_or_else(|| "none yet".to_owned(), |id| format!("node {id}"));
    tracing::info!(
        "cluster: {members} member{}, leader {leader}, term {}, state applied to index {}",
        if members == 1 { "" } else { "s" },
        metrics.current_term,
        applied.last_applied.map_or(0, |l| l.index)
    );
    let snapshot = node.snapshot.load();
    let usable = snapshot.upstreams.iter().filter(|u| u.usable()).count();
    let keys = if snapshot.keys.accepts_anyone() {
        "no client keys: every request accepted, on loopback only".to_owned()
    } else {
        format!("{} client key(s)", applied.state.keys.len())
    };
    tracing::info!(
        "serving {} routes over {} upstreams ({usable} usable here); {keys}",
        snapshot.routes.len(),
        snapshot.upstreams.len()
    );
    if let Some(url) = config.telemetry.traces_url() {
        tracing::info!(
            "traces: OTLP/HTTP to {url} as service {}, {}% of new traces sampled",
            config.telemetry.service_name,
            config.telemetry.sample_ratio * 100.0
        );
    }
    if !snapshot.ready() {
        tracing::warn!("no route has a usable upstream: /readyz answers 503");
    }
    // The embedded default's own drift is `follow_default_keys`'s to report.
    if !embedded {
        warn_if_file_differs(config, &applied.state);
    }
}

/// The file's upstreams and routes only seed a new cluster; say so when they
/// no longer match the cluster's, so an edit is not silently ignored.
fn warn_if_file_differs(config: &Config, state: &proto::state::ClusterState) {
    let upstreams_differ = config
        .upstreams
        .iter()
        .any(|u| state.upstreams.get(&u.id) != Some(u));
    let routes_differ = config
        .routes
        .iter()
        .any(|r| state.routes.get(&r.model) != Some(r));
    if upstreams_differ || routes_differ {
        tracing::warn!(
            "the [[upstreams]] or [[routes]] in the file differ from the cluster's: the file only seeds a new \
             cluster, and the cluster's state is what serves; change it with the admin API (meridian members list \
             shows the nodes)"
        );
    }
}

/// `OPENAI_API_KEY (openai), …`: the providers of the embedded default.
fn providers(v: &[(String, String)]) -> String {
    v.iter()
        .map(|(id, var)| format!("{var} ({id})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Says, before the node starts, which providers the embedded default
/// serves here, and exactly what to do when it serves none.
pub(crate) fn announce_default(d: &DefaultConfig) {
    if d.serving.is_empty() {
        tracing::warn!(
            "no --config and no provider key set: this node serves no route yet. Set one of {} and \
             restart `meridian serve`: the default's routes for every key set are added then. \
             To try Meridian without any provider account: `meridian serve --mock`",
            providers(&d.skipped)
        );
    } else {
        tracing::info!(
            "no --config: serving the embedded default for {}; skipped (key not set): {}",
            providers(&d.serving),
            providers(&d.skipped)
        );
    }
}

/// On the embedded default: makes the cluster state the default for the
/// provider keys set now, while nobody has changed it through the admin API
/// (`defaults::follow_keys`), and says what it did or why it did not.
pub(crate) async fn follow_default_keys(node: &Node, d: &DefaultConfig, config: &Config) {
    let state = node.cluster.applied().state.clone();
    let commands = match defaults::follow_keys(&state, &d.config) {
        Ok(FollowKeys::UpToDate) => return,
        Ok(FollowKeys::Change(commands)) => commands,
        Ok(FollowKeys::Changed) => {
            let data = config.node.data_dir.display();
            tracing::warn!(
                "the cluster state in {data} was changed through the admin API (or seeded by another \
                 configuration), so the embedded default leaves it as it is and does not follow the \
                 provider keys set now ({}). Add what is missing with `meridian upstreams put` and \
                 `meridian routes put`, or start again from the default with `rm -rf {data}` (which \
                 loses those changes)",
                providers(&d.serving)
            );
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot compare the cluster state with the embedded default");
            return;
        }
    };
    for command in commands {
        let refused = match node.cluster.write(command).await {
            Ok(CommandResponse::Applied { .. }) => continue,
            Ok(CommandResponse::Rejected(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(
            error = %refused,
            "could not bring the cluster state in line with the provider keys set; restart to try again"
        );
        return;
    }
    tracing::info!(
        "the embedded default now serves the providers whose key is set: {}",
        providers(&d.serving)
    );
    // Serve the new routes before saying what is served.
    let _ = node.ready(Duration::from_secs(5)).await;
}
