//! The command line, defined once: `main.rs` parses it, and the man page is generated from it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{EngineFlags, RunFlags, SecurityFlags};

const ABOUT: &str = "Tags DECNET honeypot telemetry with MITRE ATT&CK techniques";

const LONG_ABOUT: &str = "\
Tags DECNET honeypot telemetry with MITRE ATT&CK techniques.

With no subcommand, runs the worker: subscribes to DECNET's event subjects on NATS, tags
every event with the rule pack, publishes a heartbeat on system.ttp.health, and stops
cleanly on SIGINT, SIGTERM or a {\"action\":\"stop\"} message on system.ttp.control.
SIGHUP reloads the rules. If NATS is unreachable it keeps running and retries on every
poll tick.

Flags win over environment variables, which win over the defaults.";

#[derive(Debug, Parser)]
#[command(
    name = "ttp-worker",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tag envelopes read as JSON lines (from INPUT or stdin) and print one JSON tag per line
    Tag(TagArgs),
    /// Load and compile the rules and intel tables; list every problem as FILE: rule ID: message
    CheckRules(EngineArgs),
    /// List stored tags, newest first (read-only; works while the daemon runs)
    Tags(TagsArgs),
    /// Summarise the tag store: totals, by technique, by rule, last 24 h, size
    Stats(StoreArgs),
}

/// Options of the daemon itself.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// NATS server URL(s), comma-separated; nats:// or tls://
    /// [env: DECNET_BUS_URL] [default: nats://127.0.0.1:4222]
    #[arg(long, value_name = "URL")]
    pub bus_url: Option<String>,

    /// Seconds between idle ticks; while NATS is unreachable, a connection is retried on
    /// every tick [env: DECNET_TTP_POLL_INTERVAL] [default: 60]
    #[arg(short = 'i', long, value_name = "SECS")]
    pub poll_interval: Option<String>,

    /// Seconds between heartbeats on system.ttp.health; keep it at 30 or less for DECNET's
    /// dashboard [env: DECNET_TTP_HEARTBEAT_SECS] [default: 30]
    #[arg(long, value_name = "SECS")]
    pub heartbeat_interval: Option<String>,

    /// Do not connect to NATS at all (poll-only) [env: DECNET_BUS_ENABLED=false]
    #[arg(long)]
    pub no_bus: bool,

    /// Consume through JetStream so no event is lost across restarts
    /// [env: DECNET_BUS_DURABLE]
    #[arg(long)]
    pub durable: bool,

    /// JetStream stream for durable mode; created when absent, used as it is when present
    /// [env: DECNET_TTP_STREAM] [default: DECNET_TTP_IN]
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,

    /// Maximum age of events in a stream this worker creates, e.g. 7d or 36h
    /// [env: DECNET_TTP_STREAM_MAX_AGE] [default: 7d]
    #[arg(long, value_name = "DURATION")]
    pub stream_max_age: Option<String>,

    /// Maximum size of a stream this worker creates, e.g. 1G or 512M; the oldest events go
    /// first [env: DECNET_TTP_STREAM_MAX_BYTES] [default: 1G]
    #[arg(long, value_name = "BYTES")]
    pub stream_max_bytes: Option<String>,

    /// How long JetStream waits for an acknowledgement before delivering a message again (and
    /// so how soon a crashed worker's in-hand messages come back), for consumers this worker
    /// creates [env: DECNET_TTP_ACK_WAIT] [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub ack_wait: Option<String>,

    /// SQLite tag store, owned by this worker alone
    /// [env: DECNET_TTP_DB] [default: $STATE_DIRECTORY/ttp.db, else $XDG_STATE_HOME/ttp-worker/ttp.db,
    /// else ~/.local/state/ttp-worker/ttp.db]
    #[arg(long, value_name = "PATH")]
    pub db: Option<String>,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub security: SecurityArgs,
}

/// NATS authentication and TLS. Secrets are only ever given as files, read once at start.
#[derive(Debug, Args)]
#[command(next_help_heading = "NATS authentication and TLS")]
pub struct SecurityArgs {
    /// User name for NATS user/password authentication; the password comes from
    /// --bus-password-file [env: DECNET_BUS_USER]
    #[arg(long, value_name = "NAME")]
    pub bus_user: Option<String>,

    /// File holding the NATS password for --bus-user (one line)
    /// [env: DECNET_BUS_PASSWORD_FILE]
    #[arg(long, value_name = "FILE")]
    pub bus_password_file: Option<String>,

    /// File holding a NATS authentication token [env: DECNET_BUS_TOKEN_FILE]
    #[arg(long, value_name = "FILE")]
    pub bus_token_file: Option<String>,

    /// NATS credentials file (.creds: user JWT and nkey seed) [env: DECNET_BUS_CREDS]
    #[arg(long, value_name = "FILE")]
    pub bus_creds: Option<String>,

    /// File holding a user nkey seed (SU...) [env: DECNET_BUS_NKEY_SEED_FILE]
    #[arg(long, value_name = "FILE")]
    pub bus_nkey_seed_file: Option<String>,

