//! Which DECNET database to use, from the variables DECNET itself reads (docs/decnet-db.md §1),
//! so that a worker given DECNET's environment finds DECNET's database.

use std::path::PathBuf;

use crate::bus::security::Secret;
use crate::redact::redact_url;

/// MySQL's port when none is given, as DECNET defaults it.
pub const DEFAULT_PORT: u16 = 3306;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecnetDbSettings {
    /// DECNET's SQLite file (`DECNET_DB_PATH`).
    Sqlite { path: PathBuf },
    /// DECNET's MySQL or MariaDB database (`DECNET_DB_URL`, else `DECNET_DB_HOST` and the
    /// others). The password's `Debug` is `Secret(***)`.
    Mysql {
        host: String,
        port: u16,
        database: String,
        user: String,
        password: Option<Secret>,
        tls: Option<MysqlTls>,
    },
}

impl DecnetDbSettings {
    /// Which database, for messages: never the password.
    pub fn describe(&self) -> String {
        match self {
            DecnetDbSettings::Sqlite { path } => format!("SQLite {}", path.display()),
            DecnetDbSettings::Mysql {
                host,
                port,
                database,
                user,
                tls,
                ..
            } => describe_mysql(user, host, *port, database, tls.is_some()),
        }
    }
}

/// `MySQL user@host:port/name`, ` (TLS)` when it is asked for: how every message names a
/// MySQL database (never with the password).
pub(crate) fn describe_mysql(
    user: &str,
    host: &str,
    port: u16,
    database: &str,
    tls: bool,
) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let tls = if tls { " (TLS)" } else { "" };
    format!("MySQL {user}@{host}:{port}/{database}{tls}")
}

/// TLS to the MySQL server; present means required (no clear-text fallback).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MysqlTls {
    /// PEM CA certificate(s) the server must chain to, instead of the built-in web roots.
    pub ca: Option<PathBuf>,
    /// `ssl-mode=VERIFY_CA`: the chain is checked, the host name is not.
    pub skip_host_check: bool,
}

/// The MySQL settings as given (flag or environment), each with the name to blame. The
/// password is read by the caller (file or `DECNET_DB_PASSWORD`), so that it never passes
/// through here as plain text.
#[derive(Debug, Clone, Default)]
pub struct MysqlInputs {
    pub url: Option<(String, String)>,
    pub host: Option<(String, String)>,
    pub port: Option<(String, String)>,
    pub name: Option<(String, String)>,
    pub user: Option<(String, String)>,
    pub password: Option<Secret>,
}

/// Why the DECNET database settings cannot be used; each names the setting to change. A
/// value shown here never carries a password (URLs go through [`redact_url`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "{type_name}=sqlite needs {path_name}: the path of the SQLite file DECNET's own processes use"
    )]
    NoPath {
        type_name: String,
        path_name: String,
    },
    #[error("unknown {type_name} {value:?}: DECNET's database is sqlite or mysql")]
    UnknownType { type_name: String, value: String },
    #[error("{path_name} is empty")]
    EmptyPath { path_name: String },
    #[error("invalid value {value:?} for {setting}: {problem}")]
    Invalid {
        setting: String,
        value: String,
        problem: String,
    },
}

fn invalid(setting: &str, value: &str, problem: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        setting: setting.to_owned(),
        value: value.to_owned(),
        problem: problem.into(),
    }
}

/// `db_type` and `path` as given (flag or environment), with the names to blame, and the
/// MySQL settings. `None` when neither type nor path is set (as for DECNET, whose default is
/// SQLite, a MySQL URL alone does not choose MySQL): the worker then uses its own store only.
pub fn resolve(
    db_type: Option<(&str, &str)>,
    path: Option<(&str, &str)>,
    mysql: MysqlInputs,
) -> Result<Option<DecnetDbSettings>, SettingsError> {
    let type_name = db_type
        .map_or("DECNET_DB_TYPE", |(name, _)| name)
        .to_owned();
    let kind = match db_type {
        None if path.is_none() => return Ok(None),
        None => "sqlite".to_owned(),
        Some((_, value)) => value.trim().to_ascii_lowercase(),
    };
    match kind.as_str() {
        "sqlite" => match path {
            None => Err(SettingsError::NoPath {
                type_name,
                path_name: "DECNET_DB_PATH".into(),
            }),
            Some((name, value)) if value.trim().is_empty() => Err(SettingsError::EmptyPath {
                path_name: name.to_owned(),
            }),
            Some((_, value)) => Ok(Some(DecnetDbSettings::Sqlite {
                path: PathBuf::from(value),
            })),
        },
        "mysql" => resolve_mysql(mysql).map(Some),
        _ => Err(SettingsError::UnknownType {
            type_name,
            value: kind,
        }),
    }
}

