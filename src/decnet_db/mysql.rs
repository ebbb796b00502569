//! DECNET's MySQL or MariaDB database (docs/decnet-db.md §1), through the synchronous `mysql`
//! crate. One connection, made again after the server went away; a batch is one transaction.
//!
//! At start the worker waits for a server it cannot reach (logging each attempt) instead of
//! exiting, so that a database outage at boot is not a restart loop; a server that answers and
//! refuses (wrong password, no such database, a schema without DECNET's tables) stops it with
//! exit 2. Once running, a lost server, a lock wait timeout or a deadlock are transient: the
//! batch is held and retried.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, Params, Row, SslOpts, TxOpts, Value as SqlValue};
use serde_json::{Map, Value};

use super::backend::{Backend, Written};
use super::encode::python_json_object;
use super::error::DbError;
use super::intel::{CATCHUP_COLUMNS, ColumnKind};
use super::ipv6::{Ipv6Leak, leak_records};
use super::schema;
use super::settings::{MysqlTls, describe_mysql};
use crate::bus::security::Secret;
use crate::store::{ATTACK_RELEASE, format_sql_utc, mitre_url};
use crate::tagging::Tag;

/// Lookups go in chunks of at most this many `?` (far under the protocol's 65535); a power of
/// two, see [`statement_size`].
const CHUNK: usize = 512;

/// Prepared statements the client keeps per connection (the crate's default is 32): every
/// statement the worker runs, in every size [`statement_size`] allows, fits.
const STATEMENT_CACHE: usize = 128;
/// One connection attempt; a dead host must not hold the main loop for long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reading or writing one packet; longer than InnoDB's default lock wait (50 s) would be
/// pointless, shorter keeps a hung server from freezing the loop.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection idle this long is pinged before use (servers close idle ones).
const PING_AFTER: Duration = Duration::from_secs(60);
/// Waits between connection attempts at start: doubling up to the last.
const START_RETRY: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(15),
    Duration::from_secs(30),
];

/// Server errors that mean "this row", not "this batch": a foreign key, a check, a value the
/// column does not take. InnoDB undoes only the failed statement, the transaction goes on.
const REFUSALS: [u16; 11] = [
    1048, // column cannot be null
    1216, 1217, 1451, 1452, // foreign keys
    1264, // out of range
    1366, // incorrect value
    1406, // too long
    3140, // invalid JSON (MySQL)
    3819, // check constraint (MySQL)
    4025, // check constraint (MariaDB)
];

/// Server errors worth retrying unchanged: lock wait timeout, deadlock, shutdown, too many
/// connections, a killed or timed-out statement, network errors the server saw.
const TRANSIENT: [u16; 12] = [
    1040, 1053, 1158, 1159, 1160, 1161, 1205, 1213, 1317, 1927, 1969, 4031,
];

/// Server errors at connect that only the operator can fix: access denied, no such database.
const SETUP: [u16; 4] = [1044, 1045, 1049, 1698];

/// What to do about a server that cannot be reached when the database is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    /// The daemon: wait for it (a warning per attempt), so an outage at boot is no restart
    /// loop.
    WaitForServer,
    /// An operator's command: an error at once.
    Once,
}

pub struct MysqlDb {
    opts: Opts,
    /// `user@host:port/database`, for messages (never the password).
    where_: String,
    conn: Option<Conn>,
    last_used: Instant,
}

/// How a `mysql::Error` counts.
enum Kind {
    /// The connection is gone or unusable: drop it, retry later.
    Connection,
    Transient,
    Setup,
    Other,
}

fn kind(err: &mysql::Error) -> Kind {
    match err {
        mysql::Error::MySqlError(e) if SETUP.contains(&e.code) => Kind::Setup,
        mysql::Error::MySqlError(e) if TRANSIENT.contains(&e.code) => Kind::Transient,
        // Client-side codes for a lost server, should a server relay them.
        mysql::Error::MySqlError(e) if matches!(e.code, 2006 | 2013) => Kind::Connection,
        mysql::Error::MySqlError(_)
        | mysql::Error::UrlError(_)
        | mysql::Error::FromValueError(_)
        | mysql::Error::FromRowError(_) => Kind::Other,
        // I/O, protocol, driver (connect timeouts, broken packets) and TLS errors.
        _ => Kind::Connection,
    }
}

