#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use super::*;

const DESIGN_EXAMPLE: &str = r#"
[node]
id = 1
region = "us-east"
data_dir = "data/n1"

[listen]
api = "127.0.0.1:8080"
admin = "127.0.0.1:9080"
raft = "127.0.0.1:7080"

[cluster]
members = ["1@127.0.0.1:7080", "2@127.0.0.1:7081", "3@127.0.0.1:7082"]

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
region = "ap-east"
api_key_env = "DEEPSEEK_API_KEY"

[[upstreams]]
id = "openai"
base_url = "https://api.openai.com/v1"
region = "us-east"
api_key_env = "OPENAI_API_KEY"

[[routes]]
model = "fast"
tiers = [
  [{ upstream = "deepseek", model = "deepseek-chat", input_per_mtok = 0.07, output_per_mtok = 0.25 }],
  [{ upstream = "openai", model = "gpt-4o-mini", input_per_mtok = 0.15, output_per_mtok = 0.60 }],
]
"#;

fn err(text: &str) -> ConfigError {
    Config::from_toml(text).expect_err("config should be rejected")
}

#[test]
fn design_example_parses() {
    let config = Config::from_toml(DESIGN_EXAMPLE).unwrap();
    assert_eq!(config.node.region, "us-east");
    assert_eq!(config.routes[0].tiers.len(), 2);
    assert_eq!(config.routes[0].tiers[1][0].output_per_mtok, 0.60);
    assert_eq!(config.cluster.members.len(), 3);
    assert_eq!(config.proxy, ProxyConfig::default());
}

#[test]
fn unknown_field_is_named() {
    let e =
        err(&DESIGN_EXAMPLE.replace("region = \"us-east\"\ndata_dir", "regoin = \"x\"\ndata_dir"));
    // Named where it sits, so a field of the same name elsewhere is not
    // mistaken for it.
    assert_eq!(e.field, "node.regoin", "{e}");
    let e = err(&DESIGN_EXAMPLE.replace(
        "api_key_env = \"DEEPSEEK_API_KEY\"\n",
        "api_key_env = \"DEEPSEEK_API_KEY\"\nkind = \"gemini\"\n",
    ));
    assert_eq!(e.field, "upstreams[0].kind", "{e}");
    let e = err(&DESIGN_EXAMPLE.replace("base_url = \"https://api.deepseek.com/v1\"\n", ""));
    assert_eq!(e.field, "upstreams[0].base_url", "{e}");
}

#[test]
fn wrong_type_is_named() {
    let e = err(&DESIGN_EXAMPLE.replace("id = 1\n", "id = \"one\"\n"));
    assert!(e.to_string().contains("line"), "{e}");
}

#[test]
fn route_to_unknown_upstream_names_the_target() {
    let e = err(&DESIGN_EXAMPLE.replace("upstream = \"openai\"", "upstream = \"opnai\""));
    assert_eq!(e.field, "routes[0].tiers[1][0].upstream");
    assert!(e.message.contains("opnai"));
}

#[test]
fn empty_tier_is_refused() {
    let e = err(&DESIGN_EXAMPLE.replace(
        "[{ upstream = \"openai\", model = \"gpt-4o-mini\", input_per_mtok = 0.15, output_per_mtok = 0.60 }],",
        "[],",
    ));
    assert_eq!(e.field, "routes[0].tiers[1]");
}

