//! The command line, defined once: `main.rs` parses it, and the man page is generated from it.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub mod settings;

const ABOUT: &str = "Tags DECNET honeypot telemetry with MITRE ATT&CK techniques";

const LONG_ABOUT: &str = "\
Tags DECNET honeypot telemetry with MITRE ATT&CK techniques.

With no subcommand, runs the worker: subscribes to DECNET's event subjects on NATS, tags
every event with the rule pack, publishes a heartbeat on system.ttp.health, and stops
cleanly on SIGINT, SIGTERM or a {\"action\":\"stop\"} message on system.ttp.control.
SIGHUP reloads the rules. If NATS is unreachable it keeps running and retries on every
poll tick.

Flags win over environment variables, which win over the defaults.";

/// The exit statuses, the same for every command; shown by --help and the man page.
const EXIT_STATUS: &str = "\
Exit status, for every command:
  0  done (the worker: stopped cleanly)
  1  it ran and found problems or failed: check-rules with a rule that did not load (or
     none at all), tag or publish with an input line that is not an envelope (the others
     are done), the worker on a store or database that failed under it
  2  bad usage: a bad flag, value or setting, a missing or unreadable input or directory,
     a worker without any rule; one line names it";

#[derive(Debug, Parser)]
#[command(
    name = "ttp-worker",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = EXIT_STATUS,
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
    /// Tag envelopes read as JSON lines (from INPUT or stdin) and print one JSON tag per line,
    /// each tag UUID once (what a store would keep); --all prints every occurrence
    Tag(TagArgs),
    /// Load and compile the rules and intel tables; list every problem as FILE: rule ID: message
    CheckRules(EngineArgs),
    /// List stored tags, newest first (read-only; works while the daemon runs)
    Tags(TagsArgs),
    /// Summarise the tag store: totals, by technique, by rule, last 24 h, size
    Stats(StoreArgs),
    /// Relay between DECNET's UNIX-socket bus and NATS: DECNET's events to NATS for the
    /// worker, the worker's announcements back to DECNET's bus
    Bridge(BridgeArgs),
    /// Publish envelopes read as JSON lines (from INPUT or stdin, as `tag` reads them) onto
    /// the bus, each on its topic: a way to feed a running worker
    Publish(PublishArgs),
}

/// Options of `ttp-worker bridge`.
#[derive(Debug, Default, Args)]
pub struct BridgeArgs {
    /// DECNET's bus socket (its broker, `decnet bus`); waited for while it is absent
    #[arg(long = settings::SOCKET.flag, value_name = "PATH")]
    pub socket: Option<String>,

    /// Messages each direction holds while the other side is slow or away; beyond it the
    /// oldest are dropped and counted
    #[arg(long = settings::QUEUE.flag, value_name = "N", allow_negative_numbers = true)]
    pub queue: Option<String>,

    /// NATS server URL(s), comma-separated; nats:// or tls://
    #[arg(long = settings::BUS_URL.flag, value_name = "URL")]
    pub bus_url: Option<String>,

    /// Seconds between the bridge's heartbeats on system.ttp-bridge.health
    #[arg(long = settings::HEARTBEAT_INTERVAL.flag, value_name = "SECS", allow_negative_numbers = true)]
    pub heartbeat_interval: Option<String>,

    /// Publish DECNET's events into the JetStream stream the worker's durable mode reads,
    /// each acknowledged, with a Nats-Msg-Id against duplicates
    #[arg(long = settings::DURABLE.flag)]
    pub durable: bool,

    /// JetStream stream for durable mode; created when absent, used as it is when present
    #[arg(long = settings::STREAM.flag, value_name = "NAME")]
    pub stream: Option<String>,

    /// Maximum age of events in a stream the bridge creates, e.g. 7d or 36h
    #[arg(long = settings::STREAM_MAX_AGE.flag, value_name = "DURATION", allow_negative_numbers = true)]
    pub stream_max_age: Option<String>,

    /// Maximum size of a stream the bridge creates, e.g. 1G or 512M
    #[arg(long = settings::STREAM_MAX_BYTES.flag, value_name = "BYTES", allow_negative_numbers = true)]
    pub stream_max_bytes: Option<String>,

    #[command(flatten)]
    pub security: SecurityArgs,
}

/// What `publish` sends and where.
#[derive(Debug, Default, Args)]
pub struct PublishArgs {
    /// JSON-lines file of envelopes ({"topic": SUBJECT, "type": ..., "payload": {...}}; `v`,
    /// `id` and `ts` are filled in when missing); stdin when absent or '-'
    #[arg(value_name = "INPUT")]
    pub input: Option<PathBuf>,

