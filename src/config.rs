//! Settings for the daemon: flags win over environment, environment over defaults (docs/bus.md §7.4).
//!
//! Everything is validated here, before a thread starts, so a typo in a unit file or an
//! `/etc/default` file stops the worker at once with one line naming the setting, instead of a
//! daemon that spins (DECNET accepts a 0 s poll interval) or never connects.

use std::path::PathBuf;
use std::time::Duration;

use crate::bridge::BridgeConfig;
use crate::bus::security::{self, BusAuth, BusSecurity, BusTls, SecretFileError};
use crate::bus::{BusSettings, StreamConfig};
use crate::cli::settings::{self, Setting};
use crate::cli::{BridgeArgs, DecnetDbArgs, EngineArgs, RunArgs, SecurityArgs, StoreArgs};
use crate::decnet_db::DecnetDbSettings;
use crate::redact::redact_url;
use crate::tagging::{CommandView, EngineOptions};
use crate::units::{parse_bytes, parse_duration};

/// Not a flag: DECNET's selector between its buses, checked so that a worker pointed at the
/// UNIX-socket bus says so instead of dialling NATS.
pub const ENV_BUS_TYPE: &str = "DECNET_BUS_TYPE";

/// Longest interval accepted; far beyond any sensible value, and it keeps `Duration`
/// arithmetic away from overflow.
const MAX_INTERVAL_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// DECNET's dashboard marks a worker stale after 90 s without a beat.
const DASHBOARD_STALE_SECS: f64 = 90.0;

/// The validated settings the daemon runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Everything the NATS side needs, secrets already read from their files.
    pub bus: BusSettings,
    pub poll_interval: Duration,
    pub engine: EngineOptions,
    /// The SQLite tag store this worker owns.
    pub db: PathBuf,
    /// DECNET's own database, when tags go there (docs/decnet-db.md).
    pub decnet_db: Option<DecnetDbSettings>,
}

/// Upper bound on one connection attempt; beyond it the bus counts as unavailable and the
/// next tick tries again. Never longer than a tick, so a dead server cannot delay one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Durable mode's defaults are the settings table's, like every other default.
impl Default for StreamConfig {
    fn default() -> StreamConfig {
        let none = None;
        resolve_stream([&none, &none, &none, &none], &|_| None).expect("the defaults are valid")
    }
}

/// A setting that cannot be used. Its `Display` is the one line printed before exiting 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value {value:?} for {setting}: {problem}")]
    Invalid {
        setting: String,
        value: String,
        problem: String,
    },
    #[error(
        "{ENV_BUS_TYPE}=unix selects DECNET's UNIX-socket bus, which the worker does not speak: run `ttp-worker bridge` to carry it to NATS, and unset {ENV_BUS_TYPE} (or set it to nats) for the worker"
    )]
    UnixBus,
    #[error("unknown {ENV_BUS_TYPE} {0:?}: the only bus this worker speaks is nats")]
    UnknownBusType(String),
    #[error("{0}")]
    DecnetDb(String),
}

impl Config {
    /// Resolves every setting from `flags`, then the environment as seen through `env`, then
    /// the defaults. `env` is a parameter so tests need not touch the process environment.
    pub fn resolve(
        flags: &RunArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        check_bus_type(env(ENV_BUS_TYPE))?;

        let bus_enabled = if flags.no_bus {
            false
        } else {
            match env(settings::NO_BUS.env) {
                Some(text) => parse_bool(settings::NO_BUS.env, &text)?,
                None => true,
            }
        };
        let durable = resolve_durable(flags.durable, &env)?;

        let (setting, text) = value(&flags.bus_url, &settings::BUS_URL, &env);
        let bus_urls = parse_bus_urls(&setting, &text)?;
        let (setting, text) = value(&flags.poll_interval, &settings::POLL_INTERVAL, &env);
        let poll_interval = parse_interval(&setting, &text)?;
        let (setting, text) = value(
            &flags.heartbeat_interval,
            &settings::HEARTBEAT_INTERVAL,
            &env,
        );
        let heartbeat_interval = parse_interval(&setting, &text)?;
        if heartbeat_interval.as_secs_f64() * 3.0 > DASHBOARD_STALE_SECS {
            log::warn!(
                "heartbeat interval {:?} is over 30 s: DECNET's dashboard will show this worker as stale between beats",
                heartbeat_interval
            );
        }

        let stream = resolve_stream(
            [
                &flags.stream,
                &flags.stream_max_age,
                &flags.stream_max_bytes,
                &flags.ack_wait,
            ],
            &env,
        )?;

        let security = resolve_security(&flags.security, &bus_urls, &env)?;
        Ok(Config {
            bus: BusSettings {
                urls: bus_urls,
                enabled: bus_enabled,
                heartbeat_interval,
                connect_timeout: CONNECT_TIMEOUT.min(poll_interval),
                durable,
                stream,
                security,
            },
            poll_interval,
            engine: resolve_engine(&flags.engine, &env)?,
            db: resolve_db(&flags.db, &env)?,
            decnet_db: resolve_decnet_db(flags, &env)?,
        })
    }
}

/// `ttp-worker bridge`'s settings, flag over environment over default as for the daemon.
/// `DECNET_BUS_TYPE` is not looked at: `unix` is exactly what a DECNET host running the bridge
/// has.
pub fn resolve_bridge(
    flags: &BridgeArgs,
    env: impl Fn(&str) -> Option<String>,
) -> Result<BridgeConfig, ConfigError> {
    let durable = resolve_durable(flags.durable, &env)?;
    let (setting, text) = value(&flags.bus_url, &settings::BUS_URL, &env);
    let urls = parse_bus_urls(&setting, &text)?;
    let (setting, text) = value(
        &flags.heartbeat_interval,
        &settings::HEARTBEAT_INTERVAL,
        &env,
    );
    let heartbeat_interval = parse_interval(&setting, &text)?;
    let none = None;
    let stream = resolve_stream(
        [
            &flags.stream,
            &flags.stream_max_age,
            &flags.stream_max_bytes,
            &none,
        ],
        &env,
    )?;
    let security = resolve_security(&flags.security, &urls, &env)?;
    let socket = match pick(&flags.socket, &settings::SOCKET, &env) {
        Some((setting, text)) if text.trim().is_empty() => {
            return Err(invalid(&setting, &text, "an empty path"));
        }
        Some((_, text)) => PathBuf::from(text),
        None => decnet_socket(env(ENV_HOME)),
    };
    let (setting, text) = value(&flags.queue, &settings::QUEUE, &env);
    let queue = match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_BRIDGE_QUEUE).contains(&n) => n,
        _ => {
            return Err(invalid(
                &setting,
                &text,
                format!("expected a number of messages from 1 to {MAX_BRIDGE_QUEUE}"),
            ));
        }
    };
    Ok(BridgeConfig {
        bus: BusSettings {
            urls,
            enabled: true,
            heartbeat_interval,
            connect_timeout: CONNECT_TIMEOUT,
            durable,
            stream,
            security,
        },
        socket,
        queue,
    })
}