#[test]
fn health_and_hedge_settings_are_checked() {
    let e = err(&format!("{DESIGN_EXAMPLE}\n[health]\nexplore = 1.5\n"));
    assert_eq!(e.field, "health.explore");
    let e = err(&format!(
        "{DESIGN_EXAMPLE}\n[health]\nejection_ms = 5000\nmax_ejection_ms = 1000\n"
    ));
    assert_eq!(e.field, "health.max_ejection_ms");
    // Hostile values of the routing knobs name their field.
    for (line, field) in [
        ("avoid_ratio = -1.0", "health.avoid_ratio"),
        ("avoid_ratio = nan", "health.avoid_ratio"),
        ("avoid_ratio = inf", "health.avoid_ratio"),
        ("probe_interval_ms = 0", "health.probe_interval_ms"),
        ("probe_gap = 0", "health.probe_gap"),
        ("own_half_life_ms = 0", "health.own_half_life_ms"),
        // A window over an hour: the other members would refuse its reports.
        ("window_slots = 3600\nslot_ms = 1001", "health.slot_ms"),
        ("slot_ms = 9223372036854775807", "health.slot_ms"),
    ] {
        let e = err(&format!("{DESIGN_EXAMPLE}\n[health]\n{line}\n"));
        assert_eq!(e.field, field, "{line}");
    }
    // 0 switches avoidance off; it is not an error.
    let off = format!("{DESIGN_EXAMPLE}\n[health]\navoid_ratio = 0.0\n");
    assert!(Config::from_toml(&off).is_ok());
    let hedged = DESIGN_EXAMPLE.replace(
        "model = \"fast\"\n",
        "model = \"fast\"\nhedge = { quantile = 1.0 }\n",
    );
    assert_eq!(err(&hedged).field, "routes[0].hedge.quantile");
    let ok = DESIGN_EXAMPLE.replace(
        "model = \"fast\"\n",
        "model = \"fast\"\nhedge = { budget = 0.05 }\nerror_threshold = 0.2\n",
    );
    let config = Config::from_toml(&ok).unwrap();
    let hedge = config.routes[0].hedge.clone().unwrap();
    assert_eq!((hedge.quantile, hedge.budget), (0.95, 0.05));
    assert_eq!(config.routes[0].error_threshold, Some(0.2));
    assert_eq!(config.health, HealthConfig::default());
}

#[test]
fn negative_price_is_refused() {
    let e = err(&DESIGN_EXAMPLE.replace("input_per_mtok = 0.07", "input_per_mtok = -1.0"));
    assert_eq!(e.field, "routes[0].tiers[0][0].input_per_mtok");
}

#[test]
fn duplicate_upstream_is_refused() {
    let e = err(&DESIGN_EXAMPLE.replace("id = \"openai\"", "id = \"deepseek\""));
    assert_eq!(e.field, "upstreams[1].id");
}

#[test]
fn bad_base_url_is_refused() {
    let e = err(&DESIGN_EXAMPLE.replace("https://api.deepseek.com/v1", "ftp://x/v1"));
    assert_eq!(e.field, "upstreams[0].base_url");
}

#[test]
fn public_listener_without_keys_is_refused() {
    let text = DESIGN_EXAMPLE
        .replace(
            "[[keys]]\nname = \"app\"\nkey_env = \"MERIDIAN_CLIENT_KEY\"\n",
            "",
        )
        .replace("api = \"127.0.0.1:8080\"", "api = \"0.0.0.0:8080\"");
    assert_eq!(err(&text).field, "listen.api");
}

#[test]
fn bad_member_is_named() {
    let e = err(&DESIGN_EXAMPLE.replace("2@127.0.0.1:7081", "two@127.0.0.1:7081"));
    assert_eq!(e.field, "cluster.members[1]");
}

#[test]
fn zero_timeout_is_refused() {
    let e = err(&format!(
        "{DESIGN_EXAMPLE}\n[proxy]\nfirst_byte_timeout_ms = 0\n"
    ));
    assert_eq!(e.field, "proxy.first_byte_timeout_ms");
    for bad in [
        "max_stream_ms = 0",
        "max_stream_ms = -1",
        "max_stream_ms = \"1h\"",
    ] {
        let e = err(&format!("{DESIGN_EXAMPLE}\n[proxy]\n{bad}\n"));
        assert_eq!(e.field, "proxy.max_stream_ms", "{bad}");
    }
    let set = Config::from_toml(&format!(
        "{DESIGN_EXAMPLE}\n[proxy]\nmax_stream_ms = 600000\n"
    ));
    assert_eq!(set.unwrap().proxy.max_stream_ms, 600_000);
    assert_eq!(ProxyConfig::default().max_stream_ms, 3_600_000);
}