impl MysqlDb {
    /// Connects (as `connect` says, for a server that cannot be reached yet) and checks the
    /// schema.
    pub fn open(
        host: &str,
        port: u16,
        database: &str,
        user: &str,
        password: Option<&Secret>,
        tls: Option<&MysqlTls>,
        connect: Connect,
    ) -> Result<MysqlDb, DbError> {
        let mut builder = OptsBuilder::new()
            .ip_or_hostname(Some(host))
            .tcp_port(port)
            .db_name(Some(database))
            .user(Some(user))
            .pass(password.map(|p| p.expose().to_owned()))
            // The crate would otherwise switch a loopback connection to the server's socket.
            .prefer_socket(false)
            .tcp_connect_timeout(Some(CONNECT_TIMEOUT))
            .read_timeout(Some(IO_TIMEOUT))
            .write_timeout(Some(IO_TIMEOUT))
            .stmt_cache_size(Some(STATEMENT_CACHE));
        if let Some(tls) = tls {
            let mut ssl =
                SslOpts::default().with_danger_skip_domain_validation(tls.skip_host_check);
            if let Some(ca) = &tls.ca {
                ssl = ssl.with_root_cert_path(Some(ca.clone()));
            }
            builder = builder.ssl_opts(Some(ssl));
        }
        let mut db = MysqlDb {
            opts: Opts::from(builder),
            where_: describe_mysql(user, host, port, database, tls.is_some()),
            conn: None,
            last_used: Instant::now(),
        };
        db.connect_at_start(connect)?;
        let mismatch = db.schema_mismatch()?;
        if !mismatch.is_empty() {
            return Err(DbError::Schema {
                where_: db.where_.clone(),
                mismatch,
            });
        }
        Ok(db)
    }

    fn connect_at_start(&mut self, connect: Connect) -> Result<(), DbError> {
        let mut attempt = 0usize;
        loop {
            match Conn::new(self.opts.clone()) {
                Ok(conn) => {
                    if attempt > 0 {
                        log::info!("{} answers now", self.where_);
                    }
                    self.conn = Some(conn);
                    self.last_used = Instant::now();
                    return Ok(());
                }
                Err(e) => match kind(&e) {
                    Kind::Setup => {
                        return Err(DbError::Refused {
                            where_: self.where_.clone(),
                            reason: e.to_string(),
                        });
                    }
                    Kind::Connection | Kind::Transient if connect == Connect::Once => {
                        return Err(self.error(e));
                    }
                    Kind::Connection | Kind::Transient => {
                        let wait = START_RETRY[attempt.min(START_RETRY.len() - 1)];
                        attempt += 1;
                        log::warn!(
                            "cannot reach DECNET's database {} ({e}); trying again in {wait:?}",
                            self.where_
                        );
                        std::thread::sleep(wait);
                    }
                    Kind::Other => return Err(self.error(e)),
                },
            }
        }
    }

    /// `err` as a [`DbError`]; a connection that may be broken is dropped, to be made again.
    fn error(&mut self, err: mysql::Error) -> DbError {
        let where_ = self.where_.clone();
        let reason = err.to_string();
        match kind(&err) {
            Kind::Connection => {
                self.conn = None;
                DbError::Unavailable { where_, reason }
            }
            Kind::Transient => DbError::Unavailable { where_, reason },
            Kind::Setup => {
                self.conn = None;
                DbError::Unavailable { where_, reason }
            }
            Kind::Other => DbError::Failed { where_, reason },
        }
    }

    /// Runs `work` on the connection, making it first if the last one was lost.
    pub(super) fn with_conn<T>(
        &mut self,
        work: impl FnOnce(&mut Conn) -> mysql::Result<T>,
    ) -> Result<T, DbError> {
        if let Some(conn) = self.conn.as_mut()
            && self.last_used.elapsed() >= PING_AFTER
            && conn.ping().is_err()
        {
            self.conn = None;
        }
        if self.conn.is_none() {
            match Conn::new(self.opts.clone()) {
                Ok(conn) => {
                    log::info!("connected to DECNET's database {} again", self.where_);
                    self.conn = Some(conn);
                }
                Err(e) => return Err(self.error(e)),
            }
        }
        let result = match self.conn.as_mut() {
            Some(conn) => work(conn),
            None => return Err(self.error(mysql::Error::server_disconnected())),
        };
        self.last_used = Instant::now();
        result.map_err(|e| self.error(e))
    }

