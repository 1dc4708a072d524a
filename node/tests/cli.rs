//! The `meridian` binary's configuration handling, as an operator meets it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::Command;

fn meridian(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .env_remove("MERIDIAN_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

/// A valid file as an operator writes it, which the bad-config cases below
/// break on purpose, as text.
const GOOD: &str = "[node]\nid = 1\nregion = \"eu\"\n\n[listen]\napi = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n[[upstreams]]\nid = \"a\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n[[routes]]\nmodel = \"m\"\ntiers = [[{ upstream = \"a\", model = \"x\" }]]\n";

/// What [`GOOD`] says, as a value, on a data dir of the test's own and
/// ephemeral ports: for the cases whose config is sound.
fn good(data_dir: &std::path::Path) -> proto::Config {
    let mut config = harness::config::node(1, "eu", data_dir);
    config
        .upstreams
        .push(harness::config::upstream("a", "http://127.0.0.1:9/v1"));
    config.routes.push(harness::config::route(
        "m",
        vec![vec![harness::config::target("a", "x")]],
    ));
    config
}

/// `config` written to a temporary file.
fn write_config(config: &proto::Config) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    harness::config::write(file.path(), config).unwrap();
    file
}

#[test]
fn a_bad_config_names_the_field_and_exits_64() {
    let cases = [
        (GOOD.replace("region", "regio"), "regio"),
        (
            GOOD.replace("upstream = \"a\"", "upstream = \"zz\""),
            "routes[0].tiers[0][0].upstream",
        ),
        (
            GOOD.replace("http://127.0.0.1:9/v1", "nope"),
            "upstreams[0].base_url",
        ),
        (
            GOOD.replace("api = \"127.0.0.1:0\"", "api = \"0.0.0.0:0\""),
            "listen.api",
        ),
    ];
    for (text, field) in cases {
        let file = write(&text);
        let path = file.path().to_str().unwrap();
        for args in [
            vec!["serve", "--config", path],
            vec!["config", "check", path],
        ] {
            let (code, _, stderr) = meridian(&args, &[]);
            assert_eq!(code, 64, "{args:?}: {stderr}");
            assert!(stderr.contains(field), "{field} not named in: {stderr}");
        }
    }
    let (code, _, stderr) = meridian(&["serve", "--config", "/nonexistent/meridian.toml"], &[]);
    assert_eq!(code, 64);
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn an_unset_client_key_variable_exits_64_naming_it() {
    let data = tempfile::tempdir().unwrap();
    let mut config = good(data.path());
    config.keys.push(proto::config::KeyConfig {
        name: "app".to_owned(),
        key_env: "TEST_SURELY_UNSET_KEY".to_owned(),
        ..Default::default()
    });
    let file = write_config(&config);
    let (code, _, stderr) = meridian(&["serve", "--config", file.path().to_str().unwrap()], &[]);
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("keys[0].key_env") && stderr.contains("TEST_SURELY_UNSET_KEY"),
        "{stderr}"
    );
}

#[test]
fn an_unset_or_weak_response_secret_exits_64_naming_it() {
    let data = tempfile::tempdir().unwrap();
    let mut config = good(data.path());
    config.responses.secret_env = Some("TEST_RESPONSE_SECRET".to_owned());
    let file = write_config(&config);
    let path = file.path().to_str().unwrap();
    for (env, says) in [
        (vec![], "not set"),
        (vec![("TEST_RESPONSE_SECRET", "short-secret")], "at least"),
        (
            vec![("TEST_RESPONSE_SECRET", "    padded-out       ")],
            "at least",
        ),
    ] {
        let (code, _, stderr) = meridian(&["serve", "--config", path], &env);
        assert_eq!(code, 64, "{env:?}: {stderr}");
        assert!(
            stderr.contains("responses.secret_env")
                && stderr.contains("TEST_RESPONSE_SECRET")
                && stderr.contains(says),
            "{env:?}: {stderr}"
        );
        for (_, value) in env {
            assert!(
                !stderr.contains(value.trim()),
                "the secret was printed: {stderr}"
            );
        }
    }
    // While rotating, the previous secret is held to the same rules.
    config.responses.previous_secret_env = Some("TEST_RESPONSE_SECRET_OLD".to_owned());
    let file = write_config(&config);
    let path = file.path().to_str().unwrap();
    let current = (
        "TEST_RESPONSE_SECRET",
        "a-current-secret-of-enough-length-0123",
    );
    for (env, says) in [
        (vec![current], "not set"),
        (
            vec![current, ("TEST_RESPONSE_SECRET_OLD", "old-and-short")],
            "at least",
        ),
    ] {
        let (code, _, stderr) = meridian(&["serve", "--config", path], &env);
        assert_eq!(code, 64, "{env:?}: {stderr}");
        assert!(
            stderr.contains("responses.previous_secret_env")
                && stderr.contains("TEST_RESPONSE_SECRET_OLD")
                && stderr.contains(says),
            "{env:?}: {stderr}"
        );
        assert!(!stderr.contains("old-and-short") && !stderr.contains(current.1));
    }
}

#[test]
fn a_public_admin_listener_needs_a_token() {
    let file = write(&GOOD.replace("admin = \"127.0.0.1:0\"", "admin = \"0.0.0.0:0\""));
    let (code, _, stderr) = meridian(&["serve", "--config", file.path().to_str().unwrap()], &[]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("admin.token_env"), "{stderr}");
}

/// A data dir whose store was written in an older storage format (version
/// 1: the store's byte before it shared the wire's codec) stops `serve`
/// with an error naming the dir and both versions, instead of misreading it.
#[test]
fn a_data_dir_of_an_older_storage_format_is_refused() {
    let data = tempfile::tempdir().unwrap();
    {
        let db = raft::store::open_db(&data.path().join("raft")).unwrap();
        let mut value = proto::codec::encode_value(&raft::store::Applied::default()).unwrap();
        value[0] = 1;
        db.open_tree("sm")
            .unwrap()
            .insert("applied", value)
            .unwrap();
        db.flush().unwrap();
    }
    let file = write_config(&good(data.path()));
    let (code, _, stderr) = meridian(&["serve", "--config", file.path().to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{stderr}");
    let dir = data.path().join("raft").display().to_string();
    assert!(
        stderr.contains(&dir)
            && stderr.contains("storage format version 1")
            && stderr.contains(&format!("version {}", proto::codec::VERSION)),
        "{stderr}"
    );
}

#[test]
fn config_check_and_default() {
    let file = write(GOOD);
    let (code, stdout, _) = meridian(&["config", "check", file.path().to_str().unwrap()], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("valid (1 upstreams, 1 routes"), "{stdout}");
    let (code, stdout, _) = meridian(&["config", "default"], &[]);
    assert_eq!(code, 0);
    assert!(proto::Config::from_toml(&stdout).is_ok());
}
