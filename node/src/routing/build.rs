//! Building a snapshot from the applied state: each upstream with its URIs,
//! key header and pools, each route with its targets, and the `/v1/models`
//! answer. What one node cannot use of a committed upstream (a key it may
//! not or cannot read, a CA file that is not PEM) disables that upstream on
//! that node alone ([`Disabled`]), naming the field, and the rest of the
//! table is built; what makes the table itself wrong (a route naming no
//! upstream, a region that is not a header value, a client key not set)
//! fails the build ([`BuildError`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Uri};
use proto::FieldError;
use proto::config::{Config, ProxyConfig, SecretOrigin, SecretPolicy, UpstreamConfig};
use serde::Serialize;

use super::live::Live;
use super::secrets::{LocalTrust, Secrets, provider_key, resolve_keys};
use super::{Endpoint, KeyState, Price, Route, RoutingSnapshot, Target, Upstream};
use crate::auth::{KeyHash, KeyRing};
use crate::hedge::Hedge;
use crate::metrics::Metrics;
use crate::request_body::json_string;
use crate::scrub::Scrubber;
use crate::upstream;

/// Why an upstream is not used on this node, and the field to fix: a
/// committed upstream one node cannot use (its key missing or unreadable
/// here, its CA file not PEM, a key reference this node's `[secrets]` does
/// not allow) is disabled on that node alone, and the rest of the change
/// applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disabled {
    /// The upstream's field at fault: `api_key_env`, `api_key_file`, `ca_file`, …
    pub field: &'static str,
    /// What is wrong, in words an operator can act on (never the key).
    pub reason: String,
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A configuration value cannot be used (names the field).
    #[error(transparent)]
    Invalid(#[from] FieldError),
}

impl RoutingSnapshot {
    /// Builds a snapshot from a configuration file, reusing the upstreams of
    /// `previous` whose configuration is unchanged.
    pub fn build(
        config: &Config,
        secrets: &dyn Secrets,
        previous: Option<&RoutingSnapshot>,
    ) -> Result<Self, BuildError> {
        let keys = resolve_keys(config, secrets)?;
        Self::build_with_keys(config, keys, secrets, previous, &LocalTrust::new(config))
    }

    /// Builds a snapshot whose client keys are already hashed, as the
    /// replicated state holds them; `config.keys` is ignored, and `trust`
    /// comes from the node's own file (`config` may carry the cluster's
    /// upstreams).
    pub fn build_with_keys(
        config: &Config,
        keys: Vec<(String, KeyHash)>,
        secrets: &dyn Secrets,
        previous: Option<&RoutingSnapshot>,
        trust: &LocalTrust,
    ) -> Result<Self, BuildError> {
        let invalid = |field: String, message: String| FieldError::new(field, message);
        let region = HeaderValue::from_str(&config.node.region)
            .map_err(|_| invalid("node.region".into(), "must be a header-safe string".into()))?;

        let metrics = previous.map(|p| p.metrics.clone()).unwrap_or_default();
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        let mut by_id: HashMap<&str, Arc<Upstream>> = HashMap::new();
        for uc in &config.upstreams {
            // A disabled upstream is built again: its key file or CA may
            // have been fixed since.
            let reused = previous
                .and_then(|p| p.upstreams.iter().find(|u| u.config == *uc && u.usable()))
                .cloned();
            let upstream = match reused {
                Some(u) => u,
                None => Arc::new(build_upstream(
                    uc,
                    &config.proxy,
                    secrets,
                    &trust.policy,
                    &metrics,
                )?),
            };
            by_id.insert(uc.id.as_str(), upstream.clone());
            upstreams.push(upstream);
        }

        let mut routes = HashMap::with_capacity(config.routes.len());
        for (i, rc) in config.routes.iter().enumerate() {
            let name: Arc<str> = Arc::from(rc.model.as_str());
            let route_metrics = metrics.route(&name);
            let mut tiers = Vec::with_capacity(rc.tiers.len());
            for (t, tier) in rc.tiers.iter().enumerate() {
                let mut targets = Vec::with_capacity(tier.len());
                for (j, tc) in tier.iter().enumerate() {
                    let upstream = by_id.get(tc.upstream.as_str()).cloned().ok_or_else(|| {
                        invalid(
                            format!("routes[{i}].tiers[{t}][{j}].upstream"),
                            format!("no upstream with id `{}`", tc.upstream),
                        )
                    })?;
                    targets.push(Target {
                        model: Arc::from(tc.model.as_str()),
                        model_json: json_string(&tc.model),
                        price: Price {
                            input_per_mtok: tc.input_per_mtok,
                            output_per_mtok: tc.output_per_mtok,
                        },
                        metrics: route_metrics.target(&upstream.id),
                        upstream,
                    });
                }
                tiers.push(targets);
            }
            let route = Route {
                name: name.clone(),
                tiers,
                max_attempts: rc.max_attempts.unwrap_or(config.proxy.max_attempts),
                first_byte_timeout: Duration::from_millis(
                    rc.first_byte_timeout_ms
                        .unwrap_or(config.proxy.first_byte_timeout_ms),
                ),
                request_timeout: Duration::from_millis(
                    rc.request_timeout_ms
                        .unwrap_or(config.proxy.request_timeout_ms),
                ),
                error_threshold: rc.error_threshold.unwrap_or(config.health.error_threshold),
                hedge: rc.hedge.as_ref().map(|h| {
                    Hedge::new(h.quantile, Duration::from_millis(h.min_delay_ms), h.budget)
                }),
                metrics: route_metrics,
            };
            routes.insert(name, Arc::new(route));
        }

        Ok(Self {
            scrub: Scrubber::for_upstreams(&upstreams, previous.map(|p| &p.scrub)),
            region,
            keys: KeyRing::new(keys).open_when_empty(trust.open_without_keys),
            models_body: models_body(config),
            routes,
            upstreams,
            proxy: config.proxy.clone(),
            health: config.health.clone(),
            applied_index: None,
            metrics,
        })
    }
}

