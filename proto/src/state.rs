//! The replicated cluster state and the commands that change it.
//!
//! Every node applies the same committed commands in the same order, so
//! [`ClusterState::apply`] must be deterministic: no clock, no I/O, no
//! randomness, and the same validation as a configuration file. A command that
//! would leave the state inconsistent (a route to an unknown upstream, an
//! upstream still used by a route) is answered with a rejection and changes
//! nothing. The admin API validates before proposing, so a rejection here
//! only happens when two conflicting writes race.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{RouteConfig, UpstreamConfig, check_model_name, check_name, check_prefixes};
use crate::error::FieldError;
use crate::health::HealthReport;
use crate::tenancy::{KeyLimits, Tenancy, TenantReport};

/// A cluster member as Raft records it: where to reach it and what it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Raft over QUIC address, `host:port`.
    pub raft_addr: String,
    /// Admin API address, `host:port`, for operators and forwarding.
    pub admin_addr: String,
    /// The region it serves.
    pub region: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, admin {})",
            self.raft_addr, self.region, self.admin_addr
        )
    }
}

/// A client key as the cluster stores it: its holder and a SHA-256 digest in
/// lowercase hex. The key itself never enters the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Who holds the key.
    pub name: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    /// What the key may use: models, rates, credits, class.
    pub limits: KeyLimits,
}

/// A change to the replicated state; one Raft log entry each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// The upstreams, routes and keys of the bootstrap configuration. Applied
    /// once, when the cluster is new (adding only what is not there yet);
    /// ignored after that.
    Seed {
        /// Upstreams of the seed file.
        upstreams: Vec<UpstreamConfig>,
        /// Routes of the seed file.
        routes: Vec<RouteConfig>,
        /// Client keys of the seed file, hashed.
        keys: Vec<KeyRecord>,
    },
    /// Add or replace an upstream.
    PutUpstream(UpstreamConfig),
    /// Remove an upstream no route uses.
    DeleteUpstream {
        /// Its id.
        id: String,
    },
    /// Add or replace a route.
    PutRoute(RouteConfig),
    /// Remove a route.
    DeleteRoute {
        /// Its model name.
        model: String,
    },
    /// Add or replace a client key.
    PutKey(KeyRecord),
    /// Remove a client key.
    DeleteKey {
        /// Its holder's name.
        name: String,
    },
    /// A member says where its admin API is and which region it serves.
    /// (Raft's membership holds only Raft addresses: it must be identical on
    /// every node that bootstraps, and only a node knows its own admin address.)
    Announce {
        /// The member's id.
        id: u64,
        /// What it announces.
        info: NodeInfo,
    },
    /// A member's latest health window. Replaces the member's previous
    /// report if its sequence number is higher, else is ignored (a late
    /// duplicate, or a report overtaken by a newer one). Written by earlier
    /// builds, which carried health in the log; still applied so that their
    /// logs replay, but no longer proposed: members now send each other
    /// their reports directly (`raft::network::RaftRequest::Health`), which
    /// keeps the log, and the leader's one AppendEntries in flight per
    /// follower, for configuration.
    Report {
        /// The reporting member's id.
        id: u64,
        /// What it measured.
        report: HealthReport,
    },
    /// The models an upstream with `discover_models` listed when the leader
    /// last asked it: replaces the previous list (a failed fetch commits
    /// nothing, so a provider's outage never empties the catalogue).
    PutCatalogue {
        /// The upstream's id.
        upstream: String,
        /// Its model names, as it listed them.
        models: Vec<String>,
    },
    /// Adds to a key's prepaid balance. `id` makes a retried top-up count
    /// once.
    AddCredits {
        /// The key holder's name.
        key: String,
        /// Chosen by whoever tops up; the same id again changes nothing.
        id: String,
        /// The amount, in nanodollars.
        nanos: u64,
    },
    /// A member's demand, spending and usage per key since it started
    /// ([`crate::tenancy::ledger`]).
    Tenancy {
        /// The reporting member's id.
        id: u64,
        /// What it reports.
        report: TenantReport,
    },
}

/// The most models one upstream's discovered catalogue may hold: a provider
/// that lists a million cannot bloat every node's state and snapshot.
pub const MAX_CATALOGUE_MODELS: usize = 10_000;