    /// At most this many envelopes a second, e.g. 100 or 100/s [default: as fast as the
    /// server takes them]
    #[arg(long, value_name = "N/s", allow_negative_numbers = true)]
    pub rate: Option<String>,

    /// NATS server URL(s), comma-separated; nats:// or tls://
    #[arg(long = settings::BUS_URL.flag, value_name = "URL")]
    pub bus_url: Option<String>,

    #[command(flatten)]
    pub security: SecurityArgs,
}

/// Options of the daemon itself. Each flag's environment variable and default are in
/// [`settings`], which `--help` and `config` both read.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// NATS server URL(s), comma-separated; nats:// or tls://
    #[arg(long = settings::BUS_URL.flag, value_name = "URL")]
    pub bus_url: Option<String>,

    /// Seconds between idle ticks; while NATS is unreachable, a connection is retried on
    /// every tick
    #[arg(short = 'i', long = settings::POLL_INTERVAL.flag, value_name = "SECS", allow_negative_numbers = true)]
    pub poll_interval: Option<String>,

    /// Seconds between heartbeats on system.ttp.health; keep it at 30 or less for DECNET's
    /// dashboard
    #[arg(long = settings::HEARTBEAT_INTERVAL.flag, value_name = "SECS", allow_negative_numbers = true)]
    pub heartbeat_interval: Option<String>,

    /// Do not connect to NATS at all (poll-only)
    #[arg(long = settings::NO_BUS.flag)]
    pub no_bus: bool,

    /// Consume through JetStream so no event is lost across restarts
    #[arg(long = settings::DURABLE.flag)]
    pub durable: bool,

    /// JetStream stream for durable mode; created when absent, used as it is when present
    #[arg(long = settings::STREAM.flag, value_name = "NAME")]
    pub stream: Option<String>,

    /// Maximum age of events in a stream this worker creates, e.g. 7d or 36h
    #[arg(long = settings::STREAM_MAX_AGE.flag, value_name = "DURATION", allow_negative_numbers = true)]
    pub stream_max_age: Option<String>,

    /// Maximum size of a stream this worker creates, e.g. 1G or 512M; the oldest events go
    /// first
    #[arg(long = settings::STREAM_MAX_BYTES.flag, value_name = "BYTES", allow_negative_numbers = true)]
    pub stream_max_bytes: Option<String>,

    /// How long JetStream waits for an acknowledgement before delivering a message again (and
    /// so how soon a crashed worker's in-hand messages come back), for consumers this worker
    /// creates
    #[arg(long = settings::ACK_WAIT.flag, value_name = "DURATION", allow_negative_numbers = true)]
    pub ack_wait: Option<String>,

    /// SQLite tag store, owned by this worker alone; with a DECNET database it holds what
    /// cannot go there yet
    #[arg(long = settings::DB.flag, value_name = "PATH")]
    pub db: Option<String>,

    #[command(flatten)]
    pub decnet_db: DecnetDbArgs,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub security: SecurityArgs,
}

/// DECNET's own database: where the daemon writes tags, and `tags`/`stats` read them. The
/// same settings DECNET's own processes read; the MySQL password only from a file or the
/// environment.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "DECNET's database")]
pub struct DecnetDbArgs {
    /// Use DECNET's own database (sqlite or mysql; sqlite is set by DECNET_DB_PATH alone
    /// too), where DECNET's dashboard and API read tags
    #[arg(long = settings::DECNET_DB_TYPE.flag, value_name = "TYPE")]
    pub decnet_db_type: Option<String>,

    /// DECNET's SQLite file, as DECNET's own processes use it (never created by the worker)
    #[arg(long = settings::DECNET_DB_PATH.flag, value_name = "PATH")]
    pub decnet_db_path: Option<String>,

    /// DECNET's MySQL/MariaDB database as a URL, mysql://USER@HOST:PORT/DATABASE (also
    /// mysql+asyncmy:// and the like; ?ssl=true or ?ssl-mode=REQUIRED for TLS); with a
    /// password in it only from DECNET_DB_URL, never as a flag (ps would show it)
    #[arg(long = settings::DECNET_DB_URL.flag, value_name = "URL")]
    pub decnet_db_url: Option<String>,

    /// DECNET's MySQL server, when no URL is given (default localhost)
    #[arg(long = settings::DECNET_DB_HOST.flag, value_name = "HOST")]
    pub decnet_db_host: Option<String>,