fn models_body(config: &Config) -> Bytes {
    #[derive(Serialize)]
    struct Model<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        owned_by: &'static str,
    }
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<Model<'a>>,
    }
    let mut data: Vec<Model<'_>> = config
        .routes
        .iter()
        .map(|r| Model {
            id: &r.model,
            object: "model",
            created: 0,
            owned_by: "meridian",
        })
        .collect();
    data.sort_by(|a, b| a.id.cmp(b.id));
    Bytes::from(
        serde_json::to_vec(&List {
            object: "list",
            data,
        })
        .unwrap_or_default(),
    )
}

/// Builds one upstream. What this node cannot use (a key it may not read or
/// cannot read, a key that is not a valid header value, a CA file that is
/// not PEM) disables the upstream here, naming the field; it never fails
/// the whole table.
fn build_upstream(
    uc: &UpstreamConfig,
    proxy: &ProxyConfig,
    secrets: &dyn Secrets,
    policy: &SecretPolicy,
    metrics: &Metrics,
) -> Result<Upstream, BuildError> {
    let mut disabled: Option<Disabled> = None;
    let mut disable = |field: &'static str, reason: String| {
        disabled.get_or_insert(Disabled { field, reason });
    };
    let base = uc.base_url.trim_end_matches('/');
    let uris: [Uri; 3] = Endpoint::ALL.map(|endpoint| {
        format!("{base}{}", endpoint.suffix())
            .parse()
            .unwrap_or_else(|e| {
                disable("base_url", format!("not a URL: {e}"));
                Uri::default()
            })
    });

    let (auth, key_state) = match provider_key(uc, secrets, policy, SecretOrigin::Applied) {
        Ok(None) => (None, KeyState::NotNeeded),
        Ok(Some(header)) => (Some(header), KeyState::Present),
        Err((field, reason)) => {
            disable(field, reason.clone());
            (None, KeyState::Missing(reason))
        }
    };
    let pools = match upstream::pools_for(uc, proxy) {
        Ok(pools) => pools,
        Err(e) => {
            disable(e.field(), e.to_string());
            // Never used while disabled, but every upstream has pools.
            let plain = UpstreamConfig {
                ca_file: None,
                ..uc.clone()
            };
            // Only rustls refusing its own defaults fails this: no
            // upstream's input can, so it fails the table as before.
            upstream::pools_for(&plain, proxy).map_err(|e| {
                FieldError::new(format!("upstreams.{}.{}", uc.id, e.field()), e.to_string())
            })?
        }
    };
    let id_header = HeaderValue::from_str(&uc.id).unwrap_or_else(|_| {
        disable("id", "must be a header-safe string".to_owned());
        HeaderValue::from_static("invalid")
    });
    let id: Arc<str> = Arc::from(uc.id.as_str());
    Ok(Upstream {
        metrics: metrics.upstream(&id),
        id,
        id_header,
        region: Arc::from(uc.region.as_str()),
        config: uc.clone(),
        uris,
        auth,
        key_state,
        disabled,
        pools,
        live: Live::default(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::super::fixtures::{CONFIG, FakeEnv, build};
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn builds_uris_keys_and_routes() {
        let snap = build(&[
            ("CLIENT_KEY", "client-key-0123456789"),
            ("A_KEY", "ka"),
            ("B_KEY", "kb"),
        ])
        .unwrap();
        let fast = snap.route("fast").unwrap();
        assert_eq!(fast.tiers.len(), 2);
        let a = &fast.tiers[0][0].upstream;
        assert_eq!(
            a.uri(Endpoint::ChatCompletions),
            "http://127.0.0.1:1/v1/chat/completions"
        );
        let (name, value) = a.auth_header().unwrap();
        assert_eq!(name, "authorization");
        assert_eq!(value, "Bearer ka");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("ka"));
        let b = &fast.tiers[1][0].upstream;
        assert_eq!(
            b.uri(Endpoint::Embeddings),
            "https://b.example/openai/v1/embeddings"
        );
        assert_eq!(b.auth_header().unwrap().0, "api-key");
        assert_eq!(fast.tiers[1][0].model_json, "\"b-small\"");
        assert_eq!(fast.tiers[1][0].price.input_per_mtok, 1.5);
        assert!(snap.ready());
        let models: serde_json::Value = serde_json::from_slice(&snap.models_body).unwrap();
        assert_eq!(models["data"][0]["id"], "b-only");
        assert_eq!(models["data"][1]["id"], "fast");
    }

    #[tokio::test]
    async fn missing_provider_key_makes_upstream_unusable() {
        let snap = build(&[("CLIENT_KEY", "client-key-0123456789"), ("A_KEY", "ka")]).unwrap();
        assert!(snap.route("fast").unwrap().usable());
        assert!(!snap.route("b-only").unwrap().usable());
        assert!(
            matches!(snap.upstreams[1].key_state, KeyState::Missing(ref m) if m.contains("B_KEY"))
        );
    }

    fn upstream_with(extra: &str, secrets: &str) -> Upstream {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Config::from_toml(&format!(
            "[node]\nid = 1\nregion = \"r\"\n\n{secrets}\n[[upstreams]]\nid = \"u\"\nbase_url = \"http://127.0.0.1:1/v1\"\n{extra}\n"
        ))
        .unwrap();
        // The reference arrives through the cluster: the node's own file
        // names no upstream, so only [secrets] decides.
        let mut own = config.clone();
        own.upstreams.clear();
        let env = FakeEnv(
            [
                ("ALLOWED_KEY", "sk-allowed"),
                ("BROKEN_KEY", "sk-broken\nX-Injected: 1"),
                ("MERIDIAN_ADMIN_TOKEN", "admin-token-0123456789"),
            ]
            .into_iter()
            .collect(),
        );
        build_upstream(
            &config.upstreams[0],
            &config.proxy,
            &env,
            &SecretPolicy::new(&own),
            &Metrics::default(),
        )
        .unwrap()
    }

    fn disabled_field(u: &Upstream) -> &'static str {
        u.disabled
            .as_ref()
            .expect("the upstream should be disabled")
            .field
    }

    #[tokio::test]
    async fn what_a_node_cannot_use_disables_that_upstream_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        let secrets = format!(
            "[secrets]\nenv = [\"ALLOWED_KEY\", \"BROKEN_KEY\"]\nenv_prefix = \"MERIDIAN_\"\ndir = \"{}\"\n",
            keys.display()
        );
        let write = |name: &str, text: &str| {
            let path = keys.join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let good = write("good", "sk-from-file\n");
        let newline = write("newline", "sk-first\nsk-second\n");
        let empty = write("empty", " \n");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "sk-outside").unwrap();
        std::os::unix::fs::symlink(&outside, keys.join("link-out")).unwrap();
        let not_pem = write("not-pem", "hello");

        let ok = upstream_with(&format!("api_key_file = \"{good}\""), &secrets);
        assert!(ok.usable(), "{:?}", ok.disabled);
        assert_eq!(ok.auth_header().unwrap().1, "Bearer sk-from-file");
        assert!(upstream_with("api_key_env = \"ALLOWED_KEY\"", &secrets).usable());

        for (extra, field) in [
            (format!("api_key_file = \"{newline}\""), "api_key_file"),
            (format!("api_key_file = \"{empty}\""), "api_key_file"),
            (
                format!("api_key_file = \"{}\"", keys.join("absent").display()),
                "api_key_file",
            ),
            (
                format!("api_key_file = \"{}\"", keys.join("link-out").display()),
                "api_key_file",
            ),
            (
                format!("api_key_file = \"{}\"", outside.display()),
                "api_key_file",
            ),
            ("api_key_file = \"/etc/passwd\"".to_owned(), "api_key_file"),
            ("api_key_env = \"BROKEN_KEY\"".to_owned(), "api_key_env"),
            ("api_key_env = \"UNLISTED_KEY\"".to_owned(), "api_key_env"),
            (
                "api_key_env = \"MERIDIAN_ADMIN_TOKEN\"".to_owned(),
                "api_key_env",
            ),
            ("ca_file = \"/surely/not/here.pem\"".to_owned(), "ca_file"),
            (format!("ca_file = \"{not_pem}\""), "ca_file"),
            ("ca_file = \"/dev/zero\"".to_owned(), "ca_file"),
        ] {
            let u = upstream_with(&extra, &secrets);
            assert_eq!(disabled_field(&u), field, "{extra}");
            assert!(u.auth_header().is_none(), "{extra}: no key is sent");
            let reason = &u.disabled.as_ref().unwrap().reason;
            for secret in ["sk-first", "sk-outside", "sk-broken", "admin-token"] {
                assert!(!reason.contains(secret), "{extra}: {reason}");
            }
        }
        // Nothing is allowed without [secrets].
        assert_eq!(
            disabled_field(&upstream_with(&format!("api_key_file = \"{good}\""), "")),
            "api_key_file"
        );
    }

    #[tokio::test]
    async fn one_unusable_upstream_leaves_the_rest_of_the_table() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Config::from_toml(&CONFIG.replace(
            "auth = \"api-key\"",
            "auth = \"api-key\"\nca_file = \"/surely/not/here.pem\"",
        ))
        .unwrap();
        let env = FakeEnv(
            [
                ("CLIENT_KEY", "client-key-0123456789"),
                ("A_KEY", "ka"),
                ("B_KEY", "kb"),
            ]
            .into_iter()
            .collect(),
        );
        let snap = RoutingSnapshot::build(&config, &env, None).unwrap();
        assert!(snap.route("fast").unwrap().usable());
        assert!(!snap.route("b-only").unwrap().usable());
        assert_eq!(disabled_field(&snap.upstreams[1]), "ca_file");
        // A disabled upstream is built again at the next change.
        let again = RoutingSnapshot::build(&config, &env, Some(&snap)).unwrap();
        assert!(Arc::ptr_eq(&snap.upstreams[0], &again.upstreams[0]));
        assert!(!Arc::ptr_eq(&snap.upstreams[1], &again.upstreams[1]));
    }

    #[tokio::test]
    async fn rebuild_keeps_unchanged_upstreams() {
        let env = FakeEnv(
            [
                ("CLIENT_KEY", "client-key-0123456789"),
                ("A_KEY", "ka"),
                ("B_KEY", "kb"),
            ]
            .into_iter()
            .collect(),
        );
        let config = Config::from_toml(CONFIG).unwrap();
        let first = RoutingSnapshot::build(&config, &env, None).unwrap();
        let mut changed = config.clone();
        changed.upstreams[1].base_url = "https://c.example/v1".into();
        let second = RoutingSnapshot::build(&changed, &env, Some(&first)).unwrap();
        assert!(Arc::ptr_eq(&first.upstreams[0], &second.upstreams[0]));
        assert!(!Arc::ptr_eq(&first.upstreams[1], &second.upstreams[1]));
    }
}