/// What a member announces about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its admin API address.
    pub admin_addr: String,
    /// The region it serves.
    pub region: String,
}

impl NodeInfo {
    /// Whether a member's announcement is one a Meridian node makes: an IP
    /// address and port, and a region as the configuration allows it. Both
    /// become labels and links in the admin API and the dashboard, and the
    /// state keeps them on every node.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.admin_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(FieldError::new(
                "info.admin_addr",
                "must be an IP address and port",
            ));
        }
        check_name("info.region", &self.region)
    }
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Applied; `changed` is false when the state already was so.
    Applied {
        /// Whether anything changed.
        changed: bool,
    },
    /// Refused, naming the offending field; nothing changed. (Encoded as
    /// the struct variant `Rejected { field, message }` was: bincode writes
    /// the two strings in the same order either way.)
    Rejected(FieldError),
}

impl CommandResponse {
    fn rejected(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Rejected(FieldError::new(field, message))
    }
}

/// Everything the cluster agrees on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Whether the seed has been applied.
    pub seeded: bool,
    /// Upstreams by id.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Routes by model name.
    pub routes: BTreeMap<String, RouteConfig>,
    /// Client keys by holder name.
    pub keys: BTreeMap<String, KeyRecord>,
    /// What each member announced about itself.
    pub nodes: BTreeMap<u64, NodeInfo>,
    /// The latest health report of each member that put one in the log
    /// (earlier builds; see [`Command::Report`]). Nothing reads it now.
    pub health: BTreeMap<u64, HealthReport>,
    /// The models each upstream with `discover_models` listed, sorted.
    pub catalogue: BTreeMap<String, Vec<String>>,
    /// Credits, usage and demand per key.
    pub tenancy: Tenancy,
}