#[test]
fn credentials_in_base_url_are_refused_without_echoing_them() {
    let e = err(&DESIGN_EXAMPLE.replace(
        "https://api.deepseek.com/v1",
        "https://user:hunter2@api.deepseek.com/v1",
    ));
    assert_eq!(e.field, "upstreams[0].base_url");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = err(&DESIGN_EXAMPLE.replace(
        "https://api.deepseek.com/v1",
        "http://only-user@api.deepseek.com/v1",
    ));
    assert_eq!(e.field, "upstreams[0].base_url");
}

#[test]
fn key_variables_must_be_variable_names() {
    for hostile in ["", " ", "A=B", "A B", "1ABC", "KEY\\n", "../x"] {
        let text = DESIGN_EXAMPLE.replace(
            "api_key_env = \"DEEPSEEK_API_KEY\"",
            &format!("api_key_env = \"{hostile}\""),
        );
        assert_eq!(err(&text).field, "upstreams[0].api_key_env", "{hostile:?}");
    }
}

#[test]
fn key_and_ca_files_must_be_printable_names() {
    for (line, field) in [
        ("api_key_file = \"\"", "upstreams[0].api_key_file"),
        (
            "api_key_file = \"/k\\nFORGED log line\"",
            "upstreams[0].api_key_file",
        ),
        ("ca_file = \"/ca\\u0000.pem\"", "upstreams[0].ca_file"),
        ("ca_file = \"/ca\\u001b[31m.pem\"", "upstreams[0].ca_file"),
    ] {
        let text = DESIGN_EXAMPLE.replace("api_key_env = \"DEEPSEEK_API_KEY\"", line);
        assert_eq!(err(&text).field, field, "{line}");
    }
    let long = format!("ca_file = \"/{}\"", "a".repeat(5000));
    let text = DESIGN_EXAMPLE.replace("api_key_env = \"DEEPSEEK_API_KEY\"", &long);
    assert_eq!(err(&text).field, "upstreams[0].ca_file");
}

#[test]
fn short_secrets_are_refused_naming_the_field() {
    let e = check_secret_strength("admin.token_env", "TOKEN", "x").unwrap_err();
    assert_eq!(e.field, "admin.token_env");
    assert!(
        e.message.contains("TOKEN") && e.message.contains("16"),
        "{e}"
    );
    assert!(check_secret_strength("f", "V", "   fifteen-chars  ").is_err());
    assert!(check_secret_strength("f", "V", "sixteen-chars-ok").is_ok());
    assert!(check_secret_strength("f", "V", "ééééééééééééééé").is_err());
}

const SECRETS: &str = "\n[secrets]\nenv = [\"OPENAI_API_KEY\", \"SPARE_KEY\"]\nenv_prefix = \"MERIDIAN_UPSTREAM_\"\ndir = \"/etc/meridian/keys\"\n";

fn policy(extra: &str) -> SecretPolicy {
    SecretPolicy::new(&Config::from_toml(&format!("{DESIGN_EXAMPLE}{extra}")).unwrap())
}

#[test]
fn secrets_section_is_checked() {
    let config = Config::from_toml(&format!("{DESIGN_EXAMPLE}{SECRETS}")).unwrap();
    assert_eq!(
        config.secrets.env_prefix.as_deref(),
        Some("MERIDIAN_UPSTREAM_")
    );
    for (bad, field) in [
        ("env_prefix = \"M\"", "secrets.env_prefix"),
        ("env_prefix = \"A=B_\"", "secrets.env_prefix"),
        ("env = [\"OK\", \"NOT OK\"]", "secrets.env[1]"),
        ("dir = \"keys\"", "secrets.dir"),
        ("dir = \"/\"", "secrets.dir"),
        ("dir = \"/etc/../keys\"", "secrets.dir"),
        ("surprise = 1", "secrets.surprise"),
    ] {
        assert_eq!(
            err(&format!("{DESIGN_EXAMPLE}\n[secrets]\n{bad}\n")).field,
            field,
            "{bad}"
        );
    }
    assert_eq!(
        Config::from_toml(DESIGN_EXAMPLE).unwrap().secrets,
        SecretsConfig::default()
    );
}