/// DECNET's order (docs/decnet-db.md §1): a URL, when set, is the whole answer; else the
/// parts, with DECNET's defaults.
fn resolve_mysql(inputs: MysqlInputs) -> Result<DecnetDbSettings, SettingsError> {
    if let Some((setting, url)) = &inputs.url {
        return parse_url(setting, url, inputs.password);
    }
    let text = |v: &Option<(String, String)>, default: &str| -> Result<String, SettingsError> {
        match v {
            Some((setting, value)) if value.trim().is_empty() => {
                Err(invalid(setting, value, "empty"))
            }
            Some((_, value)) => Ok(value.trim().to_owned()),
            None => Ok(default.to_owned()),
        }
    };
    let port = match &inputs.port {
        Some((setting, value)) => parse_port(setting, value)?,
        None => DEFAULT_PORT,
    };
    Ok(DecnetDbSettings::Mysql {
        host: text(&inputs.host, "localhost")?,
        port,
        database: text(&inputs.name, "decnet")?,
        user: text(&inputs.user, "decnet")?,
        password: inputs.password.filter(|p| !p.expose().is_empty()),
        tls: None,
    })
}

fn parse_port(setting: &str, value: &str) -> Result<u16, SettingsError> {
    match value.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(invalid(setting, value, "expected a TCP port, 1 to 65535")),
    }
}

/// The schemes DECNET's SQLAlchemy URLs use for MySQL, drivers included.
const SCHEMES: [&str; 4] = ["mysql", "mysql+asyncmy", "mysql+aiomysql", "mysql+pymysql"];

/// A SQLAlchemy-style URL, `mysql+DRIVER://user:password@host:port/database?options`. User and
/// password are percent-decoded as SQLAlchemy decodes them. A password in the URL wins over
/// `fallback_password` (DECNET reads nothing else once the URL is set).
fn parse_url(
    setting: &str,
    url: &str,
    fallback_password: Option<Secret>,
) -> Result<DecnetDbSettings, SettingsError> {
    let shown = redact_url(url.trim());
    let bad = |problem: &str| invalid(setting, &shown, problem);
    let parsed = url::Url::parse(url.trim()).map_err(|e| {
        bad(&format!(
            "not a URL ({e}); expected mysql://USER@HOST:PORT/DATABASE"
        ))
    })?;
    if !SCHEMES.contains(&parsed.scheme()) {
        return Err(bad(&format!(
            "expected a MySQL URL: the scheme is one of {}",
            SCHEMES.join(", ")
        )));
    }
    let host = parsed
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("the URL names no host"))?
        .to_owned();
    let port = parsed.port().unwrap_or(DEFAULT_PORT);
    let database = percent_decode(parsed.path().trim_start_matches('/'))
        .ok_or_else(|| bad("the database name is not valid percent-encoded UTF-8"))?;
    if database.is_empty() || database.contains('/') {
        return Err(bad(
            "the URL names no database: add /DATABASE after the host",
        ));
    }
    let user = percent_decode(parsed.username())
        .ok_or_else(|| bad("the user name is not valid percent-encoded UTF-8"))?;
    let user = if user.is_empty() {
        "decnet".to_owned()
    } else {
        user
    };
    let password = match parsed.password() {
        Some(encoded) => {
            Some(Secret::new(percent_decode(encoded).ok_or_else(|| {
                bad("the password is not valid percent-encoded UTF-8")
            })?))
        }
        None => fallback_password,
    }
    .filter(|p| !p.expose().is_empty());
    let tls = tls_from_query(&parsed).map_err(|problem| bad(&problem))?;
    Ok(DecnetDbSettings::Mysql {
        host,
        port,
        database,
        user,
        password,
        tls,
    })
}