    fn schema_mismatch(&mut self) -> Result<schema::SchemaMismatch, DbError> {
        let rows: Vec<(String, String)> = self.with_conn(|conn| {
            conn.query(
                "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.columns \
                 WHERE TABLE_SCHEMA = DATABASE()",
            )
        })?;
        let mut tables: HashMap<String, Vec<String>> = HashMap::new();
        for (table, column) in rows {
            tables.entry(table).or_default().push(column);
        }
        schema::check(|table| -> Result<_, DbError> { Ok(tables.get(table).cloned()) })
    }

    /// [`select_in`] on the connection.
    fn select_in<K: AsRef<str>>(&mut self, sql: &str, keys: &[K]) -> Result<Vec<Row>, DbError> {
        self.with_conn(|conn| select_in(conn, sql, keys))
    }

    fn uuids(&mut self, sql: &str, keys: &[String]) -> Result<HashSet<String>, DbError> {
        Ok(self
            .select_in(sql, keys)?
            .into_iter()
            .filter_map(|row| text(row.as_ref(0)?))
            .collect())
    }
}

/// Runs `sql` (whose one `{}` becomes a list of `?`) for `keys` in chunks, on a connection or
/// in a transaction.
fn select_in<K: AsRef<str>>(
    on: &mut impl Queryable,
    sql: &str,
    keys: &[K],
) -> mysql::Result<Vec<Row>> {
    let mut out = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        // Padded with the last key again: a key twice in `IN` finds its rows once.
        let size = statement_size(chunk.len());
        let marks = vec!["?"; size].join(", ");
        let mut params: Vec<SqlValue> = chunk.iter().map(|k| SqlValue::from(k.as_ref())).collect();
        params.resize(size, params[params.len() - 1].clone());
        out.extend(on.exec::<Row, _, _>(sql.replace("{}", &marks), Params::Positional(params))?);
    }
    Ok(out)
}

/// The number of `?` a statement for `n` values gets: `n` rounded up to a power of two. The
/// client prepares a statement per distinct text and keeps a few ([`STATEMENT_CACHE`]); with
/// the batch's own sizes (1 to 512 of them) nearly every statement would be prepared anew on
/// the server, parsed and planned for a single run, and another closed to make room.
fn statement_size(n: usize) -> usize {
    n.next_power_of_two()
}

/// `items` cut into runs whose lengths are powers of two, the longest (at most `max`, itself
/// one) first: rows cannot be padded as lookup keys are, so a batch of 143 new rows goes in
/// statements of 128, 8, 4, 2 and 1 rows, each prepared once per connection.
fn power_of_two_runs<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    debug_assert!(max.is_power_of_two());
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let len = max.min(1 << rest.len().ilog2());
        let (run, after) = rest.split_at(len);
        rest = after;
        Some(run)
    })
}

