//! Carries out a case's fault schedule against the running cluster and
//! records what was done and when: the fault windows the report shades,
//! and every stop/restart with the time the node took to be ready again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use serde::Serialize;
use tokio::sync::Mutex;

use super::cluster::LocalCluster;
use crate::case::{Fault, NetEffect, NodeSel, Signal, UpstreamEffect};
use crate::faults::rules::{links, wan_rules};
use crate::faults::{LinkEffect, LinkRule, TcpMode};

/// A stretch of the run during which a fault was in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// What the fault was.
    pub label: String,
    /// Start, seconds from the start of the load.
    pub start_s: f64,
    /// End (for a kill: when the node was ready again).
    pub end_s: f64,
    /// Nodes or upstream it hit, as resolved when it started.
    pub target: String,
}

/// One stop and restart of a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restart {
    /// The node.
    pub node: u64,
    /// How it was stopped.
    pub signal: Signal,
    /// Whether it was the leader when stopped.
    pub was_leader: bool,
    /// When it was stopped, seconds from the start of the load.
    pub at_s: f64,
    /// The exit status the stop produced.
    pub exit: String,
    /// Seconds from the restart to its ready line; `None` if it never came.
    pub ready_after_s: Option<f64>,
    /// Why it did not come back, if so.
    pub error: Option<String>,
}

/// What the schedule did.
#[derive(Debug, Default)]
pub struct Log {
    /// Fault windows.
    pub windows: Vec<Window>,
    /// Restarts.
    pub restarts: Vec<Restart>,
    /// Faults that could not be carried out (no leader, node already down…).
    pub skipped: Vec<String>,
}

fn secs_since(start: Instant) -> f64 {
    Instant::now()
        .saturating_duration_since(start)
        .as_secs_f64()
}

