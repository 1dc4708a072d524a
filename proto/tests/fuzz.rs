//! Property tests over hostile input for everything in `proto` that reads
//! bytes or text from outside the process: the Raft wire codec (what a peer
//! sends), health histograms (what a member reports through Raft) and the
//! configuration (what an operator or the admin API hands in).
//!
//! The property is always the same: any input gives a value or an error,
//! never a panic, an abort or an allocation out of proportion to the input.
//! Each test runs 256 cases by default (a second or so in a debug build);
//! `PROPTEST_CASES=200000 cargo test --release -p meridian-proto --test fuzz`
//! runs them long. A failing case is shrunk, printed, and its seed saved
//! under `proto/proptest-regressions/` so every later run replays it first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use proto::codec::{self, CodecError, HEADER_LEN, VERSION};
use proto::config::{RouteConfig, TargetConfig, UpstreamAuth, UpstreamConfig, UpstreamKind};
use proto::health::{self, HealthReport, UpstreamWindow};
use proto::state::{ClusterState, Command, CommandResponse, KeyRecord, NodeInfo};
use proto::{Config, ConfigError};

// ------------------------------------------------------------ strategies

/// Short strings that mix ASCII, escapes, control characters and
/// multi-byte characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._-]{0,12}",
        ".{0,12}",
        Just(String::new()),
        Just("\u{0}\n\"\\é€😀".to_owned()),
    ]
}

fn upstream() -> impl Strategy<Value = UpstreamConfig> {
    (
        text(),
        prop_oneof![
            Just("https://api.example.com/v1".to_owned()),
            Just("http://127.0.0.1:9/v1".to_owned()),
            ".{0,24}",
        ],
        text(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(id, base_url, region, api_key_env, api_key_file, api_key, http2)| UpstreamConfig {
                id,
                base_url,
                region,
                api_key_env,
                api_key_file: api_key_file.map(Into::into),
                auth: if api_key {
                    UpstreamAuth::ApiKey
                } else {
                    UpstreamAuth::Bearer
                },
                http2,
                ca_file: None,
                // The codec must carry every field: vary the new ones too.
                kind: if http2 {
                    UpstreamKind::Anthropic
                } else {
                    UpstreamKind::Openai
                },
                anthropic_version: http2.then(|| "2023-06-01".to_owned()),
                responses: api_key,
                aliases: vec!["alias".to_owned()],
                models: vec!["m-1".to_owned(), "m/2".to_owned()],
                prices: [(
                    "m-1".to_owned(),
                    proto::config::ModelPrice {
                        input_per_mtok: 0.5,
                        output_per_mtok: 1.5,
                        cached_input_per_mtok: Some(0.05),
                    },
                )]
                .into_iter()
                .collect(),
                discover_models: api_key,
                api_version: Some("2024-10-21".to_owned()),
                max_concurrency: http2.then_some(4),
                rpm: api_key.then_some(600),
            },
        )
}

fn target() -> impl Strategy<Value = TargetConfig> {
    (text(), text(), any::<f64>(), any::<f64>()).prop_map(
        |(upstream, model, input_per_mtok, output_per_mtok)| TargetConfig {
            upstream,
            model,
            input_per_mtok,
            output_per_mtok,
            cached_input_per_mtok: Some(input_per_mtok / 10.0),
        },
    )
}

fn route() -> impl Strategy<Value = RouteConfig> {
    (
        text(),
        proptest::collection::vec(proptest::collection::vec(target(), 0..3), 0..3),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<f64>()),
    )
        .prop_map(
            |(model, tiers, max_attempts, first_byte_timeout_ms, error_threshold)| RouteConfig {
                model,
                tiers,
                max_attempts,
                first_byte_timeout_ms,
                request_timeout_ms: None,
                error_threshold,
                hedge: None,
            },
        )
}