#[test]
fn the_response_secret_is_named_by_a_variable() {
    assert_eq!(
        Config::from_toml(DESIGN_EXAMPLE).unwrap().responses,
        ResponsesConfig::default()
    );
    let named = Config::from_toml(&format!(
        "{DESIGN_EXAMPLE}\n[responses]\nsecret_env = \"MERIDIAN_RESPONSE_SECRET\"\n"
    ))
    .unwrap();
    assert_eq!(
        named.responses.secret_env.as_deref(),
        Some("MERIDIAN_RESPONSE_SECRET")
    );
    for bad in [
        "secret_env = \"\"",
        "secret_env = \"1ABC\"",
        "secret_env = \"A-B\"",
        "secret_env = \"A B\"",
        "secret_env = \"$(id)\"",
        "secret_env = 7",
        "secret = \"inline\"",
    ] {
        let e = err(&format!("{DESIGN_EXAMPLE}\n[responses]\n{bad}\n"));
        assert!(e.field.starts_with("responses."), "{bad}: {e:?}");
    }
    // The previous secret, while rotating: only beside a current one, and
    // not the same variable.
    let rotating = Config::from_toml(&format!(
        "{DESIGN_EXAMPLE}\n[responses]\nsecret_env = \"NEXT\"\nprevious_secret_env = \"LAST\"\n"
    ))
    .unwrap();
    assert_eq!(
        rotating.responses.previous_secret_env.as_deref(),
        Some("LAST")
    );
    for bad in [
        "previous_secret_env = \"LAST\"",
        "secret_env = \"SAME\"\nprevious_secret_env = \"SAME\"",
        "secret_env = \"NEXT\"\nprevious_secret_env = \"1LAST\"",
    ] {
        let e = err(&format!("{DESIGN_EXAMPLE}\n[responses]\n{bad}\n"));
        assert_eq!(e.field, "responses.previous_secret_env", "{bad}");
    }
}

#[test]
fn the_admin_api_may_name_only_allowed_variables() {
    let api = SecretOrigin::AdminApi;
    let p = policy(SECRETS);
    assert!(p.check_env("upstream", "SPARE_KEY", api).is_ok());
    assert!(
        p.check_env("upstream", "MERIDIAN_UPSTREAM_ACME", api)
            .is_ok()
    );
    // Named by the file's own upstreams.
    assert!(p.check_env("upstream", "DEEPSEEK_API_KEY", api).is_ok());
    for var in [
        "HOME",
        "PATH",
        "AWS_SECRET_ACCESS_KEY",
        "SPARE_KEY_2",
        "MERIDIAN_UPSTREAM",
    ] {
        let e = p.check_env("upstream", var, api).unwrap_err();
        assert_eq!(e.field, "upstream.api_key_env", "{var}");
    }
    // The node's own secrets, whatever [secrets] says.
    let greedy = policy(
        "\n[secrets]\nenv = [\"MERIDIAN_CLIENT_KEY\"]\nenv_prefix = \"MERIDIAN_\"\n\
         [responses]\nsecret_env = \"MERIDIAN_RESPONSE_SECRET\"\n\
         previous_secret_env = \"MERIDIAN_RESPONSE_SECRET_OLD\"\n",
    );
    for var in [
        "MERIDIAN_CLIENT_KEY",
        "MERIDIAN_ADMIN_TOKEN",
        "MERIDIAN_RESPONSE_SECRET",
        "MERIDIAN_RESPONSE_SECRET_OLD",
    ] {
        let e = greedy.check_env("upstream", var, api).unwrap_err();
        assert!(e.message.contains("client key"), "{var}: {e}");
        assert!(
            greedy.check_env("u", var, SecretOrigin::Applied).is_err(),
            "{var}"
        );
    }
    let text = format!(
        "{}\n[secrets]\nenv_prefix = \"OPS_\"\n",
        DESIGN_EXAMPLE.replace(
            "token_env = \"MERIDIAN_ADMIN_TOKEN\"",
            "token_env = \"OPS_TOKEN\""
        )
    );
    let other_token = SecretPolicy::new(&Config::from_toml(&text).unwrap());
    assert!(other_token.check_env("u", "OPS_TOKEN", api).is_err());
    assert!(other_token.check_env("u", "OPS_OTHER", api).is_ok());
    // Without [secrets], only what the file names.
    let bare = policy("");
    assert!(bare.check_env("u", "OPENAI_API_KEY", api).is_ok());
    assert!(bare.check_env("u", "SPARE_KEY", api).is_err());
}