/// A text value as the server sends it (bytes), or a number written out.
pub(super) fn text(value: &SqlValue) -> Option<String> {
    match value {
        SqlValue::NULL => None,
        SqlValue::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        SqlValue::Int(n) => Some(n.to_string()),
        SqlValue::UInt(n) => Some(n.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

/// One `attacker_intel` column as the catch-up payload has it (docs/decnet-db.md §5).
fn intel_value(value: &SqlValue, kind: ColumnKind) -> Value {
    match (value, kind) {
        (SqlValue::NULL, _) => Value::Null,
        (SqlValue::Int(n), ColumnKind::Bool) => Value::Bool(*n != 0),
        (SqlValue::UInt(n), ColumnKind::Bool) => Value::Bool(*n != 0),
        (SqlValue::Int(n), _) => Value::from(*n),
        (SqlValue::UInt(n), _) => Value::from(*n),
        (SqlValue::Float(f), _) => Value::from(f64::from(*f)),
        (SqlValue::Double(f), _) => Value::from(*f),
        // JSON columns come as text (MariaDB's LONGTEXT, MySQL's JSON as text).
        (SqlValue::Bytes(b), ColumnKind::Json) => serde_json::from_slice(b).unwrap_or(Value::Null),
        (SqlValue::Bytes(b), ColumnKind::Bool) => {
            let t = String::from_utf8_lossy(b);
            Value::Bool(t.trim() != "0" && !t.trim().is_empty())
        }
        (SqlValue::Bytes(b), ColumnKind::Int) => {
            let t = String::from_utf8_lossy(b);
            t.trim()
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(t.into_owned()))
        }
        (SqlValue::Bytes(b), ColumnKind::Text) => {
            Value::String(String::from_utf8_lossy(b).into_owned())
        }
        (other, _) => text(other).map_or(Value::Null, Value::String),
    }
}

impl Backend for MysqlDb {
    fn describe(&self) -> String {
        self.where_.clone()
    }

    fn attackers_by_ip(&mut self, ips: &[String]) -> Result<HashMap<String, Vec<String>>, DbError> {
        let rows = self.select_in("SELECT ip, uuid FROM attackers WHERE ip IN ({})", ips)?;
        let mut found: HashMap<String, Vec<String>> = HashMap::new();
        for row in rows {
            if let (Some(ip), Some(uuid)) =
                (row.as_ref(0).and_then(text), row.as_ref(1).and_then(text))
            {
                found.entry(ip).or_default().push(uuid);
            }
        }
        Ok(found)
    }

    fn existing_attackers(&mut self, uuids: &[String]) -> Result<HashSet<String>, DbError> {
        self.uuids("SELECT uuid FROM attackers WHERE uuid IN ({})", uuids)
    }

    fn existing_identities(&mut self, uuids: &[String]) -> Result<HashSet<String>, DbError> {
        self.uuids(
            "SELECT uuid FROM attacker_identities WHERE uuid IN ({})",
            uuids,
        )
    }

    fn intel_rows(
        &mut self,
        attackers: &[String],
    ) -> Result<HashMap<String, Map<String, Value>>, DbError> {
        let columns: Vec<&str> = CATCHUP_COLUMNS.iter().map(|(name, _)| *name).collect();
        let sql = format!(
            "SELECT {} FROM attacker_intel WHERE attacker_uuid IN ({{}})",
            columns.join(", ")
        );
        let rows = self.select_in(&sql, attackers)?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let mut payload = Map::new();
                for (i, (name, kind)) in CATCHUP_COLUMNS.iter().enumerate() {
                    let value = row.as_ref(i).map_or(Value::Null, |v| intel_value(v, *kind));
                    payload.insert((*name).to_owned(), value);
                }
                let uuid = payload.get("attacker_uuid")?.as_str()?.to_owned();
                Some((uuid, payload))
            })
            .collect())
    }

    fn write(&mut self, messages: &[Vec<Tag>], now: SystemTime) -> Result<Written, DbError> {
        self.with_conn(|conn| write_batch(conn, messages, now))
    }
}

/// Rows per multi-row `INSERT` ([`TAG_PARAMS`] parameters each, far under the protocol's 65535): one round
/// trip and one statement for the server to run instead of one per row.
const INSERT_ROWS: usize = 256;

/// The columns of `ttp_tag` the worker writes, in order.
const TAG_COLUMNS: &str = "uuid, source_kind, source_id, attacker_uuid, identity_uuid, \
    session_id, decky_id, tactic, technique_id, sub_technique_id, confidence, rule_id, \
    rule_version, evidence, attack_release, mitre_url, created_at";

/// How many values one row of [`TAG_COLUMNS`] takes.
const TAG_PARAMS: usize = 17;

/// The insert of `rows` rows at once. It ignores only an existing `uuid` (docs/decnet-db.md
/// §8): unlike `INSERT IGNORE`, a foreign key or check failure is an error. Affected rows: 1
/// for each new row, 0 for one already there (the client does not ask for found rows).
fn insert_tags_sql(rows: usize) -> String {
    let one = format!("({})", vec!["?"; TAG_PARAMS].join(", "));
    format!(
        "INSERT INTO ttp_tag ({TAG_COLUMNS}) VALUES {} ON DUPLICATE KEY UPDATE uuid = uuid",
        vec![one; rows].join(", ")
    )
}

