//! The `meridian` command line as clap reads it: every subcommand, flag and
//! default in one place, apart from what each command does (`main.rs`) and
//! the operator CLI's library code (the `meridian-cli` crate, `cli`).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "meridian", version, about = "A self-hosted router for AI APIs")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run a node.
    Serve {
        /// The node's TOML configuration; without it, the embedded default.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Log format.
        #[arg(long, value_enum, env = "MERIDIAN_LOG_FORMAT", default_value = "text")]
        log_format: LogFormat,
    },
    /// Check or print configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Create the cluster CA (once) and node certificates in a directory.
    ///
    /// Each certificate names its node id (a `meridian:node:ID` URI SAN), and
    /// peers refuse a node presenting a certificate of another id.
    Certs {
        /// Where the certificates go; an existing ca.pem/ca.key there is reused.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Nodes, as `n<ID>` (n4 is node 4) or `NAME=ID` (us-east=4): writes
        /// NAME.pem and NAME.key for each, naming node ID.
        #[arg(required = true, value_name = "NODE")]
        nodes: Vec<String>,
        /// Addresses and DNS names peers use to reach the nodes (default 127.0.0.1, localhost).
        #[arg(long = "san")]
        sans: Vec<String>,
    },
    /// List, add or remove cluster members through a node's admin API.
    Members {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Show the cluster (members, leader, term, lag) and the health board of any node.
    Status {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// List the model catalogue: every upstream's declared and discovered models,
    /// as clients address them (`<upstream>/<model>`).
    Models {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// List, show, put or delete routes (what clients send as "model").
    Routes {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// List, show, put or delete upstreams (the providers).
    Upstreams {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: UpstreamsCommand,
    },
    /// List, put, credit or delete client keys (keys are never printed or taken from argv).
    Keys {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Usage per key from the replicated ledger: requests, tokens and cost, by day, model
    /// or upstream.
    Usage {
        #[command(flatten)]
        target: AdminTarget,
        /// Only this key.
        #[arg(long)]
        key: Option<String>,
        /// First day, YYYY-MM-DD (UTC).
        #[arg(long)]
        from: Option<String>,
        /// Last day, YYYY-MM-DD (UTC).
        #[arg(long)]
        to: Option<String>,
        /// Rows per day, model or upstream.
        #[arg(long, value_parser = ["day", "model", "upstream"])]
        by: Option<String>,
    },
    /// Start a local 3-region cluster with fake providers and live traffic, and watch
    /// a brownout and a node failure as they happen; leaves nothing running.
    Demo {
        /// A short run (about 30 s of script).
        #[arg(long, conflicts_with = "duration")]
        quick: bool,
        /// The script's length in seconds (at least 20).
        #[arg(long, default_value_t = 70)]
        duration: u64,
        /// Requests per second per region (half of them streamed).
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// The meridian-mock binary (default: next to this executable).
        #[arg(long, env = "MERIDIAN_MOCK_BIN")]
        mock: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum RoutesCommand {
    /// Every route, one line each.
    List,
    /// One route.
    Get {
        /// Its model name (may contain `/`).
        model: String,
    },
    /// Create or replace a route: the body (JSON or TOML, as in the config file) from
    /// --file or stdin, or tiers as flags.
    Put {
        /// Its model name.
        model: String,
        /// The route's body; without it and without --tier, stdin.
        #[arg(long, short, conflicts_with = "tier")]
        file: Option<PathBuf>,
        /// A tier, as UPSTREAM:MODEL[,UPSTREAM:MODEL…]; repeat for fallback tiers.
        #[arg(long)]
        tier: Vec<String>,
    },
    /// Delete a route.
    Delete {
        /// Its model name.
        model: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum UpstreamsCommand {
    /// Every upstream, one line each.
    List,
    /// One upstream.
    Get {
        /// Its id.
        id: String,
    },
    /// Create or replace an upstream: the body (JSON or TOML) from --file or stdin.
    Put {
        /// Its id.
        id: String,
        /// The upstream's body; without it, stdin.
        #[arg(long, short)]
        file: Option<PathBuf>,
    },
    /// Delete an upstream (refused while a route uses it).
    Delete {
        /// Its id.
        id: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// The names of every client key.
    List,
    /// Whether a key of this name exists.
    Get {
        /// Its name.
        name: String,
    },
    /// Add or replace a client key: read from --key-env VAR, else from stdin; with its
    /// limits, which replace the key's (each left out: no limit; a balance is never reset).
    Put {
        /// Its name (appears in logs instead of the key).
        name: String,
        /// The environment variable holding the key.
        #[arg(long)]
        key_env: Option<String>,
        /// Route names and addressed models it may call, comma-separated (`*` globs).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Requests per minute, cluster-wide.
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens per minute (input + output), cluster-wide.
        #[arg(long)]
        tpm: Option<u64>,
        /// Opening prepaid balance in US dollars (only a key's first; then `keys credit`).
        #[arg(long)]
        credits_usd: Option<f64>,
        /// Priority class.
        #[arg(long)]
        class: Option<String>,
    },
    /// Top up a key's prepaid balance; the same --id again counts once.
    Credit {
        /// Its name.
        name: String,
        /// US dollars to add.
        #[arg(long)]
        add: f64,
        /// The top-up's id (made up and printed when absent: reuse it to retry).
        #[arg(long)]
        id: Option<String>,
    },
    /// Delete a client key.
    Delete {
        /// Its name.
        name: String,
    },
}

#[derive(clap::Args)]
pub(crate) struct AdminTarget {
    /// The admin API of any node.
    #[arg(
        long,
        global = true,
        env = "MERIDIAN_ADMIN",
        default_value = "http://127.0.0.1:9080"
    )]
    pub(crate) admin: String,
    /// Environment variable holding the admin token.
    #[arg(long, global = true, default_value = "MERIDIAN_ADMIN_TOKEN")]
    pub(crate) token_env: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub(crate) output: Output,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
pub(crate) enum MembersCommand {
    /// Show the cluster: leader, term, and every member's role and lag.
    List,
    /// Add a node: as a learner, then promoted to voter unless --learner.
    Add {
        /// The new node's id (never reused).
        id: u64,
        /// Its Raft address, host:port; the host an IP address or a DNS name.
        raft_addr: proto::config::PeerAddr,
        /// Keep it a learner (it receives the log and serves, but does not vote).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a node from the cluster.
    Remove {
        /// Its id.
        id: u64,
    },
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration file; exits 64 naming the field when it is not valid.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print the embedded default configuration, to start a file from.
    Default,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}
