#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use proto::config::{PeerAddr, Voter};

use super::*;

const BASE: &str = "[node]\nid = 1\nregion = \"eu\"\ndata_dir = \"/var/lib/meridian\"\n";

fn config(extra: &str) -> Config {
    Config::from_toml(&format!("{BASE}{extra}")).unwrap()
}

fn settings(extra: &str) -> Settings {
    Settings::with_cpus(&config(extra), || 6).unwrap()
}

#[test]
fn durations_come_from_their_millisecond_fields() {
    let s = settings(
        "[health]\nslot_ms = 2500\nwindow_slots = 4\nreport_interval_ms = 750\n\
         ejection_ms = 300\nmax_ejection_ms = 9000\n\
         [connections]\nbody_timeout_ms = 1234\n",
    );
    assert_eq!(s.recorder.slot, Duration::from_millis(2_500));
    assert_eq!(s.recorder.slots, 4);
    assert_eq!(s.report_every(), Duration::from_millis(750));
    assert_eq!(s.recorder.publish_every, PUBLISH_EVERY);
    assert_eq!(s.recorder.breaker.ejection_ms, 300);
    assert_eq!(s.recorder.breaker.max_ejection_ms, 9_000);
    assert_eq!(s.body_timeout, Duration::from_millis(1_234));
    assert_eq!(s.data_limits, Limits::data(&s.file.connections));
    assert_eq!(s.admin_limits.max_connections, 256);
    assert_eq!(s.recorder.region, "eu");
    assert_eq!(s.raft.dir, PathBuf::from("/var/lib/meridian/raft"));
}

#[test]
fn raft_timing_follows_the_cluster_section() {
    let s = settings("[cluster]\nheartbeat_ms = 100\nelection_timeout_ms = 1000\n");
    assert_eq!(s.raft.config.heartbeat_interval, 100);
    assert_eq!(s.raft.config.election_timeout_min, 300);
    assert_eq!(s.raft.config.election_timeout_max, 400);
    // Four election timeouts, but never under 5 s.
    assert_eq!(s.raft.write_timeout, Duration::from_secs(5));
    let s = settings("[cluster]\nelection_timeout_ms = 2000\n");
    assert_eq!(s.raft.write_timeout, Duration::from_secs(8));
    assert_eq!(s.raft.network.backoff_max, Duration::from_millis(500));
}

#[test]
fn the_worker_count_is_resolved_once_for_every_user() {
    let s = settings("");
    assert_eq!(s.workers, 6);
    assert_eq!(s.recorder.workers, 6);
    assert_eq!(
        s.file.proxy.workers, 6,
        "the routing table's pools follow it"
    );
    let s = settings("[proxy]\nworkers = 3\n");
    assert_eq!(
        (s.workers, s.recorder.workers, s.file.proxy.workers),
        (3, 3, 3)
    );
    let one = Settings::with_cpus(&config(""), || 0).unwrap();
    assert_eq!(one.workers, 1);
}

#[test]
fn the_router_policy_comes_from_the_health_section() {
    let s = settings(
        "[health]\nprior_p99_ms = 250.0\nmin_samples = 7\nerror_threshold = 0.3\nexplore = 0.1\n",
    );
    assert_eq!(s.policy.prior_p99_ms, 250.0);
    assert_eq!(s.policy.min_samples, 7);
    assert_eq!(s.policy.error_threshold, 0.3);
    assert_eq!(s.policy.explore, 0.1);
    assert_eq!(
        s.policy.min_error_samples,
        Policy::default().min_error_samples
    );
    // Avoidance, probes and the own samples' half-life: defaults, then set.
    let d = Policy::default();
    assert_eq!(s.policy.avoid_ratio, d.avoid_ratio);
    assert_eq!(s.policy.blend, d.blend);
    let s = settings(
        "[health]
avoid_ratio = 5.0
probe_interval_ms = 250
probe_gap = 20
own_half_life_ms = 3000
",
    );
    assert_eq!(s.policy.avoid_ratio, 5.0);
    assert_eq!(s.policy.probe_every_ms, 250);
    assert_eq!(s.policy.probe_gap, 20);
    assert_eq!(s.policy.blend.half_life_ms, 3_000);
    assert_eq!(s.policy.blend.level_ratio, d.blend.level_ratio);
}