impl ClusterState {
    /// Applies one committed command. Deterministic: the same state and
    /// command give the same result on every node.
    pub fn apply(&mut self, command: &Command) -> CommandResponse {
        match command {
            Command::Seed {
                upstreams,
                routes,
                keys,
            } => {
                if self.seeded {
                    return CommandResponse::Applied { changed: false };
                }
                // Fill in what is absent: a write acknowledged before the
                // seed was applied must survive it.
                let mut next = self.clone();
                next.seeded = true;
                for u in upstreams {
                    next.upstreams
                        .entry(u.id.clone())
                        .or_insert_with(|| u.clone());
                }
                for r in routes {
                    next.routes
                        .entry(r.model.clone())
                        .or_insert_with(|| r.clone());
                }
                for k in keys {
                    next.keys.entry(k.name.clone()).or_insert_with(|| k.clone());
                }
                if let Err(e) = next.check() {
                    return CommandResponse::Rejected(e);
                }
                for k in next.keys.values() {
                    if let Some(opening) = k.limits.credits_nanos {
                        next.tenancy.open(&k.name, opening);
                    }
                }
                *self = next;
                CommandResponse::Applied { changed: true }
            }
            Command::PutUpstream(u) => {
                if let Err(e) = u.validate("upstream") {
                    return CommandResponse::Rejected(e);
                }
                let others = self.upstreams.values().filter(|other| other.id != u.id);
                if let Err(e) = check_prefixes(others.chain([u]), "upstreams") {
                    return CommandResponse::Rejected(e);
                }
                let changed = self.upstreams.get(&u.id) != Some(u);
                // A list discovered before discovery was switched off is
                // no longer the upstream's word.
                if !u.discover_models {
                    self.catalogue.remove(&u.id);
                }
                self.upstreams.insert(u.id.clone(), u.clone());
                CommandResponse::Applied { changed }
            }
            Command::DeleteUpstream { id } => {
                let users: Vec<&str> = self
                    .routes
                    .values()
                    .filter(|r| r.tiers.iter().flatten().any(|t| &t.upstream == id))
                    .map(|r| r.model.as_str())
                    .collect();
                if !users.is_empty() {
                    return CommandResponse::rejected(
                        "id",
                        format!("upstream `{id}` is used by routes: {}", users.join(", ")),
                    );
                }
                self.catalogue.remove(id);
                CommandResponse::Applied {
                    changed: self.upstreams.remove(id).is_some(),
                }
            }
            Command::PutRoute(r) => {
                if let Err(e) = r.validate("route", |id| self.upstreams.contains_key(id)) {
                    return CommandResponse::Rejected(e);
                }
                let changed = self.routes.get(&r.model) != Some(r);
                self.routes.insert(r.model.clone(), r.clone());
                CommandResponse::Applied { changed }
            }
            Command::DeleteRoute { model } => CommandResponse::Applied {
                changed: self.routes.remove(model).is_some(),
            },
            Command::PutKey(k) => {
                if let Err(e) = check_key(k) {
                    return CommandResponse::rejected(format!("key.{}", e.field), e.message);
                }
                let mut changed = self.keys.get(&k.name) != Some(k);
                if let Some(opening) = k.limits.credits_nanos {
                    changed |= self.tenancy.open(&k.name, opening);
                }
                self.keys.insert(k.name.clone(), k.clone());
                CommandResponse::Applied { changed }
            }
            Command::DeleteKey { name } => {
                // An empty key ring would open the data plane of a node on
                // loopback: once keys exist, one always stays.
                if self.keys.len() == 1 && self.keys.contains_key(name) {
                    return CommandResponse::rejected("name", LAST_KEY);
                }
                CommandResponse::Applied {
                    changed: self.keys.remove(name).is_some(),
                }
            }
            Command::Announce { id, info } => {
                if let Err(e) = info.check() {
                    return CommandResponse::Rejected(e);
                }
                let changed = self.nodes.get(id) != Some(info);
                self.nodes.insert(*id, info.clone());
                CommandResponse::Applied { changed }
            }
            Command::Report { id, report } => {
                let newer = self.health.get(id).is_none_or(|r| r.seq < report.seq);
                if newer {
                    self.health.insert(*id, report.clone());
                }
                CommandResponse::Applied { changed: newer }
            }
            Command::PutCatalogue { upstream, models } => {
                // The upstream may have been deleted, or its discovery
                // switched off, between the fetch and the commit.
                if !self
                    .upstreams
                    .get(upstream)
                    .is_some_and(|u| u.discover_models)
                {
                    return CommandResponse::rejected(
                        "upstream",
                        format!("upstream `{upstream}` does not discover its models"),
                    );
                }
                if models.len() > MAX_CATALOGUE_MODELS {
                    return CommandResponse::rejected(
                        "models",
                        format!("more than {MAX_CATALOGUE_MODELS} models"),
                    );
                }
                for model in models {
                    if let Err(e) = check_model_name("models", model) {
                        return CommandResponse::Rejected(e);
                    }
                }
                let mut sorted = models.clone();
                sorted.sort();
                sorted.dedup();
                let changed = self.catalogue.get(upstream) != Some(&sorted);
                self.catalogue.insert(upstream.clone(), sorted);
                CommandResponse::Applied { changed }
            }
            Command::AddCredits { key, id, nanos } => {
                if !self.keys.contains_key(key) {
                    return CommandResponse::rejected("key", format!("no key named `{key}`"));
                }
                match self.tenancy.top_up(key, id, *nanos) {
                    Ok(changed) => CommandResponse::Applied { changed },
                    Err(e) => CommandResponse::Rejected(e),
                }
            }
            Command::Tenancy { id, report } => match self.tenancy.report(*id, report) {
                Ok(changed) => CommandResponse::Applied { changed },
                Err(e) => CommandResponse::Rejected(e),
            },
        }
    }

    /// Whether `other` differs in what the routing table is built from
    /// (upstreams, routes, keys): health reports arrive every second and
    /// must not rebuild it.
    pub fn routing_differs(&self, other: &ClusterState) -> bool {
        self.upstreams != other.upstreams
            || self.routes != other.routes
            || self.keys != other.keys
            || self.catalogue != other.catalogue
    }

    /// Checks the whole state for consistency, naming the first problem.
    fn check(&self) -> Result<(), FieldError> {
        for (id, u) in &self.upstreams {
            u.validate(&format!("upstreams.{id}"))?;
        }
        check_prefixes(self.upstreams.values(), "upstreams")?;
        for (model, r) in &self.routes {
            r.validate(&format!("routes.{model}"), |id| {
                self.upstreams.contains_key(id)
            })?;
        }
        for k in self.keys.values() {
            check_key(k)
                .map_err(|e| FieldError::new(format!("keys.{}.{}", k.name, e.field), e.message))?;
        }
        Ok(())
    }
}