/// What `ttp-worker publish` needs: where the bus is, how to log in, and how fast to go.
#[derive(Debug)]
pub struct PublishConfig {
    pub urls: Vec<String>,
    pub security: BusSecurity,
    pub connect_timeout: Duration,
    /// Envelopes a second at most; `None`: as fast as the server takes them.
    pub rate: Option<f64>,
}

/// `publish`'s settings, read as the daemon reads the same ones.
pub fn resolve_publish(
    flags: &crate::cli::PublishArgs,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PublishConfig, ConfigError> {
    let (setting, text) = value(&flags.bus_url, &settings::BUS_URL, &env);
    let urls = parse_bus_urls(&setting, &text)?;
    let security = resolve_security(&flags.security, &urls, &env)?;
    let rate = match &flags.rate {
        None => None,
        Some(text) => {
            let number = text.trim().trim_end_matches("/s");
            match number.parse::<f64>() {
                Ok(rate) if rate.is_finite() && rate > 0.0 => Some(rate),
                _ => {
                    return Err(invalid(
                        "--rate",
                        text,
                        "expected envelopes a second above 0, e.g. 100 or 100/s",
                    ));
                }
            }
        }
    };
    Ok(PublishConfig {
        urls,
        security,
        connect_timeout: CONNECT_TIMEOUT,
        rate,
    })
}

/// `--durable`, else `DECNET_BUS_DURABLE`: the worker and the bridge read it alike.
fn resolve_durable(flag: bool, env: &impl Fn(&str) -> Option<String>) -> Result<bool, ConfigError> {
    switch(flag, &settings::DURABLE, env)
}

/// A setting that is off unless its flag is given or its variable says yes; the variable is
/// not read when the flag is given.
fn switch(
    flag: bool,
    setting: &Setting,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<bool, ConfigError> {
    if flag {
        return Ok(true);
    }
    match env(setting.env) {
        Some(text) => parse_bool(setting.env, &text),
        None => Ok(false),
    }
}

const ENV_HOME: &str = "HOME";

/// A queue beyond this would hold gigabytes of 1 MiB events; the bound is the point.
const MAX_BRIDGE_QUEUE: usize = 1_000_000;

/// Where DECNET's clients look for the broker when `DECNET_BUS_SOCKET` is unset
/// (docs/decnet-bus.md §1): `/run/decnet/bus.sock` when `/run/decnet` is a directory this
/// process may write to, else `~/.decnet/bus.sock`.
fn decnet_socket(home: Option<String>) -> PathBuf {
    let runtime = std::path::Path::new("/run/decnet");
    if runtime.is_dir() && writable(runtime) {
        return runtime.join("bus.sock");
    }
    PathBuf::from(home.unwrap_or_else(|| "/".into())).join(".decnet/bus.sock")
}

fn writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::access(path.as_ptr(), libc::W_OK) == 0 }
}

