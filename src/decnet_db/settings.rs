//! Which DECNET database to use, from the variables DECNET itself reads (docs/decnet-db.md §1),
//! so that a worker given DECNET's environment finds DECNET's database.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecnetDbSettings {
    /// DECNET's SQLite file (`DECNET_DB_PATH`).
    Sqlite { path: PathBuf },
}

/// Why the DECNET database settings cannot be used; each names the setting to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "{type_name}=sqlite needs {path_name}: the path of the SQLite file DECNET's own processes use"
    )]
    NoPath {
        type_name: String,
        path_name: String,
    },
    #[error(
        "{type_name}=mysql: this ttp-worker writes only to DECNET's SQLite database so far; \
         leave {type_name} unset to use the worker's own store"
    )]
    MysqlUnsupported { type_name: String },
    #[error("unknown {type_name} {value:?}: DECNET's database is sqlite or mysql")]
    UnknownType { type_name: String, value: String },
    #[error("{path_name} is empty")]
    EmptyPath { path_name: String },
}

/// `db_type` and `path` as given (flag or environment), with the names to blame. `None` when
/// neither is set: the worker then uses its own store only.
pub fn resolve(
    db_type: Option<(&str, &str)>,
    path: Option<(&str, &str)>,
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
        "mysql" => Err(SettingsError::MysqlUnsupported { type_name }),
        _ => Err(SettingsError::UnknownType {
            type_name,
            value: kind,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decnets_variables_choose_the_database() {
        let t = |v| Some(("DECNET_DB_TYPE", v));
        let p = |v| Some(("DECNET_DB_PATH", v));
        assert_eq!(resolve(None, None), Ok(None));
        assert_eq!(
            resolve(None, p("/var/lib/decnet/decnet.db")),
            Ok(Some(DecnetDbSettings::Sqlite {
                path: "/var/lib/decnet/decnet.db".into()
            }))
        );
        assert_eq!(
            resolve(t("SQLite"), p("x.db")),
            Ok(Some(DecnetDbSettings::Sqlite {
                path: "x.db".into()
            }))
        );
        assert!(matches!(
            resolve(t("sqlite"), None),
            Err(SettingsError::NoPath { .. })
        ));
        assert!(matches!(
            resolve(t("mysql"), None),
            Err(SettingsError::MysqlUnsupported { .. })
        ));
        assert!(matches!(
            resolve(t("pg"), None),
            Err(SettingsError::UnknownType { .. })
        ));
        assert!(matches!(
            resolve(None, p(" ")),
            Err(SettingsError::EmptyPath { .. })
        ));
    }
}