    /// PEM CA certificate(s) the server's certificate must chain to, instead of the system's
    /// roots; makes TLS required [env: DECNET_BUS_TLS_CA]
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<String>,

    /// PEM client certificate for servers that verify clients; needs --tls-key; makes TLS
    /// required [env: DECNET_BUS_TLS_CERT]
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<String>,

    /// PEM private key of --tls-cert [env: DECNET_BUS_TLS_KEY]
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<String>,
}

/// Where the rules, intel tables and known attackers come from.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Directory of DECNET-format YAML rule files replacing the built-in pack; repeat for
    /// several [env: DECNET_TTP_RULES_DIR, ':'-separated]
    #[arg(long = "rules", value_name = "DIR")]
    pub rules: Vec<String>,

    /// Directory of local YAML rule files added to the built-in pack (a rule with a built-in
    /// rule's id replaces it); repeat for several [env: DECNET_TTP_LOCAL_RULES_DIR,
    /// ':'-separated]
    #[arg(long = "local-rules", value_name = "DIR")]
    pub local_rules: Vec<String>,

    /// Do not load the built-in rule pack [env: DECNET_TTP_NO_BUILTIN_RULES]
    #[arg(long)]
    pub no_builtin_rules: bool,

    /// Directory of intel provider mapping tables (abuseipdb.yaml, greynoise.yaml, feodo.yaml,
    /// threatfox.yaml) overriding the built-in ones [env: DECNET_TTP_INTEL_MAPS]
    #[arg(long, value_name = "DIR")]
    pub intel_maps: Option<String>,

    /// JSON object {"<attacker_ip>": "<attacker_uuid>"} of attackers known beforehand, e.g.
    /// exported from DECNET's attackers table [env: DECNET_TTP_ANCHORS]
    #[arg(long, value_name = "FILE")]
    pub anchors: Option<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    #[command(flatten)]
    pub engine: EngineArgs,

    /// JSON-lines file of envelopes ({"topic": SUBJECT, "type": ..., "payload": {...}});
    /// stdin when absent or '-'
    #[arg(value_name = "INPUT")]
    pub input: Option<PathBuf>,
}

/// Which tag store to read.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// SQLite tag store [env: DECNET_TTP_DB] [default: as for the daemon]
    #[arg(long, value_name = "PATH")]
    pub db: Option<String>,
}

#[derive(Debug, Args)]
pub struct TagsArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Only this attacker: an attacker UUID, or an IP address for tags not yet tied to one
    #[arg(long, value_name = "UUID|IP")]
    pub attacker: Option<String>,

    /// Only this identity
    #[arg(long, value_name = "UUID")]
    pub identity: Option<String>,

    /// Only this session
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,

    /// Only these techniques; T1110 includes its sub-techniques, T1110.003 is exact
    #[arg(long, value_name = "T", num_args = 1..)]
    pub technique: Vec<String>,

    /// Only tags written within this long, e.g. 30m, 24h, 7d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub since: Option<std::time::Duration>,

    /// At most this many rows [default: 100]
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// json: one object per line; table: columns for a terminal
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub format: crate::store::Format,
}

/// Durations read the same everywhere (`30s`, `15m`, `24h`, `7d`; see `units.rs`).
fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::units::parse_duration(text).map_err(|err| err.to_string())
}

impl RunArgs {
    pub fn to_flags(&self) -> RunFlags {
        RunFlags {
            bus_url: self.bus_url.clone(),
            poll_interval: self.poll_interval.clone(),
            heartbeat_interval: self.heartbeat_interval.clone(),
            no_bus: self.no_bus,
            durable: self.durable,
            stream: self.stream.clone(),
            stream_max_age: self.stream_max_age.clone(),
            stream_max_bytes: self.stream_max_bytes.clone(),
            ack_wait: self.ack_wait.clone(),
            db: self.db.clone(),
            engine: self.engine.to_flags(),
            security: self.security.to_flags(),
        }
    }
}

impl EngineArgs {
    pub fn to_flags(&self) -> EngineFlags {
        EngineFlags {
            rules: self.rules.clone(),
            local_rules: self.local_rules.clone(),
            no_builtin_rules: self.no_builtin_rules,
            intel_maps: self.intel_maps.clone(),
            anchors: self.anchors.clone(),
        }
    }
}

impl SecurityArgs {
    pub fn to_flags(&self) -> SecurityFlags {
        SecurityFlags {
            user: self.bus_user.clone(),
            password_file: self.bus_password_file.clone(),
            token_file: self.bus_token_file.clone(),
            creds: self.bus_creds.clone(),
            nkey_seed_file: self.bus_nkey_seed_file.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn daemon_flags_do_not_mix_with_subcommands() {
        assert!(Cli::try_parse_from(["ttp-worker", "--durable", "tag"]).is_err());
        let cli = Cli::try_parse_from([
            "ttp-worker",
            "tag",
            "--rules",
            "a",
            "--rules",
            "b",
            "in.jsonl",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Tag(args)) => {
                assert_eq!(args.engine.rules, ["a", "b"]);
                assert_eq!(args.input, Some(PathBuf::from("in.jsonl")));
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