    /// DECNET's MySQL port (default 3306)
    #[arg(long = settings::DECNET_DB_PORT.flag, value_name = "PORT")]
    pub decnet_db_port: Option<String>,

    /// DECNET's MySQL database name (default decnet)
    #[arg(long = settings::DECNET_DB_NAME.flag, value_name = "NAME")]
    pub decnet_db_name: Option<String>,

    /// DECNET's MySQL user (default decnet)
    #[arg(long = settings::DECNET_DB_USER.flag, value_name = "NAME")]
    pub decnet_db_user: Option<String>,

    /// File holding DECNET's MySQL password (one line); DECNET's own DECNET_DB_PASSWORD is
    /// read too when no file is given
    #[arg(long = settings::DECNET_DB_PASSWORD_FILE.flag, value_name = "FILE")]
    pub decnet_db_password_file: Option<String>,
}

/// NATS authentication and TLS. Secrets are only ever given as files, read once at start.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "NATS authentication and TLS")]
pub struct SecurityArgs {
    /// User name for NATS user/password authentication; the password comes from
    /// --bus-password-file
    #[arg(long = settings::BUS_USER.flag, value_name = "NAME")]
    pub bus_user: Option<String>,

    /// File holding the NATS password for --bus-user (one line)
    #[arg(long = settings::BUS_PASSWORD_FILE.flag, value_name = "FILE")]
    pub bus_password_file: Option<String>,

    /// File holding a NATS authentication token
    #[arg(long = settings::BUS_TOKEN_FILE.flag, value_name = "FILE")]
    pub bus_token_file: Option<String>,

    /// NATS credentials file (.creds: user JWT and nkey seed)
    #[arg(long = settings::BUS_CREDS.flag, value_name = "FILE")]
    pub bus_creds: Option<String>,

    /// File holding a user nkey seed (SU...)
    #[arg(long = settings::BUS_NKEY_SEED_FILE.flag, value_name = "FILE")]
    pub bus_nkey_seed_file: Option<String>,

    /// PEM CA certificate(s) the server's certificate must chain to, instead of the system's
    /// roots; makes TLS required
    #[arg(long = settings::TLS_CA.flag, value_name = "FILE")]
    pub tls_ca: Option<String>,

    /// PEM client certificate for servers that verify clients; needs --tls-key; makes TLS
    /// required
    #[arg(long = settings::TLS_CERT.flag, value_name = "FILE")]
    pub tls_cert: Option<String>,

    /// PEM private key of --tls-cert
    #[arg(long = settings::TLS_KEY.flag, value_name = "FILE")]
    pub tls_key: Option<String>,
}

/// Where the rules, intel tables and known attackers come from.
#[derive(Debug, Default, Args)]
pub struct EngineArgs {
    /// Directory of DECNET-format YAML rule files replacing the built-in pack; repeat for
    /// several
    #[arg(long = settings::RULES.flag, value_name = "DIR")]
    pub rules: Vec<String>,

    /// Directory of local YAML rule files added to the built-in pack (a rule with a built-in
    /// rule's id replaces it); repeat for several
    #[arg(long = settings::LOCAL_RULES.flag, value_name = "DIR")]
    pub local_rules: Vec<String>,

    /// Do not load the built-in rule pack
    #[arg(long = settings::NO_BUILTIN_RULES.flag)]
    pub no_builtin_rules: bool,

    /// Let every rule, not only the built-in pack's, also match a command's de-obfuscated
    /// text (quotes, backslashes, $'..', ${IFS} undone); DECNET's pack matches the raw text
    /// only, as DECNET does, without it
    #[arg(long = settings::NORMALIZE_COMMANDS.flag)]
    pub normalize_commands: bool,

    /// Accept a rule pack without a single rule (otherwise the worker refuses to start and
    /// check-rules fails: an empty pack is almost always a wrong directory)
    #[arg(long = settings::ALLOW_EMPTY.flag)]
    pub allow_empty: bool,

    /// Directory of intel provider mapping tables (abuseipdb.yaml, greynoise.yaml, feodo.yaml,
    /// threatfox.yaml) overriding the built-in ones
    #[arg(long = settings::INTEL_MAPS.flag, value_name = "DIR")]
    pub intel_maps: Option<String>,

    /// JSON object {"<attacker_ip>": "<attacker_uuid>"} of attackers known beforehand, e.g.
    /// exported from DECNET's attackers table
    #[arg(long = settings::ANCHORS.flag, value_name = "FILE")]
    pub anchors: Option<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    #[command(flatten)]
    pub engine: EngineArgs,