/// One row's parameters, in [`TAG_COLUMNS`] order.
fn tag_params(tag: &Tag, created_at: &str, out: &mut Vec<SqlValue>) {
    out.extend([
        SqlValue::from(tag.uuid.as_str()),
        SqlValue::from(tag.source_kind.as_str()),
        SqlValue::from(tag.source_id.as_str()),
        SqlValue::from(tag.attacker_uuid.as_deref()),
        SqlValue::from(tag.identity_uuid.as_deref()),
        SqlValue::from(tag.session_id.as_deref()),
        SqlValue::from(tag.decky_id.as_deref()),
        SqlValue::from(tag.tactic.as_str()),
        SqlValue::from(tag.technique_id.as_str()),
        SqlValue::from(tag.sub_technique_id.as_deref()),
        SqlValue::from(tag.confidence),
        SqlValue::from(tag.rule_id.as_str()),
        SqlValue::from(tag.rule_version),
        SqlValue::from(python_json_object(&tag.evidence)),
        SqlValue::from(ATTACK_RELEASE),
        SqlValue::from(mitre_url(
            &tag.technique_id,
            tag.sub_technique_id.as_deref(),
        )),
        SqlValue::from(created_at),
    ]);
}

/// One transaction for the whole batch; a refused row is reported and the rest stays.
///
/// The rows already in the table are asked for first, and the others go in multi-row
/// statements: one round trip and one statement for the server per [`INSERT_ROWS`] rows. Should
/// a statement fail on a refused row, or add fewer rows than it was given (another writer got
/// there between the question and the insert), the transaction is undone and the batch goes
/// again one row at a time, so that every row is still known as new, already there or refused.
fn write_batch(conn: &mut Conn, messages: &[Vec<Tag>], now: SystemTime) -> mysql::Result<Written> {
    match write_in_bulk(conn, messages, now)? {
        Some(written) => Ok(written),
        None => write_row_by_row(conn, messages, now),
    }
}