/// Durable mode's stream, as this worker would create it, from the flags `--stream`,
/// `--stream-max-age`, `--stream-max-bytes` and `--ack-wait`.
fn resolve_stream(
    [stream, max_age, max_bytes, ack_wait]: [&Option<String>; 4],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<StreamConfig, ConfigError> {
    let (setting, text) = value(stream, &settings::STREAM, env);
    let name = parse_stream_name(&setting, &text)?;
    let (setting, text) = value(max_age, &settings::STREAM_MAX_AGE, env);
    let max_age = parse_duration(&text).map_err(|e| invalid(&setting, &text, e.to_string()))?;
    let (setting, text) = value(max_bytes, &settings::STREAM_MAX_BYTES, env);
    let max_bytes = parse_bytes(&text).map_err(|e| invalid(&setting, &text, e.to_string()))?;
    let (setting, text) = value(ack_wait, &settings::ACK_WAIT, env);
    let ack_wait = parse_duration(&text).map_err(|e| invalid(&setting, &text, e.to_string()))?;
    Ok(StreamConfig {
        name,
        max_age,
        max_bytes,
        ack_wait,
    })
}

/// The engine's options.
///
/// * `--rules` (repeatable) or `DECNET_TTP_RULES_DIR` (`:`-separated) REPLACE the built-in
///   pack: the engine is asked for no built-in rules.
/// * `--local-rules` (repeatable) or `DECNET_TTP_LOCAL_RULES_DIR` (`:`-separated) are ADDED to
///   the built-in pack (unless `--no-builtin-rules`), after any `--rules` directories. A local
///   directory holding no rule file (the packaged `/etc/ttp-worker/rules.d/` as installed) is
///   left out, so the engine sees exactly what it would see without it.
///
/// Paths are checked here so a typo exits 2 at start instead of tagging with no rules.
pub fn resolve_engine(
    flags: &EngineArgs,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<EngineOptions, ConfigError> {
    let (setting, dirs) = dir_list(&flags.rules, &settings::RULES, env);
    let replacing = dirs
        .iter()
        .map(|dir| existing_dir(&setting, dir))
        .collect::<Result<Vec<_>, _>>()?;
    let (setting, dirs) = dir_list(&flags.local_rules, &settings::LOCAL_RULES, env);
    let mut local = Vec::new();
    for dir in &dirs {
        let path = existing_dir(&setting, dir)?;
        if holds_rule_files(&path) {
            local.push(path);
        }
    }
    let no_builtin_rules =
        !replacing.is_empty() || switch(flags.no_builtin_rules, &settings::NO_BUILTIN_RULES, env)?;
    let normalize_commands = switch(flags.normalize_commands, &settings::NORMALIZE_COMMANDS, env)?;
    let allow_empty = switch(flags.allow_empty, &settings::ALLOW_EMPTY, env)?;
    let mut rules_dirs = replacing;
    rules_dirs.extend(local);
    let intel_maps_dir = match pick(&flags.intel_maps, &settings::INTEL_MAPS, env) {
        Some((setting, dir)) => Some(existing_dir(&setting, &dir)?),
        None => None,
    };
    let anchors_file = match pick(&flags.anchors, &settings::ANCHORS, env) {
        Some((setting, file)) => {
            let path = PathBuf::from(&file);
            if !path.is_file() {
                return Err(invalid(&setting, &file, "no such file"));
            }
            Some(path)
        }
        None => None,
    };
    Ok(EngineOptions {
        rules_dirs,
        no_builtin_rules,
        intel_maps_dir,
        anchors_file,
        budget: crate::tagging::Budget::default(),
        command_view: if normalize_commands {
            CommandView::EveryRule
        } else {
            CommandView::BuiltinRules
        },
        allow_empty,
    })
}

/// NATS authentication and TLS. Secrets are read from their files here, once, so a missing or
/// unreadable file exits 2 at start with one line naming the setting and the path, never the
/// content. At most one way of authenticating may be configured, credentials in the URL
/// included.
pub fn resolve_security(
    flags: &SecurityArgs,
    bus_urls: &[String],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<BusSecurity, ConfigError> {
    let user = pick(&flags.bus_user, &settings::BUS_USER, env);
    let password_file = pick(&flags.bus_password_file, &settings::BUS_PASSWORD_FILE, env);
    let token_file = pick(&flags.bus_token_file, &settings::BUS_TOKEN_FILE, env);
    let creds = pick(&flags.bus_creds, &settings::BUS_CREDS, env);
    let nkey_seed_file = pick(
        &flags.bus_nkey_seed_file,
        &settings::BUS_NKEY_SEED_FILE,
        env,
    );

    let mut ways: Vec<String> = Vec::new();
    if let Some((setting, _)) = user.as_ref().or(password_file.as_ref()) {
        ways.push(setting.clone());
    }
    for (setting, _) in [&token_file, &creds, &nkey_seed_file].into_iter().flatten() {
        ways.push(setting.clone());
    }
    if let (Some(url), Some(other)) = (
        bus_urls.iter().find(|u| url_has_credentials(u)),
        ways.first(),
    ) {
        return Err(invalid(
            other,
            &redact_url(url),
            "the bus URL carries credentials too; give one way of authenticating",
        ));
    }
    if ways.len() > 1 {
        let (first, rest) = ways.split_first().expect("two or more");
        return Err(invalid(
            first,
            "",
            format!(
                "conflicts with {}: give one way of authenticating",
                rest.join(", ")
            ),
        ));
    }

    let auth = match (user, password_file) {
        (Some((_, user)), Some((setting, path))) => {
            if user.is_empty() {
                return Err(invalid("--bus-user", "", "empty user name"));
            }
            BusAuth::UserPassword {
                user,
                password: security::read_password(&path)
                    .map_err(|e| unreadable(&setting, &path, e))?,
            }
        }
        (Some((setting, user)), None) => {
            return Err(invalid(
                &setting,
                &user,
                format!(
                    "a user needs a password: set --bus-password-file or {}",
                    settings::BUS_PASSWORD_FILE.env
                ),
            ));
        }
        (None, Some((setting, path))) => {
            return Err(invalid(
                &setting,
                &path,
                format!(
                    "a password needs a user: set --bus-user or {}",
                    settings::BUS_USER.env
                ),
            ));
        }
        (None, None) => {
            if let Some((setting, path)) = token_file {
                BusAuth::Token(
                    security::read_token(&path).map_err(|e| unreadable(&setting, &path, e))?,
                )
            } else if let Some((setting, path)) = creds {
                BusAuth::Credentials(
                    security::read_credentials(&path)
                        .map_err(|e| unreadable(&setting, &path, e))?,
                )
            } else if let Some((setting, path)) = nkey_seed_file {
                BusAuth::NKey(
                    security::read_user_seed(&path).map_err(|e| unreadable(&setting, &path, e))?,
                )
            } else {
                BusAuth::None
            }
        }
    };

    let pem = |flag: &Option<String>, setting: &Setting| -> Result<Option<PathBuf>, ConfigError> {
        match pick(flag, setting, env) {
            Some((setting, path)) => security::check_pem(&path)
                .map(Some)
                .map_err(|e| unreadable(&setting, &path, e)),
            None => Ok(None),
        }
    };
    let ca = pem(&flags.tls_ca, &settings::TLS_CA)?;
    let cert = pem(&flags.tls_cert, &settings::TLS_CERT)?;
    let key = pem(&flags.tls_key, &settings::TLS_KEY)?;
    let client_cert = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(cert), None) => {
            return Err(invalid(
                "--tls-cert",
                &cert.display().to_string(),
                format!(
                    "a client certificate needs its key: set --tls-key or {}",
                    settings::TLS_KEY.env
                ),
            ));
        }
        (None, Some(key)) => {
            return Err(invalid(
                "--tls-key",
                &key.display().to_string(),
                format!(
                    "a client key needs its certificate: set --tls-cert or {}",
                    settings::TLS_CERT.env
                ),
            ));
        }
    };
    Ok(BusSecurity {
        auth,
        tls: BusTls { ca, client_cert },
    })
}

fn url_has_credentials(url: &str) -> bool {
    redact_url(url) != url
}

/// DECNET's database, from `--decnet-db-*` or DECNET's own variables. The MySQL password is
/// read here, once: from `--decnet-db-password-file`/`DECNET_DB_PASSWORD_FILE`, else DECNET's
/// `DECNET_DB_PASSWORD`; a URL flag carrying one is refused (`ps` would show it).
fn resolve_decnet_db(
    flags: &RunArgs,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<DecnetDbSettings>, ConfigError> {
    decnet_db_from(&flags.decnet_db, env)
}

/// What `tags` and `stats` read: the worker's own store when `--db` is given or no DECNET
/// database is configured, else DECNET's.
pub fn resolve_read_source(
    args: &StoreArgs,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<ReadSource, ConfigError> {
    if args.db.is_none()
        && let Some(decnet) = decnet_db_from(&args.decnet_db, env)?
    {
        return Ok(ReadSource::Decnet(decnet));
    }
    resolve_db(&args.db, env).map(ReadSource::Local)
}

/// Where the operator commands read tags from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadSource {
    Local(PathBuf),
    Decnet(DecnetDbSettings),
}

fn decnet_db_from(
    flags: &DecnetDbArgs,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<DecnetDbSettings>, ConfigError> {
    let db_type = pick(&flags.decnet_db_type, &settings::DECNET_DB_TYPE, env);
    let path = pick(&flags.decnet_db_path, &settings::DECNET_DB_PATH, env);
    fn as_ref(p: &Option<(String, String)>) -> Option<(&str, &str)> {
        p.as_ref().map(|(n, v)| (n.as_str(), v.as_str()))
    }
    let is_mysql = db_type
        .as_ref()
        .is_some_and(|(_, v)| v.trim().eq_ignore_ascii_case("mysql"));
    let mut mysql = crate::decnet_db::settings::MysqlInputs::default();
    if is_mysql {
        mysql.url = pick(&flags.decnet_db_url, &settings::DECNET_DB_URL, env);
        if let (Some(_), Some(url)) = (&flags.decnet_db_url, &mysql.url)
            && url_has_password(&url.1)
        {
            return Err(invalid(
                &url.0,
                &redact_url(&url.1),
                format!(
                    "a password on the command line shows in ps: leave it out of the URL and \
                     put it in a file named by --{} or {}",
                    settings::DECNET_DB_PASSWORD_FILE.flag,
                    settings::DECNET_DB_PASSWORD_FILE.env
                ),
            ));
        }
        mysql.host = pick(&flags.decnet_db_host, &settings::DECNET_DB_HOST, env);
        mysql.port = pick(&flags.decnet_db_port, &settings::DECNET_DB_PORT, env);
        mysql.name = pick(&flags.decnet_db_name, &settings::DECNET_DB_NAME, env);
        mysql.user = pick(&flags.decnet_db_user, &settings::DECNET_DB_USER, env);
        mysql.password = match pick(
            &flags.decnet_db_password_file,
            &settings::DECNET_DB_PASSWORD_FILE,
            env,
        ) {
            Some((setting, file)) => {
                Some(security::read_password(&file).map_err(|e| unreadable(&setting, &file, e))?)
            }
            None => env(settings::ENV_DECNET_DB_PASSWORD).map(security::Secret::new),
        };
    }
    crate::decnet_db::settings::resolve(as_ref(&db_type), as_ref(&path), mysql)
        .map_err(|e| ConfigError::DecnetDb(e.to_string()))
}

/// Whether a URL's user-info has a `:password` part.
fn url_has_password(url: &str) -> bool {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority
        .rfind('@')
        .is_some_and(|at| authority[..at].contains(':'))
}

/// `--db` or `DECNET_TTP_DB`, else the state directory (systemd's, then XDG's).
pub fn resolve_db(
    flag: &Option<String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<PathBuf, ConfigError> {
    match pick(flag, &settings::DB, env) {
        Some((setting, text)) if text.trim().is_empty() => {
            Err(invalid(&setting, &text, "empty path"))
        }
        Some((_, text)) => Ok(PathBuf::from(text)),
        None => crate::store::default_db_path(env).map_err(|err| {
            invalid(
                settings::DB.env,
                "",
                format!(
                    "{err}; give the database a path with --db or {}",
                    settings::DB.env
                ),
            )
        }),
    }
}

/// The flag's values if any were given, else the environment variable split on `:`; with
/// the name to blame in an error.
fn dir_list(
    flag: &[String],
    setting: &Setting,
    env: &impl Fn(&str) -> Option<String>,
) -> (String, Vec<String>) {
    if flag.is_empty() {
        let from_env = env(setting.env).unwrap_or_default();
        let dirs = from_env
            .split(':')
            .filter(|d| !d.trim().is_empty())
            .map(str::to_owned)
            .collect();
        (setting.env.to_owned(), dirs)
    } else {
        (setting.flag_name(), flag.to_vec())
    }
}

/// Whether `dir` holds a file the engine would load as a rule file. An unreadable directory
/// counts as holding some, so that the engine reports it.
fn holds_rule_files(dir: &std::path::Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .any(|p| p.is_file() && crate::tagging::rules::is_rule_file_name(&p)),
        Err(_) => true,
    }
}

fn existing_dir(setting: &str, dir: &str) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(dir);
    if path.is_dir() {
        Ok(path)
    } else {
        Err(invalid(setting, dir, "no such directory"))
    }
}

/// The flag if given, else the environment variable; with the name to blame in an error.
fn pick(
    flag: &Option<String>,
    setting: &Setting,
    env: &impl Fn(&str) -> Option<String>,
) -> Option<(String, String)> {
    match flag {
        Some(text) => Some((setting.flag_name(), text.clone())),
        None => env(setting.env).map(|text| (setting.env.to_owned(), text)),
    }
}

/// As [`pick`], else the setting's default as `--help` shows it, blamed on the flag.
fn value(
    flag: &Option<String>,
    setting: &Setting,
    env: &impl Fn(&str) -> Option<String>,
) -> (String, String) {
    pick(flag, setting, env).unwrap_or_else(|| {
        let default = setting
            .default
            .expect("a setting resolved by value has a default");
        (setting.flag_name(), default.to_owned())
    })
}

/// A secret or certificate file that cannot be used: the setting and path, never the content.
fn unreadable(setting: &str, path: &str, err: SecretFileError) -> ConfigError {
    invalid(setting, path, err.to_string())
}

fn invalid(setting: &str, value: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_owned(),
        value: value.to_owned(),
        problem: problem.into(),
    }
}

fn check_bus_type(value: Option<String>) -> Result<(), ConfigError> {
    match value {
        None => Ok(()),
        Some(text) => match text.trim().to_ascii_lowercase().as_str() {
            "" | "nats" => Ok(()),
            "unix" => Err(ConfigError::UnixBus),
            _ => Err(ConfigError::UnknownBusType(text)),
        },
    }
}

/// Strict booleans: an operator who wrote `DECNET_BUS_DURABLE=ture` wants to hear about it.
fn parse_bool(setting: &str, text: &str) -> Result<bool, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(
            setting,
            text,
            "expected true or false (also 1/0, yes/no, on/off)",
        )),
    }
}