#[test]
fn a_file_naming_its_own_secret_may_read_it_but_the_api_may_not() {
    let text = DESIGN_EXAMPLE.replace(
        "api_key_env = \"DEEPSEEK_API_KEY\"",
        "api_key_env = \"MERIDIAN_CLIENT_KEY\"",
    );
    let p = SecretPolicy::new(&Config::from_toml(&text).unwrap());
    assert!(
        p.check_env("u", "MERIDIAN_CLIENT_KEY", SecretOrigin::Applied)
            .is_ok()
    );
    assert!(
        p.check_env("u", "MERIDIAN_CLIENT_KEY", SecretOrigin::AdminApi)
            .is_err()
    );
}

/// A CA file written through the admin API is held to the key files'
/// rule: below `[secrets] dir`, or named by the node's own file; never
/// anywhere else, never the node's TLS identity.
#[test]
fn ca_files_from_the_api_must_be_below_the_secrets_dir_or_named() {
    let p = policy(SECRETS);
    assert_eq!(
        p.check_ca_file("upstream", Path::new("/etc/meridian/keys/ca.pem")),
        Ok(FileAccess::BelowDir(PathBuf::from("/etc/meridian/keys")))
    );
    for hostile in [
        "/etc/passwd",
        "/etc/meridian/certs/n1.key",
        "/etc/meridian/keys/../../passwd",
        "/dev/zero",
        "keys/ca.pem",
    ] {
        let e = p.check_ca_file("upstream", Path::new(hostile)).unwrap_err();
        assert_eq!(e.field, "upstream.ca_file", "{hostile}");
    }
    let e = policy("")
        .check_ca_file("u", Path::new("/etc/meridian/keys/ca.pem"))
        .unwrap_err();
    assert!(e.message.contains("[secrets] dir"), "{e}");
    // One the node's own file names is read as it is.
    let named = format!(
        "{DESIGN_EXAMPLE}\n[[upstreams]]\nid = \"private\"\nbase_url = \"https://10.0.0.9/v1\"\nregion = \"us-east\"\nca_file = \"/opt/private-ca.pem\"\n"
    );
    let p = SecretPolicy::new(&Config::from_toml(&named).unwrap());
    assert_eq!(
        p.check_ca_file("upstream", Path::new("/opt/private-ca.pem")),
        Ok(FileAccess::Named)
    );
}