fn window() -> impl Strategy<Value = UpstreamWindow> {
    (
        any::<[u64; 4]>(),
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(
            |([successes, client_errors, errors, timeouts], ttfb)| UpstreamWindow {
                successes,
                client_errors,
                errors,
                timeouts,
                ttfb: ttfb.clone(),
                total: ttfb,
            },
        )
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        upstream().prop_map(Command::PutUpstream),
        route().prop_map(Command::PutRoute),
        text().prop_map(|id| Command::DeleteUpstream { id }),
        text().prop_map(|model| Command::DeleteRoute { model }),
        (text(), text()).prop_map(|(name, sha256)| Command::PutKey(KeyRecord {
            name,
            sha256,
            limits: Default::default(),
        })),
        (text(), text(), any::<u64>()).prop_map(|(key, id, nanos)| Command::AddCredits {
            key,
            id,
            nanos
        }),
        (
            any::<u64>(),
            0u64..3,
            any::<u64>(),
            any::<u32>(),
            proptest::collection::vec((text(), 0u32..3, any::<u64>()), 0..3)
        )
            .prop_map(|(id, boot, seq, usage_days, cells)| Command::Tenancy {
                id,
                report: proto::tenancy::TenantReport {
                    boot,
                    seq,
                    usage_days,
                    demand: cells.iter().map(|(k, _, n)| (k.clone(), *n)).collect(),
                    usage: cells
                        .into_iter()
                        .map(|(key, day, n)| (
                            proto::tenancy::UsageBucket {
                                key,
                                day,
                                model: "m".into(),
                                upstream: "u".into(),
                            },
                            proto::tenancy::Counters {
                                requests: n,
                                input_tokens: n,
                                output_tokens: n,
                                cost_nanos: n,
                            }
                        ))
                        .collect(),
                },
            }),
        (any::<u64>(), text(), text()).prop_map(|(id, admin_addr, region)| Command::Announce {
            id,
            info: NodeInfo { admin_addr, region },
        }),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::btree_map(text(), window(), 0..3),
            proptest::collection::btree_map(text(), any::<u64>(), 0..2)
        )
            .prop_map(|(id, seq, upstreams, cooldowns)| Command::Report {
                id,
                report: HealthReport {
                    seq,
                    region: "r".into(),
                    at_unix_ms: 0,
                    window_ms: 1,
                    upstreams,
                    cooldowns,
                },
            }),
        (
            proptest::collection::vec(upstream(), 0..2),
            proptest::collection::vec(route(), 0..2)
        )
            .prop_map(|(upstreams, routes)| Command::Seed {
                upstreams,
                routes,
                keys: Vec::new(),
            }),
    ]
}

#[path = "common/damage.rs"]
mod damage;
use damage::{apply, damage};

// ------------------------------------------------------------ wire codec

/// Decodes `body` as every type that crosses the wire or the store, each of
/// which must answer a value or an error.
fn decode_all(body: &[u8]) {
    let _ = codec::decode::<Command>(body);
    let _ = codec::decode::<CommandResponse>(body);
    let _ = codec::decode::<Result<CommandResponse, String>>(body);
    let _ = codec::decode::<ClusterState>(body);
    let _ = codec::decode::<HealthReport>(body);
    let _ = codec::decode::<String>(body);
    let _ = codec::decode::<Vec<u8>>(body);
    let _ = codec::decode::<BTreeMap<String, Vec<String>>>(body);
}

