//! Every setting's flag, environment variable and default, in one table.
//!
//! The clap definition in `cli.rs` names its flags from here, `--help` and the man page render
//! `[env: …] [default: …]` from here ([`render`]), and `config` resolves flag, then
//! environment, then default from here. A default is written as an operator would type it and
//! goes through the same parser as their input, so what `--help` shows is what runs.

/// One setting of the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The long flag, without its `--`.
    pub flag: &'static str,
    pub env: &'static str,
    /// Said after the variable's name in `--help`: how the variable differs from the flag.
    pub env_note: &'static str,
    /// As typed on the command line; `None` when unset means "off" or "none".
    pub default: Option<&'static str>,
}

impl Setting {
    const fn new(flag: &'static str, env: &'static str) -> Setting {
        Setting {
            flag,
            env,
            env_note: "",
            default: None,
        }
    }

    const fn default(self, default: &'static str) -> Setting {
        Setting {
            default: Some(default),
            ..self
        }
    }

    const fn env_note(self, env_note: &'static str) -> Setting {
        Setting { env_note, ..self }
    }

    /// The flag as an operator types it, e.g. `--poll-interval`, to name it in an error.
    pub fn flag_name(&self) -> String {
        format!("--{}", self.flag)
    }

    /// What `--help` adds after the help text.
    fn annotation(&self) -> String {
        let mut text = format!("[env: {}{}]", self.env, self.env_note);
        if let Some(default) = self.default {
            text.push_str(&format!(" [default: {default}]"));
        }
        text
    }
}

pub const BUS_URL: Setting =
    Setting::new("bus-url", "DECNET_BUS_URL").default("nats://127.0.0.1:4222");
pub const POLL_INTERVAL: Setting =
    Setting::new("poll-interval", "DECNET_TTP_POLL_INTERVAL").default("60");
pub const HEARTBEAT_INTERVAL: Setting =
    Setting::new("heartbeat-interval", "DECNET_TTP_HEARTBEAT_SECS").default("30");
/// The variable enables, the flag disables: `--no-bus` is `DECNET_BUS_ENABLED=false`.
pub const NO_BUS: Setting = Setting::new("no-bus", "DECNET_BUS_ENABLED").env_note("=false");
pub const DURABLE: Setting = Setting::new("durable", "DECNET_BUS_DURABLE");
pub const STREAM: Setting = Setting::new("stream", "DECNET_TTP_STREAM").default("DECNET_TTP_IN");
/// Long enough to ride out a weekend outage of the tagger without filling a small disk.
pub const STREAM_MAX_AGE: Setting =
    Setting::new("stream-max-age", "DECNET_TTP_STREAM_MAX_AGE").default("7d");
pub const STREAM_MAX_BYTES: Setting =
    Setting::new("stream-max-bytes", "DECNET_TTP_STREAM_MAX_BYTES").default("1G");
/// Short enough that a crashed worker's messages come back soon after a restart.
pub const ACK_WAIT: Setting = Setting::new("ack-wait", "DECNET_TTP_ACK_WAIT").default("30s");
/// The daemon's store; the default is worked out from the state directory at start.
pub const DB: Setting = Setting::new("db", "DECNET_TTP_DB").default(
    "$STATE_DIRECTORY/ttp.db, else $XDG_STATE_HOME/ttp-worker/ttp.db, else ~/.local/state/ttp-worker/ttp.db",
);
/// DECNET's own variables, so that a worker sharing DECNET's environment finds its database
/// (docs/decnet-db.md §1). Unset, the worker keeps its tags in its own store only.
pub const DECNET_DB_TYPE: Setting = Setting::new("decnet-db-type", "DECNET_DB_TYPE");
pub const DECNET_DB_PATH: Setting = Setting::new("decnet-db-path", "DECNET_DB_PATH");
/// DECNET's MySQL database: a URL, else its parts (DECNET's defaults are applied in
/// `decnet_db::settings`, so these have none here).
pub const DECNET_DB_URL: Setting = Setting::new("decnet-db-url", "DECNET_DB_URL");
pub const DECNET_DB_HOST: Setting = Setting::new("decnet-db-host", "DECNET_DB_HOST");
pub const DECNET_DB_PORT: Setting = Setting::new("decnet-db-port", "DECNET_DB_PORT");
pub const DECNET_DB_NAME: Setting = Setting::new("decnet-db-name", "DECNET_DB_NAME");
pub const DECNET_DB_USER: Setting = Setting::new("decnet-db-user", "DECNET_DB_USER");
/// The MySQL password as a file, like the bus's; DECNET's own `DECNET_DB_PASSWORD` (the
/// password itself, in the environment) is read too, but has no flag: a flag would show it in
/// `ps`.
pub const DECNET_DB_PASSWORD_FILE: Setting =
    Setting::new("decnet-db-password-file", "DECNET_DB_PASSWORD_FILE");
pub const ENV_DECNET_DB_PASSWORD: &str = "DECNET_DB_PASSWORD";
/// `tags` and `stats` read the daemon's store: same variable, same default.
pub const STORE_DB: Setting = DB.default("as for the daemon");

pub const RULES: Setting =
    Setting::new("rules", "DECNET_TTP_RULES_DIR").env_note(", ':'-separated");