/// Runs every fault at its time (each in its own task) and returns once
/// all have ended, restarted nodes ready.
pub async fn run(cluster: Arc<LocalCluster>, faults: Vec<Fault>, start: Instant, seed: u64) -> Log {
    let log = Arc::new(Mutex::new(Log::default()));
    let mut tasks = Vec::new();
    for (i, fault) in faults.into_iter().enumerate() {
        let (cluster, log) = (cluster.clone(), log.clone());
        let fault_seed = seed.wrapping_add(1_000 * (i as u64 + 1));
        tasks.push(tokio::spawn(async move {
            run_fault(&cluster, fault, i as u64 + 1, start, fault_seed, &log).await;
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut log = std::mem::take(&mut *log.lock().await);
    log.windows.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    log.restarts.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    log
}

/// Resolves a selector to node ids at this moment.
async fn resolve(
    cluster: &LocalCluster,
    sel: &NodeSel,
    repetition: u32,
    rng: &mut SmallRng,
) -> Result<Vec<u64>, String> {
    let up = cluster.up();
    match sel {
        NodeSel::All => Ok(cluster.nodes.iter().map(|n| n.id).collect()),
        NodeSel::Id(id) => Ok(vec![*id]),
        NodeSel::Each => Ok(vec![u64::from(repetition) % cluster.nodes.len() as u64 + 1]),
        NodeSel::Random => up
            .choose(rng)
            .map(|id| vec![*id])
            .ok_or_else(|| "no node is running".to_owned()),
        NodeSel::Leader => cluster
            .leader()
            .await
            .map(|id| vec![id])
            .ok_or_else(|| "no leader is known".to_owned()),
        NodeSel::Follower => {
            let leader = cluster.leader().await;
            let followers: Vec<u64> = up.into_iter().filter(|id| Some(*id) != leader).collect();
            followers
                .choose(rng)
                .map(|id| vec![*id])
                .ok_or_else(|| "no follower is running".to_owned())
        }
    }
}

async fn resolve_set(
    cluster: &LocalCluster,
    sels: &[NodeSel],
    rng: &mut SmallRng,
) -> Result<BTreeSet<u64>, String> {
    let mut out = BTreeSet::new();
    for sel in sels {
        out.extend(resolve(cluster, sel, 0, rng).await?);
    }
    Ok(out)
}

fn names(ids: &BTreeSet<u64>) -> String {
    ids.iter()
        .map(|id| format!("n{id}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn run_fault(
    cluster: &LocalCluster,
    fault: Fault,
    rule_id: u64,
    start: Instant,
    seed: u64,
    log: &Mutex<Log>,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    match fault {
        Fault::Kill {
            at,
            node,
            signal,
            down,
            count,
            every,
        } => {
            for rep in 0..count {
                tokio::time::sleep_until((start + at + every * rep).into()).await;
                let id = match resolve(cluster, &node, rep, &mut rng).await {
                    Ok(ids) => ids.first().copied(),
                    Err(why) => {
                        log.lock().await.skipped.push(format!(
                            "kill #{} at {:.1} s: {why}",
                            rep + 1,
                            secs_since(start)
                        ));
                        None
                    }
                };
                let Some(id) = id else {
                    continue;
                };
                if !cluster.node(id).is_some_and(|n| n.is_up()) {
                    log.lock().await.skipped.push(format!(
                        "kill #{} at {:.1} s: n{id} is not running",
                        rep + 1,
                        secs_since(start)
                    ));
                    continue;
                }
                kill_and_restart(cluster, id, signal, down, start, log).await;
            }
        }
        Fault::Net {
            at,
            until,
            from,
            to,
            oneway,
            effect,
            label,
        } => {
            tokio::time::sleep_until((start + at).into()).await;
            let resolved = async {
                let from = resolve_set(cluster, &from, &mut rng).await?;
                let to = match &to {
                    Some(to) => resolve_set(cluster, to, &mut rng).await?,
                    None if from.len() == cluster.nodes.len() => from.clone(),
                    None => cluster
                        .nodes
                        .iter()
                        .map(|n| n.id)
                        .filter(|id| !from.contains(id))
                        .collect(),
                };
                Ok::<_, String>((from, to))
            }
            .await;
            let (from, to) = match resolved {
                Ok(sets) => sets,
                Err(why) => {
                    log.lock().await.skipped.push(format!("{label}: {why}"));
                    return;
                }
            };
            let linked = links(&from, &to, oneway);
            let rules = match effect {
                NetEffect::Drop => vec![LinkRule {
                    id: rule_id,
                    links: linked,
                    effect: LinkEffect::Drop,
                }],
                NetEffect::Loss(p) => vec![LinkRule {
                    id: rule_id,
                    links: linked,
                    effect: LinkEffect::Loss(p),
                }],
                NetEffect::Wan {
                    rtt_min,
                    rtt_max,
                    jitter,
                } => wan_rules(rule_id, &linked, rtt_min, rtt_max, jitter, &mut rng),
            };
            let detail = rules
                .iter()
                .map(|r| match r.effect {
                    LinkEffect::Delay { ms, .. } => {
                        let pair = r.links.iter().next().copied().unwrap_or((0, 0));
                        format!("n{}-n{} rtt {:.0} ms", pair.0, pair.1, ms * 2.0)
                    }
                    _ => String::new(),
                })
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>();
            let arrow = if oneway { "->" } else { "<->" };
            let mut target = format!("{} {arrow} {}", names(&from), names(&to));
            if !detail.is_empty() {
                target = format!("{target} ({})", detail.join("; "));
            }
            let start_s = secs_since(start);
            cluster.table.add(rules);
            tracing::info!(%label, %target, "network fault on");
            tokio::time::sleep_until((start + until).into()).await;
            cluster.table.remove(rule_id);
            tracing::info!(%label, "network fault off");
            log.lock().await.windows.push(Window {
                label,
                start_s,
                end_s: secs_since(start),
                target,
            });
        }
        Fault::Upstream {
            at,
            until,
            upstream,
            effect,
            flap,
            label,
        } => {
            tokio::time::sleep_until((start + at).into()).await;
            let start_s = secs_since(start);
            let end = start + until;
            let mut faulty = true;
            loop {
                let result = match (&effect, faulty) {
                    (UpstreamEffect::Behave(b), true) => cluster.set_behavior(upstream, b).await,
                    (UpstreamEffect::Behave(_), false) => {
                        cluster.set_behavior(upstream, &cluster.baseline).await
                    }
                    (UpstreamEffect::Blackhole, on) => {
                        cluster.set_net(
                            upstream,
                            if on {
                                TcpMode::Blackhole
                            } else {
                                TcpMode::Pass
                            },
                        );
                        Ok(())
                    }
                    (UpstreamEffect::Reset, on) => {
                        cluster.set_net(upstream, if on { TcpMode::Reset } else { TcpMode::Pass });
                        Ok(())
                    }
                };
                if let Err(e) = result {
                    log.lock().await.skipped.push(format!("{label}: {e}"));
                }
                let next = match flap {
                    Some(half) => (Instant::now() + half).min(end),
                    None => end,
                };
                tokio::time::sleep_until(next.into()).await;
                if Instant::now() >= end {
                    break;
                }
                faulty = !faulty;
            }
            cluster.set_net(upstream, TcpMode::Pass);
            if let Err(e) = cluster.set_behavior(upstream, &cluster.baseline).await {
                log.lock()
                    .await
                    .skipped
                    .push(format!("{label}: restore: {e}"));
            }
            log.lock().await.windows.push(Window {
                label,
                start_s,
                end_s: secs_since(start),
                // The label names the upstream already.
                target: String::new(),
            });
        }
    }
}

async fn kill_and_restart(
    cluster: &LocalCluster,
    id: u64,
    signal: Signal,
    down: Duration,
    start: Instant,
    log: &Mutex<Log>,
) {
    let was_leader = cluster.leader().await == Some(id);
    let at_s = secs_since(start);
    tracing::info!(node = id, ?signal, was_leader, "stopping");
    let exit = match cluster.stop(id, signal).await {
        Ok(exit) => exit,
        Err(e) => {
            log.lock().await.skipped.push(format!("stop n{id}: {e}"));
            return;
        }
    };
    tokio::time::sleep(down).await;
    let (ready_after_s, error) = match cluster.restart(id).await {
        Ok(took) => (Some(took.as_secs_f64()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    tracing::info!(node = id, ?ready_after_s, "restarted");
    let label = match signal {
        Signal::Kill => "kill -9",
        Signal::Term => "restart (SIGTERM)",
    };
    let mut log = log.lock().await;
    log.windows.push(Window {
        label: if was_leader {
            format!("{label} leader")
        } else {
            label.to_owned()
        },
        start_s: at_s,
        end_s: secs_since(start),
        target: format!("n{id}"),
    });
    log.restarts.push(Restart {
        node: id,
        signal,
        was_leader,
        at_s,
        exit,
        ready_after_s,
        error,
    });
}