/// [`write_batch`]'s usual way; `None` (nothing written) when a row needs the slow way.
fn write_in_bulk(
    conn: &mut Conn,
    messages: &[Vec<Tag>],
    now: SystemTime,
) -> mysql::Result<Option<Written>> {
    // The text DECNET's driver sends; the column keeps what its type keeps (whole seconds for
    // DECNET's `DATETIME`), exactly as for DECNET's own rows.
    let created_at = format_sql_utc(now);
    let mut tx = conn.start_transaction(TxOpts::default())?;
    let uuids: Vec<&str> = messages
        .iter()
        .flatten()
        .map(|tag| tag.uuid.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut present: HashSet<String> = select_in(
        &mut tx,
        "SELECT uuid FROM ttp_tag WHERE uuid IN ({})",
        &uuids,
    )?
    .iter()
    .filter_map(|row| text(row.as_ref(0)?))
    .collect();

    // Each uuid's first occurrence that is not in the table yet, as (message, tag).
    let mut written = Written {
        inserted: vec![Vec::new(); messages.len()],
        ..Written::default()
    };
    let mut fresh: Vec<(usize, usize)> = Vec::new();
    for (m, tags) in messages.iter().enumerate() {
        for (t, tag) in tags.iter().enumerate() {
            if present.insert(tag.uuid.clone()) {
                fresh.push((m, t));
                written.inserted[m].push(t);
            }
        }
    }
    for chunk in power_of_two_runs(&fresh, INSERT_ROWS) {
        let mut params = Vec::with_capacity(chunk.len() * TAG_PARAMS);
        for &(m, t) in chunk {
            tag_params(&messages[m][t], &created_at, &mut params);
        }
        let all_new = match tx.exec_drop(insert_tags_sql(chunk.len()), Params::Positional(params)) {
            Ok(()) => tx.affected_rows() == chunk.len() as u64,
            Err(mysql::Error::MySqlError(e)) if REFUSALS.contains(&e.code) => false,
            Err(e) => return Err(e),
        };
        if !all_new {
            tx.rollback()?;
            return Ok(None);
        }
    }
    record_leaks(&mut tx, messages, &written, now)?;
    tx.commit()?;
    Ok(Some(written))
}

/// [`write_batch`]'s slow way: each row on its own, a refused one reported.
fn write_row_by_row(
    conn: &mut Conn,
    messages: &[Vec<Tag>],
    now: SystemTime,
) -> mysql::Result<Written> {
    let created_at = format_sql_utc(now);
    let mut written = Written::default();
    let mut tx = conn.start_transaction(TxOpts::default())?;
    let insert = tx.prep(insert_tags_sql(1))?;
    for tags in messages {
        let mut new = Vec::new();
        for (t, tag) in tags.iter().enumerate() {
            let mut params = Vec::with_capacity(17);
            tag_params(tag, &created_at, &mut params);
            match tx.exec_drop(&insert, Params::Positional(params)) {
                Ok(()) if tx.affected_rows() == 1 => new.push(t),
                Ok(()) => {}
                // InnoDB undoes this statement only; the row is reported, the rest stays.
                Err(mysql::Error::MySqlError(e)) if REFUSALS.contains(&e.code) => {
                    written.refused.push((tag.uuid.clone(), e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        written.inserted.push(new);
    }
    record_leaks(&mut tx, messages, &written, now)?;
    tx.commit()?;
    Ok(written)
}

/// The IPv6 leak records of the messages that gave new rows.
fn record_leaks(
    tx: &mut mysql::Transaction<'_>,
    messages: &[Vec<Tag>],
    written: &Written,
    now: SystemTime,
) -> mysql::Result<()> {
    for (tags, new) in messages.iter().zip(&written.inserted) {
        if !new.is_empty() {
            for leak in leak_records(tags) {
                record_leak(tx, &leak, now)?;
            }
        }
    }
    Ok(())
}

/// docs/decnet-db.md §6, inside the batch's transaction.
fn record_leak(
    tx: &mut mysql::Transaction<'_>,
    leak: &Ipv6Leak,
    now: SystemTime,
) -> mysql::Result<()> {
    tx.exec_drop(
        "UPDATE attackers SET ipv6_leak_count = COALESCE(ipv6_leak_count, 0) + 1,
             last_ipv6_leak_at = ?, last_ipv6_link_local = ?, last_ipv6_iid_kind = ?,
             last_ipv6_mac_oui = ?
         WHERE uuid = ?",
        (
            format_sql_utc(now),
            leak.addr.as_deref(),
            leak.iid_kind.as_deref(),
            leak.mac_oui.as_deref(),
            leak.attacker_uuid.as_str(),
        ),
    )?;
    let (Some(identity), Some(addr)) = (&leak.identity_uuid, &leak.addr) else {
        return Ok(());
    };
    let stored: Option<Row> = tx.exec_first(
        "SELECT ipv6_link_local_iids FROM attacker_identities WHERE uuid = ?",
        (identity.as_str(),),
    )?;
    let Some(row) = stored else {
        return Ok(());
    };
    let stored = row.as_ref(0).and_then(text);
    if let Some(updated) = leak.appended_to(stored.as_deref(), addr, now) {
        tx.exec_drop(
            "UPDATE attacker_identities SET ipv6_link_local_iids = ? WHERE uuid = ?",
            (updated, identity.as_str()),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{CHUNK, INSERT_ROWS, power_of_two_runs, statement_size};

    #[test]
    fn rows_go_in_power_of_two_runs_in_order_and_none_is_lost() {
        let rows: Vec<usize> = (0..700).collect();
        let runs: Vec<&[usize]> = power_of_two_runs(&rows, INSERT_ROWS).collect();
        let lengths: Vec<usize> = runs.iter().map(|r| r.len()).collect();
        assert_eq!(lengths, [256, 256, 128, 32, 16, 8, 4]);
        assert_eq!(runs.concat(), rows);
        assert_eq!(power_of_two_runs(&rows[..1], INSERT_ROWS).count(), 1);
        assert_eq!(power_of_two_runs(&rows[..0], INSERT_ROWS).count(), 0);
        // Whatever the batch, few distinct statement sizes.
        let sizes: std::collections::BTreeSet<usize> = (1..=600)
            .flat_map(|n| power_of_two_runs(&rows[..n], INSERT_ROWS).map(<[usize]>::len))
            .collect();
        assert_eq!(sizes.len(), 9);
    }

    #[test]
    fn lookups_are_rounded_up_to_a_power_of_two_within_a_chunk() {
        assert_eq!(statement_size(1), 1);
        assert_eq!(statement_size(3), 4);
        assert_eq!(statement_size(257), 512);
        assert_eq!(statement_size(CHUNK), CHUNK);
        assert!(CHUNK.is_power_of_two());
    }
}
