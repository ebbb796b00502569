//! DECNET's own database as the tag store (docs/decnet-db.md): where DECNET's dashboard, API
//! and clusterer read tags. The daemon's DECNET pipeline (`daemon/decnet_pipeline.rs`) asks
//! it which attacker an address is, for intel rows and for which anchors exist, and writes
//! each batch's tags in one transaction; the worker's own store holds what cannot go in yet.
//!
//! Layout: `settings.rs` (which database, from DECNET's variables), `schema.rs` (what must
//! exist), `encode.rs` (values as DECNET writes them), `intel.rs` (the catch-up payload),
//! `ipv6.rs` (the leak record), `cache.rs` (addresses looked up), one file per database kind
//! behind [`Backend`] (`backend.rs`: `sqlite.rs`, `mysql.rs`), the operator's reads of MySQL
//! (`mysql_read.rs`), `error.rs`.

mod backend;
mod cache;
mod encode;
mod error;
mod intel;
mod ipv6;
mod mysql;
mod mysql_read;
mod schema;
pub mod settings;
mod sqlite;

pub use backend::{Backend, Written};
pub use cache::AttackerCache;
pub use encode::python_json;
pub use error::DbError;
pub use mysql::{Connect, MysqlDb};
pub use schema::{REQUIRED, SchemaMismatch};
pub use settings::DecnetDbSettings;
pub use sqlite::SqliteDb;

/// Opens the configured database and checks its schema; a MySQL server that cannot be
/// reached yet is waited for.
pub fn open(settings: &DecnetDbSettings) -> Result<Box<dyn Backend + Send>, DbError> {
    match settings {
        DecnetDbSettings::Sqlite { path } => Ok(Box::new(SqliteDb::open(path)?)),
        DecnetDbSettings::Mysql { .. } => {
            Ok(Box::new(open_mysql(settings, Connect::WaitForServer)?))
        }
    }
}

/// DECNET's tags matching `query` (the operator's `tags`), read-only.
pub fn query_tags(
    settings: &DecnetDbSettings,
    query: &crate::store::TagsQuery,
) -> Result<Vec<crate::store::StoredTag>, DbError> {
    match settings {
        DecnetDbSettings::Sqlite { path } => SqliteDb::open_read_only(path)?.query_tags(query),
        DecnetDbSettings::Mysql { .. } => open_mysql(settings, Connect::Once)?.query_tags(query),
    }
}

/// Counts over DECNET's tags (the operator's `stats`), read-only.
pub fn stats(settings: &DecnetDbSettings) -> Result<crate::store::Stats, DbError> {
    match settings {
        DecnetDbSettings::Sqlite { path } => SqliteDb::open_read_only(path)?.stats(),
        DecnetDbSettings::Mysql { .. } => open_mysql(settings, Connect::Once)?.stats(),
    }
}

/// The MySQL database of `settings`.
fn open_mysql(settings: &DecnetDbSettings, connect: Connect) -> Result<MysqlDb, DbError> {
    match settings {
        DecnetDbSettings::Mysql {
            host,
            port,
            database,
            user,
            password,
            tls,
        } => MysqlDb::open(
            host,
            *port,
            database,
            user,
            password.as_ref(),
            tls.as_ref(),
            connect,
        ),
        DecnetDbSettings::Sqlite { .. } => unreachable!("called for MySQL settings only"),
    }
}
