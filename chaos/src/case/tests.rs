//! Case parsing and validation: every shipped case loads, and every bad
//! field is refused with an error that names it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use super::*;

const MINIMAL: &str = "duration_s = 30\n";

fn err(text: &str) -> String {
    match Case::parse(text, "t") {
        Ok(case) => panic!("accepted: {case:?}"),
        Err(e) => e.to_string(),
    }
}

fn with_fault(fault: &str) -> String {
    format!("{MINIMAL}\n[[faults]]\n{fault}\n")
}

#[test]
fn minimal_case_gets_the_defaults() {
    let case = Case::parse(MINIMAL, "mini").unwrap();
    assert_eq!(case.name, "mini");
    assert_eq!(case.duration, Duration::from_secs(30));
    assert_eq!(case.cluster.nodes, 3);
    assert_eq!(case.upstreams, 2);
    assert_eq!(case.sla.success_ratio, 0.999);
    assert!(!case.sla.forgive_killed_in_flight);
    assert!(case.faults.is_empty());
}

#[test]
fn every_shipped_case_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let case = Case::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !case.description.is_empty(),
                "{}: no description",
                case.name
            );
            names.push(case.name);
        }
    }
    for wanted in [
        "smoke",
        "leader-kill",
        "rolling-restart",
        "region-isolated",
        "oneway-partition",
        "wan-latency",
        "upstream-brownout",
        "upstream-blackhole",
        "storm-500",
        "storm-429",
        "streams-cut",
        "flapping-upstream",
        "combined-storm",
        "kill-loop",
    ] {
        assert!(names.iter().any(|n| n == wanted), "missing case {wanted}");
    }
}