proptest! {
    /// Arbitrary bytes after the length prefix: an error or a value.
    #[test]
    fn codec_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_all(&bytes);
        // The same bytes behind the right version byte reach bincode itself.
        let mut versioned = vec![VERSION];
        versioned.extend_from_slice(&bytes);
        decode_all(&versioned);
    }

    /// A valid command, damaged: never a panic; undamaged, the same command.
    #[test]
    fn codec_damaged_commands_are_refused_or_decoded(command in command(), damage in damage()) {
        let frame = codec::encode(&command).unwrap();
        let body = &frame[HEADER_LEN..];
        prop_assert_eq!(codec::decode::<Command>(body).unwrap(), command);
        let mut damaged = body.to_vec();
        apply(&mut damaged, &damage, 1);
        decode_all(&damaged);
    }

    /// The length prefix: any four bytes and any limit give a length the
    /// reader may allocate (1..=max) or an error, never more.
    #[test]
    fn codec_frame_len_respects_the_limit(header: [u8; HEADER_LEN], max in 0usize..(1 << 30)) {
        match codec::frame_len(header, max) {
            Ok(len) => prop_assert!((1..=max).contains(&len)),
            Err(CodecError::Truncated) => prop_assert_eq!(header, [0; HEADER_LEN]),
            Err(CodecError::TooLarge { len, max: m }) => {
                prop_assert_eq!(m, max);
                prop_assert!(len > max);
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    /// A frame of any other version is refused as such, whatever follows.
    #[test]
    fn codec_unknown_versions_are_named(version in any::<u8>().prop_filter("not ours", |v| *v != VERSION),
                                        rest in proptest::collection::vec(any::<u8>(), 0..32)) {
        let mut body = vec![version];
        body.extend_from_slice(&rest);
        let refused = matches!(
            codec::decode::<Command>(&body),
            Err(CodecError::UnknownVersion(v)) if v == version
        );
        prop_assert!(refused);
    }
}

/// The attack a fuzzer finds first: a frame of a dozen bytes claiming a
/// string of 2^62 bytes. Decoding must refuse it before allocating.
#[test]
fn codec_a_huge_claimed_length_is_an_error_not_an_allocation() {
    for len in [u64::MAX, 1 << 62, 1 << 40, 1 << 33] {
        let frame = codec::encode(&Command::DeleteRoute { model: "x".into() }).unwrap();
        let mut body = frame[HEADER_LEN..].to_vec();
        // version, variant tag, length 1, "x": replace the length and string.
        assert_eq!(body.len(), 4, "{body:?}");
        body.truncate(2);
        body.push(0xFD);
        body.extend_from_slice(&len.to_le_bytes());
        assert!(codec::decode::<Command>(&body).is_err());
        assert!(codec::decode::<String>(&body[1..]).is_err());
    }
}

// ------------------------------------------------------- health histograms

proptest! {
    /// Arbitrary histogram bytes (as a member's report carries them): an
    /// error or a merged histogram.
    #[test]
    fn health_histogram_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let mut into = health::empty_histogram();
        let _ = health::add_encoded(&mut into, &bytes);
    }

    /// Real histogram encodings, damaged.
    #[test]
    fn health_damaged_histograms_never_panic(samples in proptest::collection::vec(1u64..1_000_000, 1..50),
                                             damage in damage()) {
        let mut h = health::empty_histogram();
        for s in samples {
            h.record(s).unwrap();
        }
        let mut bytes = health::encode_histogram(&h).unwrap();
        apply(&mut bytes, &damage, 0);
        let mut into = health::empty_histogram();
        let _ = health::add_encoded(&mut into, &bytes);
    }

    /// A window's counters, whatever a report claims, sum without overflow.
    #[test]
    fn health_attempts_never_overflow(window in window()) {
        let _ = window.attempts();
    }
}

/// A plain V2 histogram header: payload length, significant digits and
/// highest value as given.
fn v2_header(payload_len: u32, digits: u32, high: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&0x1c84_9313u32.to_be_bytes()); // V2 cookie
    bytes.extend_from_slice(&payload_len.to_be_bytes());
    bytes.extend_from_slice(&0u32.to_be_bytes()); // normalizing offset
    bytes.extend_from_slice(&digits.to_be_bytes());
    bytes.extend_from_slice(&1u64.to_be_bytes()); // lowest
    bytes.extend_from_slice(&high.to_be_bytes());
    bytes.extend_from_slice(&1.0f64.to_be_bytes()); // integer to double ratio
    bytes
}

/// `plain` wrapped as HDR's V2 + DEFLATE encoding, as reports carry it.
fn deflated(plain: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(plain).unwrap();
    let inner = z.finish().unwrap();
    let mut bytes = 0x1c84_9314u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&(inner.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&inner);
    bytes
}

/// Headers of forty bytes that claim a 4 GiB payload or a histogram of the
/// widest range and precision (hundreds of megabytes of counters): HDR's
/// deserializer allocates what they claim, so they must be refused before it
/// sees them, whether sent plain or deflated.
#[test]
fn health_histograms_claiming_huge_sizes_are_refused() {
    let huge_payload = v2_header(u32::MAX, 2, health::MAX_MICROS);
    let huge_range = v2_header(0, 5, u64::MAX / 2);
    for plain in [huge_payload, huge_range] {
        let mut into = health::empty_histogram();
        assert!(health::add_encoded(&mut into, &plain).is_err());
        assert!(health::add_encoded(&mut into, &deflated(&plain)).is_err());
    }
    // A deflate bomb: a megabyte of zeros after a valid header.
    let mut bomb = v2_header(1 << 20, 2, health::MAX_MICROS);
    bomb.resize(bomb.len() + (1 << 20), 0);
    let mut into = health::empty_histogram();
    assert!(health::add_encoded(&mut into, &deflated(&bomb)).is_err());
    // The real encoding still reads back.
    let mut h = health::empty_histogram();
    h.record(1_234).unwrap();
    health::add_encoded(&mut into, &health::encode_histogram(&h).unwrap()).unwrap();
    assert_eq!(into.len(), 1);
}

// ------------------------------------------------------------------ config

/// A valid configuration to damage.
const BASE: &str = r#"
[node]
id = 1
region = "us-east"
data_dir = "data/n1"

[listen]
api = "127.0.0.1:8080"
admin = "127.0.0.1:9080"
raft = "127.0.0.1:7080"

[cluster]
members = ["1@127.0.0.1:7080", "2@127.0.0.1:7081"]

[tls]
ca = "certs/ca.pem"
cert = "certs/n1.pem"
key = "certs/n1.key"

[admin]
token_env = "MERIDIAN_ADMIN_TOKEN"

[[keys]]
name = "app"
key_env = "MERIDIAN_CLIENT_KEY"