#[test]
fn key_files_must_be_below_the_secrets_dir() {
    let api = SecretOrigin::AdminApi;
    let p = policy(SECRETS);
    let dir = PathBuf::from("/etc/meridian/keys");
    assert_eq!(
        p.check_file("upstream", Path::new("/etc/meridian/keys/openai"), api),
        Ok(FileAccess::BelowDir(dir.clone()))
    );
    for hostile in [
        "/etc/passwd",
        "/etc/meridian/keys",
        "/etc/meridian/keys/../../passwd",
        "/etc/meridian/keys/a/../../x",
        "etc/meridian/keys/openai",
        "keys/openai",
        "/etc/meridian/keysmith/x",
        "/etc/meridian/certs/n1.key",
    ] {
        let e = p
            .check_file("upstream", Path::new(hostile), api)
            .unwrap_err();
        assert_eq!(e.field, "upstream.api_key_file", "{hostile}");
    }
    let e = policy("")
        .check_file("u", Path::new("/etc/meridian/keys/openai"), api)
        .unwrap_err();
    assert!(e.message.contains("[secrets] dir"), "{e}");
    // The node's TLS key, even below the dir and even named in a seed.
    let tls_in_dir = DESIGN_EXAMPLE.replace("certs/n1.key", "/etc/meridian/keys/n1.key");
    let p = SecretPolicy::new(&Config::from_toml(&format!("{tls_in_dir}{SECRETS}")).unwrap());
    assert!(
        p.check_file("u", Path::new("/etc/meridian/keys/n1.key"), api)
            .is_err()
    );
    // Resolved paths: a symlink out of the dir, or onto a TLS file.
    let resolved_tls = [PathBuf::from("/srv/tls/n1.key")];
    assert!(p.resolved_inside(Path::new("/etc/meridian/keys/a"), &dir, &resolved_tls));
    assert!(!p.resolved_inside(Path::new("/etc/shadow"), &dir, &resolved_tls));
    assert!(!p.resolved_inside(&dir, &dir, &resolved_tls));
    let tls_dir = [dir.join("n1.key")];
    assert!(!p.resolved_inside(&dir.join("n1.key"), &dir, &tls_dir));
}

#[test]
fn files_the_node_names_itself_are_read_as_named() {
    let text = DESIGN_EXAMPLE.replace(
        "api_key_env = \"DEEPSEEK_API_KEY\"",
        "api_key_file = \"run/deepseek.key\"",
    );
    let p = SecretPolicy::new(&Config::from_toml(&text).unwrap());
    for origin in [SecretOrigin::Applied, SecretOrigin::AdminApi] {
        assert_eq!(
            p.check_file("u", Path::new("run/deepseek.key"), origin),
            Ok(FileAccess::Named)
        );
    }
    assert!(
        p.check_file("u", Path::new("run/other.key"), SecretOrigin::Applied)
            .is_err()
    );
}

#[test]
fn connection_limits_are_checked_and_named() {
    let config = Config::from_toml(DESIGN_EXAMPLE).unwrap();
    assert_eq!(config.connections, ConnectionsConfig::default());
    let cases = [
        (
            "header_read_timeout_ms = 0",
            "connections.header_read_timeout_ms",
        ),
        ("body_timeout_ms = 0", "connections.body_timeout_ms"),
        ("idle_timeout_ms = 0", "connections.idle_timeout_ms"),
        ("idle_timeout_ms = 3600001", "connections.idle_timeout_ms"),
        (
            "h2_keepalive_interval_ms = 99999999999",
            "connections.h2_keepalive_interval_ms",
        ),
        ("max_connections = 0", "connections.max_connections"),
        (
            "admin_max_connections = 0",
            "connections.admin_max_connections",
        ),
        ("max_connections = 1000001", "connections.max_connections"),
        ("max_h2_streams = 0", "connections.max_h2_streams"),
        ("max_h2_streams = 65537", "connections.max_h2_streams"),
    ];
    for (line, field) in cases {
        let e = err(&format!("{DESIGN_EXAMPLE}\n[connections]\n{line}\n"));
        assert_eq!(e.field, field, "{line}: {e}");
    }
    for hostile in [
        "max_connections = -1",
        "max_h2_streams = 4294967296",
        "body_timeout_ms = \"1s\"",
    ] {
        // Refused with the line; the parser's field naming for type
        // errors is shared with every other section.
        let e = err(&format!("{DESIGN_EXAMPLE}\n[connections]\n{hostile}\n"));
        assert!(e.message.contains("line"), "{hostile}: {e}");
    }
    let e = err(&format!(
        "{DESIGN_EXAMPLE}\n[connections]\nmax_conections = 5\n"
    ));
    assert!(e.field.contains("max_conections"), "{e}");
    let ok = Config::from_toml(&format!(
        "{DESIGN_EXAMPLE}\n[connections]\nmax_connections = 5\nh2_keepalive_interval_ms = 0\n"
    ))
    .unwrap();
    assert_eq!(ok.connections.max_connections, 5);
    assert_eq!(ok.connections.idle_timeout_ms, 60_000);
}