#[test]
fn faults_are_typed_and_sorted_by_time() {
    let text = format!(
        "{MINIMAL}
[[faults]]
kind = \"partition\"
at_s = 20
until_s = 25
from = [\"leader\"]

[[faults]]
kind = \"kill\"
at_s = 5
node = \"n2\"
signal = \"term\"
down_s = 1.5

[[faults]]
kind = \"delay\"
at_s = 0
rtt_ms = [80, 200]
jitter_ms = 10

[[faults]]
kind = \"upstream\"
at_s = 10
until_s = 12
upstream = \"b\"
latency_factor = 10
"
    );
    let case = Case::parse(&text, "t").unwrap();
    let at: Vec<f64> = case.faults.iter().map(|f| f.at().as_secs_f64()).collect();
    assert_eq!(at, vec![0.0, 5.0, 10.0, 20.0]);
    assert!(matches!(
        &case.faults[1],
        Fault::Kill {
            node: NodeSel::Id(2),
            signal: Signal::Term,
            count: 1,
            ..
        }
    ));
    let Fault::Net {
        until, effect, to, ..
    } = &case.faults[0]
    else {
        panic!("not a net fault");
    };
    assert_eq!(*until, Duration::from_secs(30));
    assert_eq!(*to, None);
    assert_eq!(
        *effect,
        NetEffect::Wan {
            rtt_min: 80.0,
            rtt_max: 200.0,
            jitter: 10.0
        }
    );
}

#[test]
fn latency_factor_scales_the_baseline() {
    let text = format!(
        "{MINIMAL}
[upstreams.behavior]
first_byte = {{ p50_ms = 20, p99_ms = 80 }}
chunk_delay = {{ fixed_ms = 5 }}

[[faults]]
kind = \"upstream\"
at_s = 1
upstream = \"a\"
latency_factor = 10
"
    );
    let case = Case::parse(&text, "t").unwrap();
    let Fault::Upstream {
        effect: UpstreamEffect::Behave(b),
        ..
    } = &case.faults[0]
    else {
        panic!("not a behaviour fault");
    };
    assert!(
        matches!(b.first_byte, mock::Latency::LogNormal { p50_ms, p99_ms, .. } if p50_ms == 200.0 && p99_ms == 800.0)
    );
    assert_eq!(b.chunk_delay, mock::Latency::Fixed { ms: 50.0 });
}

#[test]
fn errors_name_the_field() {
    let cases: Vec<(String, &str)> = vec![
        ("duration_s = 2\n".into(), "duration_s"),
        ("duration_s = 30\nbogus = 1\n".into(), "bogus"),
        (format!("{MINIMAL}[cluster]\nnodes = 0\n"), "cluster.nodes"),
        (
            format!("{MINIMAL}[cluster]\nheartbeat_ms = 500\nelection_timeout_ms = 600\n"),
            "cluster.election_timeout_ms",
        ),
        (format!("{MINIMAL}[load]\nrate = 0\n"), "load.rate"),
        (
            format!("{MINIMAL}[load]\nstream_share = 1.5\n"),
            "load.stream_share",
        ),
        (
            format!("{MINIMAL}[sla]\nsuccess_ratio = 1.5\n"),
            "sla.success_ratio",
        ),
        (
            format!("{MINIMAL}[upstreams.behavior]\neror_rate = 1\n"),
            "upstreams.behavior",
        ),
        (with_fault("kind = \"explode\"\nat_s = 1"), "faults[0].kind"),
        (with_fault("kind = \"kill\"\nat_s = 31"), "faults[0].at_s"),
        (with_fault("kind = \"kill\"\nat_s = -1"), "faults[0].at_s"),
        (
            with_fault("kind = \"kill\"\nat_s = 1\nnode = \"n9\""),
            "faults[0].node",
        ),
        (
            with_fault("kind = \"kill\"\nat_s = 1\nsignal = \"hup\""),
            "faults[0].signal",
        ),
        (
            with_fault("kind = \"kill\"\nat_s = 1\ncount = 3"),
            "faults[0].every_s",
        ),
        (
            with_fault("kind = \"kill\"\nat_s = 1\ncount = 3\nevery_s = 2\ndown_s = 3"),
            "faults[0].every_s",
        ),
        (
            with_fault("kind = \"kill\"\nat_s = 10\ncount = 3\nevery_s = 10"),
            "faults[0].count",
        ),
        (
            with_fault("kind = \"kill\"\nat_s = 1\nuntil_s = 5"),
            "faults[0].until_s",
        ),
        (
            with_fault("kind = \"partition\"\nat_s = 10\nuntil_s = 5"),
            "faults[0].until_s",
        ),
        (
            with_fault("kind = \"partition\"\nat_s = 10\nuntil_s = 40"),
            "faults[0].until_s",
        ),
        (
            with_fault("kind = \"partition\"\nat_s = 1\nfrom = [\"x\"]"),
            "faults[0].from[0]",
        ),
        (
            with_fault("kind = \"partition\"\nat_s = 1\nfrom = []"),
            "faults[0].from",
        ),
        (
            with_fault("kind = \"partition\"\nat_s = 1\noneway = true"),
            "faults[0].to",
        ),
        (with_fault("kind = \"loss\"\nat_s = 1"), "faults[0].rate"),
        (
            with_fault("kind = \"loss\"\nat_s = 1\nrate = 2.0"),
            "faults[0].rate",
        ),
        (with_fault("kind = \"delay\"\nat_s = 1"), "faults[0].rtt_ms"),
        (
            with_fault("kind = \"delay\"\nat_s = 1\nrtt_ms = [200, 80]"),
            "faults[0].rtt_ms",
        ),
        (
            with_fault("kind = \"delay\"\nat_s = 1\nrtt_ms = [80, 200]\njitter_ms = 100"),
            "faults[0].jitter_ms",
        ),
        (
            with_fault("kind = \"upstream\"\nat_s = 1"),
            "faults[0].upstream",
        ),
        (
            with_fault("kind = \"upstream\"\nat_s = 1\nupstream = \"z\"\nlatency_factor = 2"),
            "faults[0].upstream",
        ),
        (
            with_fault("kind = \"upstream\"\nat_s = 1\nupstream = \"a\""),
            "faults[0].behavior",
        ),
        (
            with_fault(
                "kind = \"upstream\"\nat_s = 1\nupstream = \"a\"\nbehavior = { error_rate = 7.0 }",
            ),
            "faults[0].behavior",
        ),
        (
            with_fault(
                "kind = \"upstream\"\nat_s = 1\nupstream = \"a\"\nlatency_factor = 2\nflap_s = 0.01",
            ),
            "faults[0].flap_s",
        ),
        (
            with_fault("kind = \"upstream_net\"\nat_s = 1\nupstream = \"a\""),
            "faults[0].mode",
        ),
        (
            with_fault("kind = \"upstream_net\"\nat_s = 1\nupstream = \"a\"\nmode = \"melt\""),
            "faults[0].mode",
        ),
        (
            with_fault("kind = \"partition\"\nat_s = 1\nrate = 0.5"),
            "faults[0].rate",
        ),
        (
            with_fault("kind = \"loss\"\nat_s = 1\nrate = 0.1\nmode = \"reset\""),
            "faults[0].mode",
        ),
    ];
    for (text, field) in cases {
        let message = err(&text);
        assert!(
            message.contains(field),
            "error for {text:?} does not name {field:?}: {message}"
        );
    }
}

#[test]
fn load_prefixes_the_file_to_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "duration_s = 30\n[load]\nrate = -1\n").unwrap();
    let message = Case::load(&path).unwrap_err().to_string();
    assert!(
        message.contains("bad.toml") && message.contains("load.rate"),
        "{message}"
    );
    let missing = Case::load(&dir.path().join("none.toml")).unwrap_err();
    assert!(matches!(missing, CaseError::Read { .. }));
}

#[test]
fn upstream_ids_are_letters() {
    assert_eq!(upstream_id(0), "a");
    assert_eq!(upstream_id(2), "c");
    assert_eq!(upstream_index("b", 2), Some(1));
    assert_eq!(upstream_index("c", 2), None);
}