#[test]
fn members_are_parsed_once_in_file_order() {
    let tls = "[tls]\nca = \"ca.pem\"\ncert = \"n1.pem\"\nkey = \"n1.key\"\n";
    let s = settings(&format!(
        "[cluster]\nmembers = [\"2@10.0.0.2:7080\", \"1@[::1]:7081\"]\n{tls}"
    ));
    let addr = |a: &str| a.parse::<PeerAddr>().unwrap();
    assert_eq!(
        s.raft.voters,
        vec![
            Voter {
                id: 2,
                raft_addr: addr("10.0.0.2:7080")
            },
            Voter {
                id: 1,
                raft_addr: addr("[::1]:7081")
            },
        ]
    );
    // A StatefulSet's pods are addressed by DNS name.
    let s = settings(&format!(
        "[cluster]\nmembers = [\"1@meridian-us-0.meridian-us-raft:7080\", \"2@localhost:7081\"]\n{tls}"
    ));
    assert_eq!(
        s.raft.voters[0].raft_addr.to_string(),
        "meridian-us-0.meridian-us-raft:7080"
    );
    assert_eq!(s.raft.voters[1].raft_addr.host(), "localhost");
    assert!(settings("").raft.voters.is_empty());
}

/// A hostile member list, built in code past the file's validation, is
/// still refused here, naming the entry; the same words as validation.
#[test]
fn hostile_members_are_refused_naming_the_entry() {
    let long = format!("2@{}:7080", "a".repeat(300));
    let cases = [
        (
            "x@127.0.0.1:7080",
            "cluster.members[1]",
            "`x` is not a node id",
        ),
        (
            "0@127.0.0.1:7080",
            "cluster.members[1]",
            "`0` is not a node id",
        ),
        (
            "-1@127.0.0.1:7080",
            "cluster.members[1]",
            "`-1` is not a node id",
        ),
        (
            "99999999999999999999999@127.0.0.1:7080",
            "cluster.members[1]",
            "is not a node id",
        ),
        (
            "127.0.0.1:7080",
            "cluster.members[1]",
            "expected `id@host:port`",
        ),
        ("", "cluster.members[1]", "expected `id@host:port`"),
        (
            "2@nowhere",
            "cluster.members[1]",
            "`nowhere` is not host:port",
        ),
        (
            "2@127.0.0.1:99999",
            "cluster.members[1]",
            "is not host:port",
        ),
        ("2@", "cluster.members[1]", "is not host:port"),
        (
            "2@localhost:0",
            "cluster.members[1]",
            "`localhost:0` is not host:port: the port must be a number from 1 to 65535",
        ),
        (
            "2@bad host:7080",
            "cluster.members[1]",
            "is neither an IP address nor a DNS name",
        ),
        (
            "2@bad\nhost:7080",
            "cluster.members[1]",
            "`bad?host:7080` is not host:port",
        ),
        (
            long.as_str(),
            "cluster.members[1]",
            "longer than 253 characters",
        ),
        (
            "1@127.0.0.1:7090",
            "cluster.members[1]",
            "node 1 is listed twice",
        ),
    ];
    for (member, field, words) in cases {
        let mut config = config("");
        config.cluster.members = vec!["1@127.0.0.1:7080".into(), member.into()];
        let e = Settings::new(&config).expect_err(member);
        assert_eq!(e.field, field, "{member}: {e}");
        assert!(e.message.contains(words), "{member}: {e}");
        // The file's validation says the same, from the same parser.
        assert_eq!(config.validate().unwrap_err(), e, "{member}");
    }
}