/// TLS from the URL's options, as MySQL's clients and DECNET's drivers spell them: `ssl`
/// (`true`/`1`/`yes`), `ssl-mode`/`ssl_mode`/`sslmode` (`REQUIRED`, `VERIFY_IDENTITY`,
/// `VERIFY_CA`; `DISABLED` and `PREFERRED` mean none: this client does not try TLS and fall
/// back), `ssl_ca`/`ssl-ca` (a CA file, which asks for TLS too). `charset` is accepted and
/// ignored (the worker always speaks utf8mb4); other options are refused, so that a TLS
/// option spelt in a way not known here is not silently ignored.
fn tls_from_query(url: &url::Url) -> Result<Option<MysqlTls>, String> {
    let mut wanted = false;
    let mut tls = MysqlTls::default();
    for (key, value) in url.query_pairs() {
        let key = key.to_ascii_lowercase().replace('-', "_");
        let lower = value.trim().to_ascii_lowercase();
        match key.as_str() {
            "ssl" | "tls" => match lower.as_str() {
                "true" | "1" | "yes" | "on" | "required" => wanted = true,
                "false" | "0" | "no" | "off" => wanted = false,
                _ => return Err(format!("option {key}={value}: expected true or false")),
            },
            "ssl_mode" | "sslmode" => match lower.as_str() {
                "required" | "require" | "verify_identity" | "verify_full" => wanted = true,
                "verify_ca" => {
                    wanted = true;
                    tls.skip_host_check = true;
                }
                "disabled" | "disable" | "preferred" | "prefer" => wanted = false,
                _ => {
                    return Err(format!(
                        "option {key}={value}: expected DISABLED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY"
                    ));
                }
            },
            "ssl_ca" => {
                if value.trim().is_empty() {
                    return Err(format!("option {key} is empty"));
                }
                wanted = true;
                tls.ca = Some(PathBuf::from(value.trim()));
            }
            "charset" => {}
            _ => {
                return Err(format!(
                    "option {key} is not one this worker knows (ssl, ssl_mode, ssl_ca, charset)"
                ));
            }
        }
    }
    Ok(wanted.then_some(tls))
}