pub const LOCAL_RULES: Setting =
    Setting::new("local-rules", "DECNET_TTP_LOCAL_RULES_DIR").env_note(", ':'-separated");
pub const NO_BUILTIN_RULES: Setting =
    Setting::new("no-builtin-rules", "DECNET_TTP_NO_BUILTIN_RULES");
pub const NORMALIZE_COMMANDS: Setting =
    Setting::new("normalize-commands", "DECNET_TTP_NORMALIZE_COMMANDS");
pub const ALLOW_EMPTY: Setting = Setting::new("allow-empty", "DECNET_TTP_ALLOW_EMPTY_RULES");
pub const INTEL_MAPS: Setting = Setting::new("intel-maps", "DECNET_TTP_INTEL_MAPS");
pub const ANCHORS: Setting = Setting::new("anchors", "DECNET_TTP_ANCHORS");

pub const BUS_USER: Setting = Setting::new("bus-user", "DECNET_BUS_USER");
pub const BUS_PASSWORD_FILE: Setting =
    Setting::new("bus-password-file", "DECNET_BUS_PASSWORD_FILE");
pub const BUS_TOKEN_FILE: Setting = Setting::new("bus-token-file", "DECNET_BUS_TOKEN_FILE");
pub const BUS_CREDS: Setting = Setting::new("bus-creds", "DECNET_BUS_CREDS");
pub const BUS_NKEY_SEED_FILE: Setting =
    Setting::new("bus-nkey-seed-file", "DECNET_BUS_NKEY_SEED_FILE");
pub const TLS_CA: Setting = Setting::new("tls-ca", "DECNET_BUS_TLS_CA");
pub const TLS_CERT: Setting = Setting::new("tls-cert", "DECNET_BUS_TLS_CERT");
pub const TLS_KEY: Setting = Setting::new("tls-key", "DECNET_BUS_TLS_KEY");

/// DECNET's broker socket, for the bridge; unset, it is found as DECNET's own clients find it.
pub const SOCKET: Setting = Setting::new("socket", "DECNET_BUS_SOCKET")
    .default("/run/decnet/bus.sock where /run/decnet is writable, else ~/.decnet/bus.sock");
/// Enough for a minute of a busy fleet while the other side restarts; a few MiB at most.
pub const QUEUE: Setting = Setting::new("queue", "DECNET_TTP_BRIDGE_QUEUE").default("10000");

/// Where the rules, intel tables and known attackers come from: the daemon, `tag` and
/// `check-rules` take these.
pub const ENGINE: &[Setting] = &[
    RULES,
    LOCAL_RULES,
    NO_BUILTIN_RULES,
    NORMALIZE_COMMANDS,
    ALLOW_EMPTY,
    INTEL_MAPS,
    ANCHORS,
];

/// The daemon's own settings.
pub const DAEMON: &[Setting] = &[
    BUS_URL,
    POLL_INTERVAL,
    HEARTBEAT_INTERVAL,
    NO_BUS,
    DURABLE,
    STREAM,
    STREAM_MAX_AGE,
    STREAM_MAX_BYTES,
    ACK_WAIT,
    DB,
    DECNET_DB_TYPE,
    DECNET_DB_PATH,
    BUS_USER,
    BUS_PASSWORD_FILE,
    BUS_TOKEN_FILE,
    BUS_CREDS,
    BUS_NKEY_SEED_FILE,
    TLS_CA,
    TLS_CERT,
    TLS_KEY,
];

/// The bridge's settings.
pub const BRIDGE: &[Setting] = &[
    SOCKET,
    QUEUE,
    BUS_URL,
    HEARTBEAT_INTERVAL,
    DURABLE,
    STREAM,
    STREAM_MAX_AGE,
    STREAM_MAX_BYTES,
    BUS_USER,
    BUS_PASSWORD_FILE,
    BUS_TOKEN_FILE,
    BUS_CREDS,
    BUS_NKEY_SEED_FILE,
    TLS_CA,
    TLS_CERT,
    TLS_KEY,
];

/// `publish`'s settings: where the bus is and how to log in, as for the daemon.
pub const PUBLISH: &[Setting] = &[
    BUS_URL,
    BUS_USER,
    BUS_PASSWORD_FILE,
    BUS_TOKEN_FILE,
    BUS_CREDS,
    BUS_NKEY_SEED_FILE,
    TLS_CA,
    TLS_CERT,
    TLS_KEY,
];

/// The store's readers (`tags`, `stats`).
pub const STORE: &[Setting] = &[STORE_DB, DECNET_DB_TYPE, DECNET_DB_PATH];

/// Appends each setting's `[env: …] [default: …]` to the help of the argument with its flag.
/// Arguments no setting names are left as they are.
pub fn render(arg: clap::Arg, settings: &[&[Setting]]) -> clap::Arg {
    let Some(setting) = arg.get_long().and_then(|long| {
        settings
            .iter()
            .flat_map(|s| s.iter())
            .find(|s| s.flag == long)
    }) else {
        return arg;
    };
    let annotation = setting.annotation();
    let help = arg.get_help().map(|help| format!("{help} {annotation}"));
    let long_help = arg
        .get_long_help()
        .map(|help| format!("{help} {annotation}"));
    let arg = match help {
        Some(help) => arg.help(help),
        None => arg.help(annotation),
    };
    match long_help {
        Some(help) => arg.long_help(help),
        None => arg,
    }
}