#[test]
fn minimal_config_uses_defaults() {
    let config = Config::from_toml("[node]\nid = 7\nregion = \"eu\"\n").unwrap();
    assert_eq!(config.listen, ListenConfig::default());
    assert!(config.tls.is_none());
    assert!(config.routes.is_empty());
}

#[test]
fn upstream_kinds_and_their_settings_are_checked() {
    let with = |lines: &str| {
        DESIGN_EXAMPLE.replace(
            "api_key_env = \"DEEPSEEK_API_KEY\"\n",
            &format!("api_key_env = \"DEEPSEEK_API_KEY\"\n{lines}\n"),
        )
    };
    let ok = Config::from_toml(&with(
        "kind = \"anthropic\"\nanthropic_version = \"2023-06-01\"",
    ))
    .unwrap();
    assert_eq!(ok.upstreams[0].kind, UpstreamKind::Anthropic);
    assert!(
        Config::from_toml(&with("responses = true"))
            .unwrap()
            .upstreams[0]
            .responses
    );
    for (lines, field) in [
        ("kind = \"gemini\"", "upstreams[0].kind"),
        (
            "kind = \"anthropic\"\nauth = \"api-key\"",
            "upstreams[0].auth",
        ),
        (
            "kind = \"anthropic\"\nresponses = true",
            "upstreams[0].responses",
        ),
        (
            "kind = \"anthropic\"\nanthropic_version = \"latest\"",
            "upstreams[0].anthropic_version",
        ),
        (
            "kind = \"anthropic\"\nanthropic_version = \"2023-06-01\\r\\nx: y\"",
            "upstreams[0].anthropic_version",
        ),
        (
            "anthropic_version = \"2023-06-01\"",
            "upstreams[0].anthropic_version",
        ),
    ] {
        let e = err(&with(lines));
        assert!(
            e.field.starts_with(field),
            "{lines}: {} ({})",
            e.field,
            e.message
        );
    }
}

#[test]
fn anthropic_versions_are_dates_only() {
    assert!(check_anthropic_version("h", "2023-06-01").is_ok());
    for bad in [
        "",
        "2023-6-01",
        "2023-06-01 ",
        "2023/06/01",
        "20230601xx",
        "２０２３-06-01",
    ] {
        assert!(check_anthropic_version("h", bad).is_err(), "{bad:?}");
    }
}