/// `%XX` decoding into UTF-8; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decnets_variables_choose_the_database() {
        let t = |v| Some(("DECNET_DB_TYPE", v));
        let p = |v| Some(("DECNET_DB_PATH", v));
        assert_eq!(resolve(None, None, MysqlInputs::default()), Ok(None));
        assert_eq!(
            resolve(None, p("/var/lib/decnet/decnet.db"), MysqlInputs::default()),
            Ok(Some(DecnetDbSettings::Sqlite {
                path: "/var/lib/decnet/decnet.db".into()
            }))
        );
        assert_eq!(
            resolve(t("SQLite"), p("x.db"), MysqlInputs::default()),
            Ok(Some(DecnetDbSettings::Sqlite {
                path: "x.db".into()
            }))
        );
        assert!(matches!(
            resolve(t("sqlite"), None, MysqlInputs::default()),
            Err(SettingsError::NoPath { .. })
        ));
        assert!(matches!(
            resolve(t("mysql"), None, MysqlInputs::default()),
            Ok(Some(DecnetDbSettings::Mysql { .. }))
        ));
        assert!(matches!(
            resolve(t("pg"), None, MysqlInputs::default()),
            Err(SettingsError::UnknownType { .. })
        ));
        assert!(matches!(
            resolve(None, p(" "), MysqlInputs::default()),
            Err(SettingsError::EmptyPath { .. })
        ));
    }

    fn url_settings(url: &str, password: Option<&str>) -> Result<DecnetDbSettings, SettingsError> {
        let inputs = MysqlInputs {
            url: Some(("DECNET_DB_URL".into(), url.into())),
            password: password.map(Secret::new),
            ..MysqlInputs::default()
        };
        resolve(Some(("DECNET_DB_TYPE", "mysql")), None, inputs)
            .map(|s| s.unwrap_or_else(|| panic!("none")))
    }

    #[test]
    fn a_mysql_url_as_decnets_sqlalchemy_writes_it() {
        for scheme in SCHEMES {
            let got = url_settings(
                &format!("{scheme}://u%40x:p%3Aw%2F%25d@db.example:3307/dec%2Dnet"),
                None,
            );
            assert_eq!(
                got,
                Ok(DecnetDbSettings::Mysql {
                    host: "db.example".into(),
                    port: 3307,
                    database: "dec-net".into(),
                    user: "u@x".into(),
                    password: Some(Secret::new("p:w/%d")),
                    tls: None,
                }),
                "{scheme}"
            );
        }
        // No port, no password in the URL: 3306 and the password from its file.
        assert_eq!(
            url_settings("mysql://decnet@[::1]/decnet?charset=utf8mb4", Some("s3")),
            Ok(DecnetDbSettings::Mysql {
                host: "::1".into(),
                port: 3306,
                database: "decnet".into(),
                user: "decnet".into(),
                password: Some(Secret::new("s3")),
                tls: None,
            })
        );
        // The URL's own password wins, as in DECNET.
        let Ok(DecnetDbSettings::Mysql { password, .. }) =
            url_settings("mysql://u:inurl@h/d", Some("file"))
        else {
            panic!("not mysql");
        };
        assert_eq!(password, Some(Secret::new("inurl")));
    }

    #[test]
    fn tls_options_in_the_url() {
        let tls = |query: &str| match url_settings(&format!("mysql://u@h/d?{query}"), None) {
            Ok(DecnetDbSettings::Mysql { tls, .. }) => Ok(tls),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.to_string()),
        };
        let on = Some(MysqlTls::default());
        assert_eq!(tls("ssl=true"), Ok(on.clone()));
        assert_eq!(tls("ssl-mode=REQUIRED"), Ok(on.clone()));
        assert_eq!(tls("ssl_mode=verify_identity"), Ok(on.clone()));
        assert_eq!(
            tls("sslmode=VERIFY_CA"),
            Ok(Some(MysqlTls {
                ca: None,
                skip_host_check: true
            }))
        );
        assert_eq!(
            tls("ssl_ca=/etc/ssl/db.pem"),
            Ok(Some(MysqlTls {
                ca: Some("/etc/ssl/db.pem".into()),
                skip_host_check: false
            }))
        );
        assert_eq!(tls("ssl=false"), Ok(None));
        assert_eq!(tls("ssl-mode=DISABLED"), Ok(None));
        assert!(tls("ssl=maybe").is_err_and(|e| e.contains("ssl=maybe")));
        assert!(tls("sslcert=x").is_err_and(|e| e.contains("sslcert")));
    }

    #[test]
    fn bad_urls_name_the_setting_and_never_the_password() {
        for (url, problem) in [
            ("postgresql://u:hunter2@h/d", "scheme"),
            ("mysql://u:hunter2@h", "no database"),
            ("mysql://u:hunter2@h:99999/d", "not a URL"),
            (
                "mysql://u:hunter2@h/d?ssl=perhaps",
                "expected true or false",
            ),
            ("mysql://u:hunter2%zz@h/d", "percent-encoded"),
            ("mysql:///d", "no host"),
        ] {
            let text = url_settings(url, None).map(|_| ()).unwrap_err().to_string();
            assert!(text.contains("DECNET_DB_URL"), "{text}");
            assert!(text.contains(problem), "{url}: {text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn the_parts_with_decnets_defaults() {
        let part = |name: &str, value: &str| Some((name.to_owned(), value.to_owned()));
        let mysql = |inputs| resolve(Some(("DECNET_DB_TYPE", "MySQL")), None, inputs);
        assert_eq!(
            mysql(MysqlInputs::default()),
            Ok(Some(DecnetDbSettings::Mysql {
                host: "localhost".into(),
                port: 3306,
                database: "decnet".into(),
                user: "decnet".into(),
                password: None,
                tls: None,
            }))
        );
        assert_eq!(
            mysql(MysqlInputs {
                host: part("DECNET_DB_HOST", "10.0.0.5"),
                port: part("DECNET_DB_PORT", " 3310 "),
                name: part("DECNET_DB_NAME", "honey"),
                user: part("DECNET_DB_USER", "ttp"),
                password: Some(Secret::new("pw")),
                ..MysqlInputs::default()
            }),
            Ok(Some(DecnetDbSettings::Mysql {
                host: "10.0.0.5".into(),
                port: 3310,
                database: "honey".into(),
                user: "ttp".into(),
                password: Some(Secret::new("pw")),
                tls: None,
            }))
        );
        for port in ["0", "x", "70000", ""] {
            let err = mysql(MysqlInputs {
                port: part("DECNET_DB_PORT", port),
                ..MysqlInputs::default()
            });
            assert!(
                matches!(&err, Err(SettingsError::Invalid { setting, .. }) if setting == "DECNET_DB_PORT"),
                "{port}: {err:?}"
            );
        }
        let err = mysql(MysqlInputs {
            host: part("--decnet-db-host", " "),
            ..MysqlInputs::default()
        });
        assert!(matches!(err, Err(SettingsError::Invalid { .. })));
    }

    #[test]
    fn debug_output_hides_the_password() {
        let settings = url_settings("mysql://u:hunter2@h/d", None);
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