fn parse_interval(setting: &str, text: &str) -> Result<Duration, ConfigError> {
    let secs: f64 = text.trim().parse().map_err(|_| {
        invalid(
            setting,
            text,
            "expected a number of seconds, e.g. 30 or 0.5",
        )
    })?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(invalid(setting, text, "must be greater than 0 seconds"));
    }
    if secs > MAX_INTERVAL_SECS {
        return Err(invalid(
            setting,
            text,
            "must be at most one week (604800 s)",
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// JetStream names become subject tokens and file names on the server.
fn parse_stream_name(setting: &str, text: &str) -> Result<String, ConfigError> {
    crate::topics::validate_segment(text)
        .map_err(|e| invalid(setting, text, e.problem.to_string()))?;
    if text.contains(['/', '\\']) {
        return Err(invalid(setting, text, "it contains a path separator"));
    }
    Ok(text.to_owned())
}

/// Accepts what the NATS client accepts: a comma-separated list of `nats://` or `tls://`
/// URLs, or bare `host[:port]` (taken as `nats://`).
fn parse_bus_urls(setting: &str, text: &str) -> Result<Vec<String>, ConfigError> {
    let mut urls = Vec::new();
    for entry in text.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err(invalid(
                setting,
                &redact_url(text),
                "empty server address in the list",
            ));
        }
        let with_scheme = if entry.contains("://") {
            entry.to_owned()
        } else {
            format!("nats://{entry}")
        };
        let shown = redact_url(entry);
        let url =
            url::Url::parse(&with_scheme).map_err(|e| invalid(setting, &shown, e.to_string()))?;
        if !matches!(url.scheme(), "nats" | "tls") {
            return Err(invalid(
                setting,
                &shown,
                format!(
                    "unsupported scheme {:?}: use nats:// or tls://",
                    url.scheme()
                ),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid(setting, &shown, "no host name"));
        }
        urls.push(with_scheme);
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::security::Secret;
    use std::collections::HashMap;

    /// Resolves with `env` plus a `HOME`, as every login and service has one.
    fn resolve(flags: RunArgs, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.entry("HOME".into())
            .or_insert_with(|| "/home/ops".into());
        Config::resolve(&flags, |name| env.get(name).cloned())
    }

    fn resolve_bridge_with(
        flags: BridgeArgs,
        env: &[(&str, &str)],
    ) -> Result<BridgeConfig, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve_bridge(&flags, |name| env.get(name).cloned())
    }

    #[test]
    fn the_bridge_finds_decnets_socket_as_decnet_does_and_ignores_its_bus_type() {
        let config = resolve_bridge_with(
            BridgeArgs::default(),
            &[("HOME", "/home/ops"), (ENV_BUS_TYPE, "unix")],
        )
        .unwrap();
        // This machine has no /run/decnet; DECNET's clients then use the home directory.
        if !std::path::Path::new("/run/decnet").is_dir() {
            assert_eq!(config.socket, PathBuf::from("/home/ops/.decnet/bus.sock"));
        }
        assert_eq!(config.queue, 10_000);
        assert!(!config.bus.durable);
        assert_eq!(config.bus.urls, ["nats://127.0.0.1:4222"]);

        let config = resolve_bridge_with(
            BridgeArgs {
                queue: Some("50".into()),
                ..Default::default()
            },
            &[
                ("DECNET_BUS_SOCKET", "/srv/decnet/bus.sock"),
                ("DECNET_BUS_DURABLE", "true"),
            ],
        )
        .unwrap();
        assert_eq!(config.socket, PathBuf::from("/srv/decnet/bus.sock"));
        assert_eq!(config.queue, 50);
        assert!(config.bus.durable);
    }

    #[test]
    fn a_bridge_setting_that_cannot_be_used_is_named() {
        for (flags, env, named) in [
            (
                BridgeArgs {
                    queue: Some("0".into()),
                    ..Default::default()
                },
                vec![],
                "--queue",
            ),
            (
                BridgeArgs::default(),
                vec![("DECNET_TTP_BRIDGE_QUEUE", "lots")],
                "DECNET_TTP_BRIDGE_QUEUE",
            ),
            (
                BridgeArgs::default(),
                vec![("DECNET_BUS_SOCKET", " ")],
                "DECNET_BUS_SOCKET",
            ),
            (
                BridgeArgs {
                    bus_url: Some("http://x".into()),
                    ..Default::default()
                },
                vec![],
                "--bus-url",
            ),
        ] {
            let err = resolve_bridge_with(flags, &env).unwrap_err().to_string();
            assert!(err.contains(named), "{named}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = resolve(RunArgs::default(), &[]).unwrap();
        assert_eq!(
            config,
            Config {
                bus: BusSettings {
                    urls: vec!["nats://127.0.0.1:4222".into()],
                    enabled: true,
                    heartbeat_interval: Duration::from_secs(30),
                    connect_timeout: Duration::from_secs(2),
                    durable: false,
                    stream: StreamConfig {
                        name: "DECNET_TTP_IN".into(),
                        max_age: Duration::from_secs(604_800),
                        max_bytes: 1 << 30,
                        ack_wait: Duration::from_secs(30),
                    },
                    security: BusSecurity::default(),
                },
                poll_interval: Duration::from_secs(60),
                engine: EngineOptions::default(),
                db: PathBuf::from("/home/ops/.local/state/ttp-worker/ttp.db"),
                decnet_db: None,
            }
        );
    }

    #[test]
    fn flags_win_over_environment() {
        let flags = RunArgs {
            bus_url: Some("nats://flag:1".into()),
            poll_interval: Some("5".into()),
            heartbeat_interval: Some("0.5".into()),
            ..RunArgs::default()
        };
        let env = [
            (settings::BUS_URL.env, "nats://env:2"),
            (settings::POLL_INTERVAL.env, "7"),
            (settings::HEARTBEAT_INTERVAL.env, "9"),
        ];
        let config = resolve(flags, &env).unwrap();
        assert_eq!(config.bus.urls, ["nats://flag:1"]);
        assert_eq!(config.poll_interval, Duration::from_secs(5));
        assert_eq!(config.bus.heartbeat_interval, Duration::from_millis(500));

        let config = resolve(RunArgs::default(), &env).unwrap();
        assert_eq!(config.bus.urls, ["nats://env:2"]);
        assert_eq!(config.poll_interval, Duration::from_secs(7));
        assert_eq!(config.bus.heartbeat_interval, Duration::from_secs(9));
    }

    #[test]
    fn url_lists_and_bare_hosts() {
        let config = resolve(
            RunArgs::default(),
            &[(settings::BUS_URL.env, "nats://a:4222, tls://b:4443,c")],
        )
        .unwrap();
        assert_eq!(
            config.bus.urls,
            ["nats://a:4222", "tls://b:4443", "nats://c"]
        );
    }

    #[test]
    fn bad_urls_are_named_without_their_secrets() {
        for bad in [
            "http://host",
            "nats://",
            "nats://host:99999",
            "a,,b",
            "nats://user:hunter2@host:99999",
            // The password's `/` makes the URL unparsable; it must not be shown anyway.
            "nats://ttp:hunter2/Slash@host:4222",
            "nats://ttp:hunter2?x#y@host:4222",
        ] {
            let err = resolve(RunArgs::default(), &[(settings::BUS_URL.env, bad)]).unwrap_err();
            let line = err.to_string();
            assert!(line.contains(settings::BUS_URL.env), "{line}");
            assert!(!line.contains("hunter2"), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn intervals_must_be_positive_numbers() {
        for bad in ["0", "-1", "abc", "", "nan", "inf", "1e12"] {
            let err =
                resolve(RunArgs::default(), &[(settings::POLL_INTERVAL.env, bad)]).unwrap_err();
            assert!(
                err.to_string().contains(settings::POLL_INTERVAL.env),
                "{err}"
            );
            let flags = RunArgs {
                heartbeat_interval: Some(bad.into()),
                ..RunArgs::default()
            };
            let err = resolve(flags, &[]).unwrap_err();
            assert!(err.to_string().contains("--heartbeat-interval"), "{err}");
        }
    }

    #[test]
    fn bus_type_must_be_nats() {
        assert!(resolve(RunArgs::default(), &[(ENV_BUS_TYPE, "nats")]).is_ok());
        assert!(resolve(RunArgs::default(), &[(ENV_BUS_TYPE, "NATS")]).is_ok());
        assert_eq!(
            resolve(RunArgs::default(), &[(ENV_BUS_TYPE, "unix")]),
            Err(ConfigError::UnixBus)
        );
        assert_eq!(
            resolve(RunArgs::default(), &[(ENV_BUS_TYPE, "fake")]),
            Err(ConfigError::UnknownBusType("fake".into()))
        );
    }

    #[test]
    fn bus_can_be_disabled_by_environment_or_flag() {
        for off in ["false", "FALSE", "0", "no", "off"] {
            let config = resolve(RunArgs::default(), &[(settings::NO_BUS.env, off)]).unwrap();
            assert!(!config.bus.enabled, "{off}");
        }
        let config = resolve(RunArgs::default(), &[(settings::NO_BUS.env, "true")]).unwrap();
        assert!(config.bus.enabled);
        let flags = RunArgs {
            no_bus: true,
            ..RunArgs::default()
        };
        assert!(
            !resolve(flags, &[(settings::NO_BUS.env, "true")])
                .unwrap()
                .bus
                .enabled
        );
        assert!(resolve(RunArgs::default(), &[(settings::NO_BUS.env, "maybe")]).is_err());
    }

    #[test]
    fn stream_settings() {
        let env = [
            (settings::STREAM.env, "EVENTS"),
            (settings::STREAM_MAX_AGE.env, "2d"),
            (settings::STREAM_MAX_BYTES.env, "256M"),
            (settings::ACK_WAIT.env, "5s"),
        ];
        let stream = resolve(RunArgs::default(), &env).unwrap().bus.stream;
        assert_eq!(stream.ack_wait, Duration::from_secs(5));
        assert_eq!(stream.name, "EVENTS");
        assert_eq!(stream.max_age, Duration::from_secs(172_800));
        assert_eq!(stream.max_bytes, 256 << 20);
        for (name, bad) in [
            (settings::STREAM.env, "a.b"),
            (settings::STREAM.env, "a/b"),
            (settings::STREAM.env, ""),
            (settings::STREAM_MAX_AGE.env, "0"),
            (settings::STREAM_MAX_AGE.env, "forever"),
            (settings::STREAM_MAX_BYTES.env, "much"),
        ] {
            let err = resolve(RunArgs::default(), &[(name, bad)]).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn normalize_commands_from_the_flag_or_the_environment() {
        let view = |flag: bool, env: &[(&str, &str)]| {
            let flags = RunArgs {
                engine: EngineArgs {
                    normalize_commands: flag,
                    ..EngineArgs::default()
                },
                ..RunArgs::default()
            };
            resolve(flags, env).map(|config| config.engine.command_view)
        };
        let env = settings::NORMALIZE_COMMANDS.env;
        assert_eq!(view(false, &[]).unwrap(), CommandView::BuiltinRules);
        assert_eq!(view(true, &[]).unwrap(), CommandView::EveryRule);
        assert_eq!(view(false, &[(env, "1")]).unwrap(), CommandView::EveryRule);
        assert_eq!(
            view(false, &[(env, "0")]).unwrap(),
            CommandView::BuiltinRules
        );
        let err = view(false, &[(env, "sometimes")]).unwrap_err();
        assert!(err.to_string().contains(env), "{err}");
    }

    #[test]
    fn engine_paths_from_flags_or_environment() {
        let dir = std::env::temp_dir();
        let dir_text = dir.to_str().unwrap();
        let env = [(settings::RULES.env, format!("{dir_text}:{dir_text}"))];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let engine = resolve(RunArgs::default(), &env).unwrap().engine;
        assert_eq!(engine.rules_dirs, [dir.clone(), dir.clone()]);
        // --rules replaces the built-in pack.
        assert!(engine.no_builtin_rules);

        let flags = RunArgs {
            engine: EngineArgs {
                rules: vec![dir_text.to_owned()],
                no_builtin_rules: true,
                ..EngineArgs::default()
            },
            ..RunArgs::default()
        };
        let engine = resolve(flags, &[(settings::RULES.env, "/nonexistent")])
            .unwrap()
            .engine;
        assert_eq!(engine.rules_dirs, [dir]);
        assert!(engine.no_builtin_rules);

        for (name, value) in [
            (settings::RULES.env, "/no/such/rules"),
            (settings::INTEL_MAPS.env, "/no/such/maps"),
            (settings::ANCHORS.env, "/no/such/anchors.json"),
            (settings::NO_BUILTIN_RULES.env, "perhaps"),
        ] {
            let err = resolve(RunArgs::default(), &[(name, value)]).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn database_location() {
        let db = |flags: RunArgs, env: &[(&str, &str)]| resolve(flags, env).unwrap().db;
        assert_eq!(
            db(
                RunArgs::default(),
                &[("STATE_DIRECTORY", "/var/lib/ttp-worker")]
            ),
            PathBuf::from("/var/lib/ttp-worker/ttp.db")
        );
        assert_eq!(
            db(
                RunArgs::default(),
                &[(settings::DB.env, "/tmp/a.db"), ("STATE_DIRECTORY", "/x")]
            ),
            PathBuf::from("/tmp/a.db")
        );
        let flags = RunArgs {
            db: Some("/tmp/b.db".into()),
            ..RunArgs::default()
        };
        assert_eq!(
            db(flags, &[(settings::DB.env, "/tmp/a.db")]),
            PathBuf::from("/tmp/b.db")
        );
        assert!(resolve(RunArgs::default(), &[(settings::DB.env, " ")]).is_err());
    }

    #[test]
    fn durable_from_flag_or_environment() {
        assert!(
            resolve(RunArgs::default(), &[(settings::DURABLE.env, "true")])
                .unwrap()
                .bus
                .durable
        );
        assert!(
            !resolve(RunArgs::default(), &[(settings::DURABLE.env, "0")])
                .unwrap()
                .bus
                .durable
        );
        let flags = RunArgs {
            durable: true,
            ..RunArgs::default()
        };
        assert!(resolve(flags, &[]).unwrap().bus.durable);
        let err = resolve(RunArgs::default(), &[(settings::DURABLE.env, "ture")]).unwrap_err();
        assert!(err.to_string().contains(settings::DURABLE.env));
    }
    /// A file in a fresh directory, for secret-file settings.
    fn secret_file(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn security(env: &[(&str, &str)]) -> Result<BusSecurity, ConfigError> {
        resolve(RunArgs::default(), env).map(|c| c.bus.security)
    }

    #[test]
    fn local_rules_add_to_the_builtin_pack_and_empty_ones_are_left_out() {
        let empty = tempfile::tempdir().unwrap();
        std::fs::write(empty.path().join("README"), "not a rule").unwrap();
        let full = tempfile::tempdir().unwrap();
        std::fs::write(full.path().join("L1.yaml"), "rule_id: L1\n").unwrap();
        let (empty_text, full_text) = (
            empty.path().to_str().unwrap(),
            full.path().to_str().unwrap(),
        );
        let env = format!("{empty_text}:{full_text}");
        let engine = resolve(RunArgs::default(), &[(settings::LOCAL_RULES.env, &env)])
            .unwrap()
            .engine;
        assert_eq!(engine.rules_dirs, [full.path().to_path_buf()]);
        assert!(!engine.no_builtin_rules);

        // The packaged default: an empty rules.d leaves the engine as without it.
        let engine = resolve(
            RunArgs::default(),
            &[(settings::LOCAL_RULES.env, empty_text)],
        )
        .unwrap()
        .engine;
        assert_eq!(engine, EngineOptions::default());

        // --rules replaces the pack; local rules come after its directories.
        let flags = RunArgs {
            engine: EngineArgs {
                rules: vec![empty_text.to_owned()],
                local_rules: vec![full_text.to_owned()],
                ..EngineArgs::default()
            },
            ..RunArgs::default()
        };
        let engine = resolve(flags, &[]).unwrap().engine;
        assert_eq!(
            engine.rules_dirs,
            [empty.path().to_path_buf(), full.path().to_path_buf()]
        );
        assert!(engine.no_builtin_rules);

        let err = resolve(
            RunArgs::default(),
            &[(settings::LOCAL_RULES.env, "/no/such/rules.d")],
        )
        .unwrap_err();
        assert!(err.to_string().contains(settings::LOCAL_RULES.env), "{err}");
    }

    #[test]
    fn secrets_are_read_from_files_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let password = secret_file(&dir, "pw", "pa ss-w0rd\n");
        let token = secret_file(&dir, "token", "  t0k3n-s3cr3t \n");
        let got = security(&[
            (settings::BUS_USER.env, "ttp"),
            (settings::BUS_PASSWORD_FILE.env, &password),
        ])
        .unwrap();
        assert_eq!(
            got.auth,
            BusAuth::UserPassword {
                user: "ttp".into(),
                password: Secret::new("pa ss-w0rd"),
            }
        );
        assert!(!format!("{got:?}").contains("w0rd"));
        let got = security(&[(settings::BUS_TOKEN_FILE.env, &token)]).unwrap();
        assert_eq!(got.auth, BusAuth::Token(Secret::new("t0k3n-s3cr3t")));
        assert!(!format!("{got:?}").contains("s3cr3t"));
        assert_eq!(security(&[]).unwrap(), BusSecurity::default());
    }

    #[test]
    fn bad_secret_settings_name_the_setting_and_path_only() {
        let dir = tempfile::tempdir().unwrap();
        let token = secret_file(&dir, "token", "t0k3n-s3cr3t");
        let empty = secret_file(&dir, "empty", "\n");
        let not_pem = secret_file(&dir, "ca.pem", "t0k3n-s3cr3t");
        let not_seed = secret_file(&dir, "seed", "t0k3n-s3cr3t");
        let not_creds = secret_file(&dir, "x.creds", "t0k3n-s3cr3t");
        let missing = dir.path().join("missing").to_str().unwrap().to_owned();
        type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
        let cases: Vec<Case> = vec![
            (
                vec![(settings::BUS_TOKEN_FILE.env, &missing)],
                settings::BUS_TOKEN_FILE.env,
                "no such file",
            ),
            (
                vec![(settings::BUS_TOKEN_FILE.env, &empty)],
                settings::BUS_TOKEN_FILE.env,
                "empty",
            ),
            (
                vec![(settings::BUS_PASSWORD_FILE.env, &token)],
                settings::BUS_PASSWORD_FILE.env,
                "needs a user",
            ),
            (
                vec![(settings::BUS_USER.env, "ttp")],
                settings::BUS_USER.env,
                "needs a password",
            ),
            (
                vec![
                    (settings::BUS_TOKEN_FILE.env, &token),
                    (settings::BUS_CREDS.env, &token),
                ],
                settings::BUS_TOKEN_FILE.env,
                "one way",
            ),
            (
                vec![
                    (settings::BUS_TOKEN_FILE.env, &token),
                    (settings::BUS_URL.env, "nats://u:s3cr3t@h:1"),
                ],
                settings::BUS_TOKEN_FILE.env,
                "one way",
            ),
            (
                vec![(settings::TLS_CA.env, &not_pem)],
                settings::TLS_CA.env,
                "not a PEM",
            ),
            (
                vec![(settings::BUS_NKEY_SEED_FILE.env, &not_seed)],
                settings::BUS_NKEY_SEED_FILE.env,
                "nkey seed",
            ),
            (
                vec![(settings::BUS_CREDS.env, &not_creds)],
                settings::BUS_CREDS.env,
                "credentials file",
            ),
            (
                vec![(settings::TLS_KEY.env, &missing)],
                settings::TLS_KEY.env,
                "no such file",
            ),
        ];
        for (env, setting, problem) in cases {
            let err = security(&env).unwrap_err().to_string();
            assert!(err.contains(setting), "{err}");
            assert!(err.contains(problem), "{err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn nkey_seed_and_tls_files() {
        let dir = tempfile::tempdir().unwrap();
        let pair = nkeys::KeyPair::new_user();
        let seed = secret_file(&dir, "seed", &format!("{}\n", pair.seed().unwrap()));
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let ca = secret_file(&dir, "ca.pem", pem);
        let cert = secret_file(&dir, "cert.pem", pem);
        let key = secret_file(&dir, "key.pem", "-----BEGIN PRIVATE KEY-----\n");
        let got = security(&[
            (settings::BUS_NKEY_SEED_FILE.env, &seed),
            (settings::TLS_CA.env, &ca),
            (settings::TLS_CERT.env, &cert),
            (settings::TLS_KEY.env, &key),
        ])
        .unwrap();
        assert_eq!(got.auth, BusAuth::NKey(Secret::new(pair.seed().unwrap())));
        assert!(got.tls.required());
        assert_eq!(got.tls.ca, Some(PathBuf::from(&ca)));
        assert_eq!(
            got.tls.client_cert,
            Some((PathBuf::from(&cert), PathBuf::from(&key)))
        );
        let err = security(&[(settings::TLS_CERT.env, &cert)]).unwrap_err();
        assert!(err.to_string().contains("--tls-key"), "{err}");
    }

    #[test]
    fn decnets_mysql_password_from_a_file_or_decnets_variable_never_from_a_flag_url() {
        let dir = tempfile::tempdir().unwrap();
        let file = secret_file(&dir, "db", "s3cr:et\n");
        let password =
            |env: &[(&str, &str)], flags: RunArgs| match resolve(flags, env).map(|c| c.decnet_db) {
                Ok(Some(DecnetDbSettings::Mysql { password, .. })) => Ok(password),
                Ok(other) => panic!("{other:?}"),
                Err(e) => Err(e.to_string()),
            };
        let mysql = ("DECNET_DB_TYPE", "mysql");
        assert_eq!(
            password(
                &[mysql, (settings::DECNET_DB_PASSWORD_FILE.env, &file)],
                RunArgs::default()
            ),
            Ok(Some(Secret::new("s3cr:et")))
        );
        // The file wins over DECNET's variable; the variable alone works too.
        assert_eq!(
            password(
                &[
                    mysql,
                    (settings::DECNET_DB_PASSWORD_FILE.env, &file),
                    (settings::ENV_DECNET_DB_PASSWORD, "env")
                ],
                RunArgs::default()
            ),
            Ok(Some(Secret::new("s3cr:et")))
        );
        assert_eq!(
            password(
                &[mysql, (settings::ENV_DECNET_DB_PASSWORD, "env")],
                RunArgs::default()
            ),
            Ok(Some(Secret::new("env")))
        );
        let missing = password(
            &[
                mysql,
                (settings::DECNET_DB_PASSWORD_FILE.env, "/nonexistent/pw"),
            ],
            RunArgs::default(),
        )
        .unwrap_err();
        assert!(missing.contains("DECNET_DB_PASSWORD_FILE") && missing.contains("no such file"));
        // A password in the URL flag is refused, and not shown.
        let flags = RunArgs {
            decnet_db: DecnetDbArgs {
                decnet_db_url: Some("mysql://decnet:hunter2@db/decnet".into()),
                ..DecnetDbArgs::default()
            },
            ..RunArgs::default()
        };
        let err = password(&[mysql], flags).unwrap_err();
        assert!(
            err.contains("--decnet-db-url") && err.contains("ps"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        // Without one it is fine; in DECNET_DB_URL it is DECNET's way and accepted.
        let flags = RunArgs {
            decnet_db: DecnetDbArgs {
                decnet_db_url: Some("mysql://decnet@db/decnet".into()),
                ..DecnetDbArgs::default()
            },
            ..RunArgs::default()
        };
        assert_eq!(password(&[mysql], flags), Ok(None));
        assert_eq!(
            password(
                &[mysql, ("DECNET_DB_URL", "mysql://decnet:hunter2@db/decnet")],
                RunArgs::default()
            ),
            Ok(Some(Secret::new("hunter2")))
        );
        // Not mysql: the MySQL settings are not read at all.
        let sqlite = resolve(
            RunArgs::default(),
            &[
                ("DECNET_DB_PATH", "/x.db"),
                (settings::DECNET_DB_PASSWORD_FILE.env, "/nonexistent"),
            ],
        );
        assert!(sqlite.is_ok());
    }
}