#[test]
fn catalogue_and_azure_settings_are_checked() {
    let with = |lines: &str| {
        DESIGN_EXAMPLE.replace(
            "api_key_env = \"DEEPSEEK_API_KEY\"\n",
            &format!("api_key_env = \"DEEPSEEK_API_KEY\"\n{lines}\n"),
        )
    };
    let ok = Config::from_toml(&with(
        "aliases = [\"deepseek-ai\"]\nmodels = [\"deepseek-chat\"]\ndiscover_models = true\n\
         [upstreams.prices.deepseek-chat]\ninput_per_mtok = 0.27\noutput_per_mtok = 1.1\n\
         cached_input_per_mtok = 0.07",
    ))
    .unwrap();
    let u = &ok.upstreams[0];
    assert_eq!(u.aliases, ["deepseek-ai"]);
    assert_eq!(u.prices["deepseek-chat"].cached_input_per_mtok, Some(0.07));
    let azure = Config::from_toml(&with("kind = \"azure\"\napi_version = \"2024-10-21\"")).unwrap();
    assert_eq!(azure.upstreams[0].kind, UpstreamKind::Azure);
    assert!(
        Config::from_toml(&with(
            "kind = \"azure\"\napi_version = \"2025-04-01-preview\""
        ))
        .is_ok()
    );
    for (lines, field) in [
        ("aliases = [\"deepseek\"]", "upstreams[0].aliases[0]"),
        ("aliases = [\"openai\"]", "upstreams.deepseek.aliases[0]"),
        ("aliases = [\"a/b\"]", "upstreams[0].aliases[0]"),
        ("models = [\"a b\"]", "upstreams[0].models[0]"),
        ("models = [\"\"]", "upstreams[0].models[0]"),
        ("kind = \"azure\"", "upstreams[0].api_version"),
        (
            "kind = \"azure\"\napi_version = \"v1\"",
            "upstreams[0].api_version",
        ),
        ("api_version = \"2024-10-21\"", "upstreams[0].api_version"),
        (
            "kind = \"azure\"\napi_version = \"2024-10-21\"\nresponses = true",
            "upstreams[0].responses",
        ),
        (
            "[upstreams.prices.x]\ninput_per_mtok = -1.0",
            "upstreams[0].prices.x.input_per_mtok",
        ),
    ] {
        let e = err(&with(lines));
        assert_eq!(e.field, field, "{lines}: {}", e.message);
    }
}

#[test]
fn key_limits_parse_and_bad_ones_are_named() {
    let with = |fields: &str| {
        DESIGN_EXAMPLE.replace(
            "key_env = \"MERIDIAN_CLIENT_KEY\"\n",
            &format!("key_env = \"MERIDIAN_CLIENT_KEY\"\n{fields}\n"),
        )
    };
    let config = Config::from_toml(&with(
        "models = [\"fast\", \"deepseek/*\"]\nrpm = 600\ntpm = 200000\ncredits_usd = 25.0\nclass = \"pro\"",
    ))
    .unwrap();
    let limits = config.keys[0].limits().unwrap();
    assert_eq!(limits.rpm, Some(600));
    assert_eq!(limits.tpm, Some(200_000));
    assert_eq!(limits.credits_nanos, Some(25_000_000_000));
    assert_eq!(limits.class.as_deref(), Some("pro"));
    assert!(limits.allows("deepseek/deepseek-chat"));
    assert!(!limits.allows("openai/gpt-4o"));
    assert_eq!(config.tenants.usage_days, 90);
    for (fields, field) in [
        ("rpm = 0", "keys[0].rpm"),
        ("tpm = 0", "keys[0].tpm"),
        ("rpm = -1", "keys[0].rpm"),
        ("credits_usd = -1.0", "keys[0].credits_usd"),
        ("credits_usd = nan", "keys[0].credits_usd"),
        ("credits_usd = inf", "keys[0].credits_usd"),
        ("credits_usd = 1e12", "keys[0].credits_usd"),
        ("models = [\"\"]", "keys[0].models[0]"),
        ("models = [\"a b\"]", "keys[0].models[0]"),
        ("models = \"fast\"", "keys[0].models"),
        ("class = \"pro class\"", "keys[0].class"),
        ("class = \"\"", "keys[0].class"),
        ("rpm_limit = 5", "keys[0].rpm_limit"),
    ] {
        assert_eq!(err(&with(fields)).field, field, "{fields}");
    }
    let many = format!(
        "models = [{}]",
        vec!["\"m\""; crate::tenancy::MAX_ALLOWED_MODELS + 1].join(",")
    );
    assert_eq!(err(&with(&many)).field, "keys[0].models");
    assert_eq!(
        err(&format!("{DESIGN_EXAMPLE}\n[tenants]\nusage_days = 0\n")).field,
        "tenants.usage_days"
    );
}