    /// Print every tag the rules produce, in input order, a UUID again each time an event
    /// gives it again. Without it each UUID is printed once, at its first occurrence: the rows
    /// a store would keep (canary triggers of one token share their tags' UUIDs, for one)
    #[arg(long)]
    pub all: bool,

    /// JSON-lines file of envelopes ({"topic": SUBJECT, "type": ..., "payload": {...}});
    /// stdin when absent or '-'
    #[arg(value_name = "INPUT")]
    pub input: Option<PathBuf>,
}

/// Which tag store to read: DECNET's database when one is configured, else the worker's own.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The worker's own SQLite tag store (read instead of DECNET's database when given)
    #[arg(long = settings::STORE_DB.flag, value_name = "PATH")]
    pub db: Option<String>,

    #[command(flatten)]
    pub decnet_db: DecnetDbArgs,
}

#[derive(Debug, Args)]
pub struct TagsArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// List the messages held for rows DECNET's database does not have yet (an attacker, an
    /// identity), with the tags they gave, instead of stored tags
    #[arg(long, conflicts_with_all = ["attacker", "identity", "session", "technique", "since"])]
    pub pending: bool,

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
    #[arg(long, value_name = "T", num_args = 1.., value_parser = parse_technique_arg)]
    pub technique: Vec<String>,

    /// Only tags written within this long, e.g. 30m, 24h, 7d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, allow_negative_numbers = true)]
    pub since: Option<std::time::Duration>,

    /// At most this many rows [default: 100]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub limit: Option<usize>,

    /// json: one object per line; table: columns for a terminal
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub format: crate::store::Format,
}

/// A technique filter is checked here, so that a typo exits 2 like any other bad value.
fn parse_technique_arg(text: &str) -> Result<String, crate::store::NotATechnique> {
    crate::store::parse_technique(text).map(|_| text.to_owned())
}

/// Durations read the same everywhere (`30s`, `15m`, `24h`, `7d`; see `units.rs`).
fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::units::parse_duration(text).map_err(|err| err.to_string())
}

/// The command line as `--help` and the man page show it: the derived definition, with each
/// setting's environment variable and default from [`settings`].
pub fn command() -> clap::Command {
    use settings::{BRIDGE, DAEMON, ENGINE, PUBLISH, STORE};
    Cli::command()
        .mut_args(|arg| settings::render(arg, &[DAEMON, ENGINE]))
        .mut_subcommand("tag", |cmd| {
            cmd.mut_args(|arg| settings::render(arg, &[ENGINE]))
        })
        .mut_subcommand("check-rules", |cmd| {
            cmd.mut_args(|arg| settings::render(arg, &[ENGINE]))
        })
        .mut_subcommand("tags", |cmd| {
            cmd.mut_args(|arg| settings::render(arg, &[STORE]))
        })
        .mut_subcommand("stats", |cmd| {
            cmd.mut_args(|arg| settings::render(arg, &[STORE]))
        })
        .mut_subcommand("bridge", |cmd| {
            cmd.mut_args(|arg| settings::render(arg, &[BRIDGE]))
        })
        .mut_subcommand("publish", |cmd| {
            cmd.mut_args(|arg| settings::render(arg, &[PUBLISH]))
        })
}

impl Cli {
    /// Parses the process's arguments against [`command`], so `--help` shows every setting's
    /// variable and default.
    pub fn try_parse_args() -> Result<Cli, clap::Error> {
        Cli::from_arg_matches(&command().try_get_matches()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        command().debug_assert();
    }

    /// A table entry whose flag no argument has would resolve but never show in `--help`.
    #[test]
    fn every_setting_names_a_flag_and_shows_its_variable() {
        let cmd = command();
        let mut cases = vec![(&cmd, settings::DAEMON), (&cmd, settings::ENGINE)];
        for (name, table) in [
            ("tag", settings::ENGINE),
            ("check-rules", settings::ENGINE),
            ("tags", settings::STORE),
            ("stats", settings::STORE),
        ] {
            cases.push((cmd.find_subcommand(name).unwrap(), table));
        }
        for (cmd, table) in cases {
            for setting in table {
                let arg = cmd
                    .get_arguments()
                    .find(|a| a.get_long() == Some(setting.flag))
                    .unwrap_or_else(|| panic!("{} has no --{}", cmd.get_name(), setting.flag));
                let help = arg.get_help().unwrap().to_string();
                assert!(help.contains(setting.env), "{help}");
            }
        }
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
