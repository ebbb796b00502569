//! The embedded tag store: one SQLite file holding every tag the worker wrote and the
//! `attacker_ip → attacker_uuid` anchors it learned.
//!
//! The database is the source of truth (docs/bus.md §5.8): `ttp.tagged` is published only for rows
//! an insert really created, so the insert must be idempotent on the tag's deterministic UUID
//! and must say exactly which rows were new. One process writes (see `lock.rs`); any number of
//! operator queries read alongside it, which WAL mode allows without blocking the writer.
//!
//! Layout: `schema.rs` (tables, migrations), `insert.rs` (batches), `anchors.rs` (learned IPs),
//! `query.rs` and `stats.rs` (what the operator commands show, as values: `src/commands/`
//! renders them), `location.rs` (default path), `lock.rs` (single owner), `clock.rs`
//! (timestamps and `--since`), `error.rs`; `db.rs` opens the file, and each of the others adds
//! what it does to [`Store`].

mod anchors;
mod checkpoint;
mod clock;
mod db;
mod error;
#[cfg(test)]
mod fault_tests;
mod insert;
mod location;
mod lock;
mod pending;
mod query;
mod schema;
mod stats;

pub use anchors::Anchor;
pub use checkpoint::{Checkpointer, WRITER_AUTOCHECKPOINT_PAGES};
pub use clock::{format_sql_utc, format_utc};
pub use db::{ATTACK_RELEASE, Store};
pub use error::{BUSY_TIMEOUT, StoreError};
pub use insert::{BatchOutcome, SkipReason, SkippedAnchor, SkippedTag, mitre_url};
pub use location::{DB_FILE_NAME, NoDefaultLocation, default_db_path};
pub use lock::lock_path;
pub use pending::{Held, HeldMessage, PendingEntry, Wait, message_key};
pub use query::{
    DEFAULT_LIMIT, Format, NotATechnique, QueryFailed, StoredTag, TableShape, TagsQuery,
    TagsSelect, parse_evidence, parse_technique, query_tags_in,
};
pub use schema::SCHEMA_VERSION;
pub use stats::{Size, Stats, StatsFailed, StatsSql, stats_in};