/// Why the last client key cannot be deleted.
pub const LAST_KEY: &str = "this is the last client key: without one, a node accepts every \
     request on loopback and none elsewhere; put another key first";

fn check_key(k: &KeyRecord) -> Result<(), FieldError> {
    let names_ok = !k.name.is_empty() && k.name.len() <= 64;
    let hash_ok = k.sha256.len() == 64
        && k.sha256
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    match (names_ok, hash_ok) {
        (false, _) => Err(FieldError::new("name", "must be 1 to 64 characters")),
        (_, false) => Err(FieldError::new("sha256", "must be 64 lowercase hex digits")),
        _ => k.limits.validate("limits"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::config::TargetConfig;

    fn upstream(id: &str) -> UpstreamConfig {
        UpstreamConfig {
            id: id.into(),
            base_url: format!("https://{id}.example/v1"),
            region: "r".into(),
            api_key_env: Some("K".into()),
            api_key_file: None,
            auth: Default::default(),
            http2: false,
            ca_file: None,
            ..Default::default()
        }
    }

    fn route(model: &str, upstream: &str) -> RouteConfig {
        RouteConfig {
            model: model.into(),
            tiers: vec![vec![TargetConfig {
                upstream: upstream.into(),
                model: "x".into(),
                input_per_mtok: 0.0,
                output_per_mtok: 0.0,
                cached_input_per_mtok: None,
            }]],
            max_attempts: None,
            first_byte_timeout_ms: None,
            request_timeout_ms: None,
            error_threshold: None,
            hedge: None,
        }
    }

    fn key(name: &str) -> KeyRecord {
        KeyRecord {
            name: name.into(),
            sha256: "ab".repeat(32),
            limits: KeyLimits::default(),
        }
    }

    fn rejected(r: CommandResponse) -> String {
        match r {
            CommandResponse::Rejected(e) => e.field,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn an_announcement_no_node_makes_is_refused() {
        let mut state = ClusterState::default();
        let announce = |admin_addr: &str, region: &str| Command::Announce {
            id: 2,
            info: NodeInfo {
                admin_addr: admin_addr.into(),
                region: region.into(),
            },
        };
        assert_eq!(
            state.apply(&announce("10.0.0.2:9091", "eu-west")),
            CommandResponse::Applied { changed: true }
        );
        let long = "r".repeat(65);
        for (bad, field) in [
            (announce("", "eu"), "info.admin_addr"),
            (announce("host.example:9091", "eu"), "info.admin_addr"),
            (announce("10.0.0.2:9091\n<script>", "eu"), "info.admin_addr"),
            (announce(&"9".repeat(1 << 16), "eu"), "info.admin_addr"),
            (announce("10.0.0.2:9091", ""), "info.region"),
            (announce("10.0.0.2:9091", &long), "info.region"),
            (announce("10.0.0.2:9091", "eu\u{7}"), "info.region"),
        ] {
            assert_eq!(rejected(state.apply(&bad)), field);
        }
        assert_eq!(
            state.nodes[&2].region, "eu-west",
            "nothing refused was kept"
        );
    }

    #[test]
    fn newer_reports_replace_older_ones() {
        let mut s = ClusterState::default();
        let report = |seq| Command::Report {
            id: 2,
            report: HealthReport {
                seq,
                region: "eu".into(),
                ..HealthReport::default()
            },
        };
        assert_eq!(
            s.apply(&report(5)),
            CommandResponse::Applied { changed: true }
        );
        assert_eq!(
            s.apply(&report(4)),
            CommandResponse::Applied { changed: false }
        );
        assert_eq!(
            s.apply(&report(5)),
            CommandResponse::Applied { changed: false }
        );
        assert_eq!(s.health[&2].seq, 5);
        let before = s.clone();
        assert_eq!(
            s.apply(&report(6)),
            CommandResponse::Applied { changed: true }
        );
        assert_eq!(s.health[&2].seq, 6);
        assert!(
            !before.routing_differs(&s),
            "a report does not touch routing"
        );
        s.apply(&Command::PutUpstream(upstream("a")));
        assert!(before.routing_differs(&s));
    }

    #[test]
    fn seed_applies_once() {
        let mut s = ClusterState::default();
        let seed = Command::Seed {
            upstreams: vec![upstream("a")],
            routes: vec![route("m", "a")],
            keys: vec![key("app")],
        };
        assert_eq!(s.apply(&seed), CommandResponse::Applied { changed: true });
        s.apply(&Command::DeleteRoute { model: "m".into() });
        assert_eq!(s.apply(&seed), CommandResponse::Applied { changed: false });
        assert!(
            s.routes.is_empty(),
            "a second seed must not resurrect deleted routes"
        );
    }

    #[test]
    fn seed_keeps_earlier_writes() {
        let mut s = ClusterState::default();
        s.apply(&Command::PutUpstream(upstream("a")));
        let mut mine = upstream("b");
        mine.region = "operator".into();
        s.apply(&Command::PutUpstream(mine.clone()));
        let seed = Command::Seed {
            upstreams: vec![upstream("b"), upstream("c")],
            routes: vec![],
            keys: vec![],
        };
        assert_eq!(s.apply(&seed), CommandResponse::Applied { changed: true });
        assert_eq!(
            s.upstreams["b"], mine,
            "the operator's write wins over the seed"
        );
        assert_eq!(s.upstreams.len(), 3);
    }

    #[test]
    fn routes_need_their_upstreams() {
        let mut s = ClusterState::default();
        assert_eq!(
            rejected(s.apply(&Command::PutRoute(route("m", "a")))),
            "route.tiers[0][0].upstream"
        );
        s.apply(&Command::PutUpstream(upstream("a")));
        assert_eq!(
            s.apply(&Command::PutRoute(route("m", "a"))),
            CommandResponse::Applied { changed: true }
        );
        assert_eq!(
            s.apply(&Command::PutRoute(route("m", "a"))),
            CommandResponse::Applied { changed: false }
        );
        let before = s.clone();
        assert_eq!(
            rejected(s.apply(&Command::DeleteUpstream { id: "a".into() })),
            "id"
        );
        assert_eq!(s, before, "a rejected command changes nothing");
        s.apply(&Command::DeleteRoute { model: "m".into() });
        assert_eq!(
            s.apply(&Command::DeleteUpstream { id: "a".into() }),
            CommandResponse::Applied { changed: true }
        );
    }

    #[test]
    fn invalid_upstreams_and_keys_are_rejected() {
        let mut s = ClusterState::default();
        let mut bad = upstream("a");
        bad.base_url = "ftp://x".into();
        assert_eq!(
            rejected(s.apply(&Command::PutUpstream(bad))),
            "upstream.base_url"
        );
        let mut k = key("app");
        k.sha256 = "not-hex".into();
        assert_eq!(rejected(s.apply(&Command::PutKey(k))), "key.sha256");
        assert_eq!(s, ClusterState::default());
    }

    #[test]
    fn the_last_key_stays() {
        let mut s = ClusterState::default();
        s.apply(&Command::PutKey(key("a")));
        s.apply(&Command::PutKey(key("b")));
        assert_eq!(
            s.apply(&Command::DeleteKey { name: "a".into() }),
            CommandResponse::Applied { changed: true }
        );
        let before = s.clone();
        assert_eq!(
            rejected(s.apply(&Command::DeleteKey { name: "b".into() })),
            "name"
        );
        assert_eq!(s, before, "the last key is kept");
        // An unknown name changes nothing and is no reason to refuse.
        assert_eq!(
            s.apply(&Command::DeleteKey { name: "zz".into() }),
            CommandResponse::Applied { changed: false }
        );
    }

    #[test]
    fn credentials_in_a_base_url_are_never_stored() {
        let mut s = ClusterState::default();
        let mut bad = upstream("a");
        bad.base_url = "https://user:hunter2@a.example/v1".into();
        assert_eq!(
            rejected(s.apply(&Command::PutUpstream(bad))),
            "upstream.base_url"
        );
        assert_eq!(s, ClusterState::default());
    }

    #[test]
    fn a_bad_seed_changes_nothing() {
        let mut s = ClusterState::default();
        let seed = Command::Seed {
            upstreams: vec![],
            routes: vec![route("m", "missing")],
            keys: vec![],
        };
        assert!(matches!(s.apply(&seed), CommandResponse::Rejected(_)));
        assert!(!s.seeded);
    }

    #[test]
    fn apply_is_deterministic() {
        let commands = [
            Command::PutUpstream(upstream("a")),
            Command::PutUpstream(upstream("b")),
            Command::PutRoute(route("m", "a")),
            Command::PutKey(key("k")),
            Command::DeleteUpstream { id: "a".into() },
            Command::PutRoute(route("m", "b")),
            Command::DeleteUpstream { id: "a".into() },
        ];
        let run = || {
            let mut s = ClusterState::default();
            let out: Vec<_> = commands.iter().map(|c| s.apply(c)).collect();
            (s, out)
        };
        assert_eq!(run(), run());
    }

    /// `Rejected` became a newtype over `FieldError`; bincode (the log, the
    /// snapshots, forwarded writes) encodes it as the struct variant it
    /// was, so a log written before reads the same.
    #[test]
    fn a_rejection_encodes_as_the_struct_variant_it_was() {
        #[derive(Serialize)]
        enum Before {
            #[allow(dead_code)]
            Applied {
                changed: bool,
            },
            Rejected {
                field: String,
                message: String,
            },
        }
        let before = Before::Rejected {
            field: "key".into(),
            message: "bad".into(),
        };
        let now = CommandResponse::Rejected(FieldError::new("key", "bad"));
        assert_eq!(
            crate::codec::encode_value(&before).unwrap(),
            crate::codec::encode_value(&now).unwrap()
        );
    }

    #[test]
    fn a_discovered_catalogue_is_kept_sorted_and_only_for_discovering_upstreams() {
        let mut s = ClusterState::default();
        let put = |upstream: &str, models: &[&str]| Command::PutCatalogue {
            upstream: upstream.into(),
            models: models.iter().map(|m| m.to_string()).collect(),
        };
        assert!(matches!(
            s.apply(&put("nope", &["m"])),
            CommandResponse::Rejected(e) if e.field == "upstream"
        ));
        s.apply(&Command::PutUpstream(upstream("a")));
        assert!(matches!(
            s.apply(&put("a", &["m"])),
            CommandResponse::Rejected(_)
        ));
        s.apply(&Command::PutUpstream(UpstreamConfig {
            discover_models: true,
            ..upstream("a")
        }));
        assert_eq!(
            s.apply(&put("a", &["m2", "m1", "m2"])),
            CommandResponse::Applied { changed: true }
        );
        assert_eq!(s.catalogue["a"], ["m1", "m2"]);
        assert_eq!(
            s.apply(&put("a", &["m1", "m2"])),
            CommandResponse::Applied { changed: false }
        );
        assert!(matches!(
            s.apply(&put("a", &["bad name"])),
            CommandResponse::Rejected(_)
        ));
        let many: Vec<String> = (0..=MAX_CATALOGUE_MODELS)
            .map(|i| format!("m{i}"))
            .collect();
        assert!(matches!(
            s.apply(&Command::PutCatalogue { upstream: "a".into(), models: many }),
            CommandResponse::Rejected(e) if e.field == "models"
        ));
        assert_eq!(s.catalogue["a"], ["m1", "m2"], "a refusal changes nothing");
        s.apply(&Command::PutUpstream(upstream("a")));
        assert!(s.catalogue.is_empty(), "discovery switched off");
        s.apply(&Command::PutUpstream(UpstreamConfig {
            discover_models: true,
            ..upstream("a")
        }));
        s.apply(&put("a", &["m1"]));
        s.apply(&Command::DeleteUpstream { id: "a".into() });
        assert!(s.catalogue.is_empty());
    }

    #[test]
    fn an_alias_addresses_one_upstream_only() {
        let mut s = ClusterState::default();
        s.apply(&Command::PutUpstream(upstream("a")));
        let b = UpstreamConfig {
            aliases: vec!["a".into()],
            ..upstream("b")
        };
        assert!(matches!(
            s.apply(&Command::PutUpstream(b)),
            CommandResponse::Rejected(e) if e.field.contains("aliases")
        ));
        let b = UpstreamConfig {
            aliases: vec!["bee".into()],
            ..upstream("b")
        };
        assert_eq!(
            s.apply(&Command::PutUpstream(b.clone())),
            CommandResponse::Applied { changed: true }
        );
        // Replacing an upstream with its own aliases is not a collision.
        assert_eq!(
            s.apply(&Command::PutUpstream(b)),
            CommandResponse::Applied { changed: false }
        );
    }
}

#[cfg(test)]
mod tenancy_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::tenancy::{Counters, UsageBucket};

    fn key(name: &str, credits_nanos: Option<u64>) -> KeyRecord {
        KeyRecord {
            name: name.into(),
            sha256: "cd".repeat(32),
            limits: KeyLimits {
                credits_nanos,
                ..KeyLimits::default()
            },
        }
    }

    #[test]
    fn a_key_with_credits_opens_its_ledger_once() {
        let mut s = ClusterState::default();
        s.apply(&Command::PutKey(key("acme", Some(100))));
        assert_eq!(s.tenancy.credits["acme"].balance_nanos(), 100);
        // Putting the key again (even with another opening balance) never
        // refills it: top-ups do.
        s.apply(&Command::PutKey(key("acme", Some(5_000))));
        assert_eq!(s.tenancy.credits["acme"].balance_nanos(), 100);
        let top_up = Command::AddCredits {
            key: "acme".into(),
            id: "t1".into(),
            nanos: 50,
        };
        assert_eq!(s.apply(&top_up), CommandResponse::Applied { changed: true });
        assert_eq!(
            s.apply(&top_up),
            CommandResponse::Applied { changed: false }
        );
        assert_eq!(s.tenancy.credits["acme"].balance_nanos(), 150);
        let before = s.clone();
        for bad in [
            Command::AddCredits {
                key: "nobody".into(),
                id: "t2".into(),
                nanos: 50,
            },
            Command::AddCredits {
                key: "acme".into(),
                id: "".into(),
                nanos: 50,
            },
            Command::AddCredits {
                key: "acme".into(),
                id: "x".repeat(500),
                nanos: 50,
            },
        ] {
            assert!(
                matches!(s.apply(&bad), CommandResponse::Rejected(_)),
                "{bad:?}"
            );
        }
        assert_eq!(s, before, "a refused top-up changes nothing");
        // A deleted key's balance is kept for when it comes back.
        s.apply(&Command::PutKey(key("other", None)));
        s.apply(&Command::DeleteKey {
            name: "acme".into(),
        });
        s.apply(&Command::PutKey(key("acme", Some(1))));
        assert_eq!(s.tenancy.credits["acme"].balance_nanos(), 150);
    }

    #[test]
    fn seeded_keys_open_their_ledgers_and_spending_follows_reports() {
        let mut s = ClusterState::default();
        s.apply(&Command::Seed {
            upstreams: vec![],
            routes: vec![],
            keys: vec![key("acme", Some(1_000)), key("free", None)],
        });
        assert!(s.tenancy.credits.contains_key("acme"));
        assert!(!s.tenancy.credits.contains_key("free"));
        let cell = UsageBucket {
            key: "acme".into(),
            day: 20_000,
            model: "fast".into(),
            upstream: "a".into(),
        };
        let report = Command::Tenancy {
            id: 2,
            report: crate::tenancy::TenantReport {
                boot: 1,
                seq: 1,
                usage_days: 30,
                demand: Default::default(),
                usage: vec![(
                    cell,
                    Counters {
                        requests: 2,
                        input_tokens: 1,
                        output_tokens: 1,
                        cost_nanos: 400,
                    },
                )],
            },
        };
        s.apply(&report);
        s.apply(&report);
        assert_eq!(s.tenancy.credits["acme"].balance_nanos(), 600);
        assert!(!ClusterState::default().routing_differs(&ClusterState {
            tenancy: s.tenancy.clone(),
            ..ClusterState::default()
        }));
    }

    #[test]
    fn invalid_limits_are_refused_naming_the_field() {
        let mut s = ClusterState::default();
        let mut k = key("acme", None);
        k.limits.rpm = Some(0);
        match s.apply(&Command::PutKey(k)) {
            CommandResponse::Rejected(e) => assert_eq!(e.field, "key.limits.rpm"),
            other => panic!("{other:?}"),
        }
        assert_eq!(s, ClusterState::default());
    }
}