[[upstreams]]
id = "deepseek"
base_url = "https://api.deepseek.com/v1"
api_key_env = "DEEPSEEK_API_KEY"

[[routes]]
model = "fast"
tiers = [[{ upstream = "deepseek", model = "deepseek-chat", input_per_mtok = 0.07 }]]
"#;

/// Values a line may be given: TOML of every type, and broken TOML.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("nan".to_owned()),
        Just("inf".to_owned()),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("[[]]".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"0@[::1]:1\"".to_owned()),
        Just("\"http://user:pw@h/v1\"".to_owned()),
        ".{0,16}".prop_map(|s| format!("{s:?}")),
        ".{0,16}",
    ]
}

/// One change to the base file: a value replaced, a line dropped, a line
/// added, or the text cut short.
#[derive(Debug, Clone)]
enum Edit {
    Value { line: usize, value: String },
    Drop { line: usize },
    Add { line: usize, text: String },
    Cut { at: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    let key = prop_oneof![
        Just("id"),
        Just("region"),
        Just("api"),
        Just("members"),
        Just("workers"),
        Just("max_attempts"),
        Just("heartbeat_ms"),
        Just("election_timeout_ms"),
        Just("snapshot_logs"),
        Just("model"),
        Just("tiers"),
        Just("error_threshold"),
        Just("regoin"),
    ];
    prop_oneof![
        (any::<usize>(), toml_value()).prop_map(|(line, value)| Edit::Value { line, value }),
        any::<usize>().prop_map(|line| Edit::Drop { line }),
        (any::<usize>(), key, toml_value()).prop_map(|(line, key, value)| Edit::Add {
            line,
            text: format!("{key} = {value}"),
        }),
        (any::<usize>(), ".{0,20}").prop_map(|(line, text)| Edit::Add { line, text }),
        any::<usize>().prop_map(|at| Edit::Cut { at }),
    ]
}

fn edited(edits: &[Edit]) -> String {
    let mut lines: Vec<String> = BASE.lines().map(str::to_owned).collect();
    for e in edits {
        let n = lines.len().max(1);
        match e {
            Edit::Value { line, value } => {
                if let Some(l) = lines.get_mut(line % n)
                    && let Some((key, _)) = l.split_once('=')
                {
                    *l = format!("{key}= {value}");
                }
            }
            Edit::Drop { line } => {
                if !lines.is_empty() {
                    lines.remove(line % n);
                }
            }
            Edit::Add { line, text } => lines.insert(line % (lines.len() + 1), text.clone()),
            Edit::Cut { at } => {
                let text = lines.join("\n");
                let mut cut = at % (text.len() + 1);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                lines = text[..cut].lines().map(str::to_owned).collect();
            }
        }
    }
    lines.join("\n")
}

/// Whatever the outcome, an error names a field an operator can find.
fn check_config(result: Result<Config, ConfigError>) -> Result<(), TestCaseError> {
    match result {
        Ok(config) => prop_assert!(config.validate().is_ok()),
        Err(e) => {
            prop_assert!(!e.field.is_empty(), "an error without a field: {e}");
            prop_assert!(!e.message.is_empty(), "an error without a message: {e:?}");
        }
    }
    Ok(())
}

#[test]
fn config_base_is_valid() {
    Config::from_toml(BASE).unwrap();
}

proptest! {
    /// Arbitrary text: a config or an error naming a field.
    #[test]
    fn config_arbitrary_text(text in ".{0,200}") {
        check_config(Config::from_toml(&text))?;
    }

    /// Arbitrary bytes read as the file would be (lossily, as UTF-8).
    #[test]
    fn config_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_config(Config::from_toml(&String::from_utf8_lossy(&bytes)))?;
    }

    /// The real file, edited: the deep checks run on near-valid input.
    #[test]
    fn config_edited_file(edits in proptest::collection::vec(edit(), 1..4)) {
        check_config(Config::from_toml(&edited(&edits)))?;
    }

    /// What the admin API validates from a client's JSON body.
    #[test]
    fn config_upstreams_and_routes_validate_or_name_a_field(up in upstream(), route in route()) {
        if let Err(e) = up.validate("upstream") {
            prop_assert!(e.field.starts_with("upstream."), "{e}");
        }
        if let Err(e) = route.validate("route", |id| id == up.id) {
            prop_assert!(e.field.starts_with("route."), "{e}");
        }
    }
}

/// A report's counters summed with overflow: a panic in a debug build, a
/// wrapped (small) attempt count in a release build.
#[test]
fn found_window_attempts_saturate() {
    let window = UpstreamWindow {
        successes: u64::MAX,
        timeouts: 1,
        ..UpstreamWindow::default()
    };
    assert_eq!(window.attempts(), u64::MAX);
}
