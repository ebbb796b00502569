//! Messages held for DECNET's database (docs/decnet-db.md §8): tagged, but not yet writable
//! there because the attacker (or identity) they need has no row yet. They stay here, across
//! restarts, until it appears; then they are tagged again and written, and released.

use rusqlite::OptionalExtension;
use serde_json::{Map, Value};

use super::clock::format_utc;
use super::db::Store;
use super::error::StoreError;
use crate::tagging::Tag;

/// The DECNET row a held message waits for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Wait {
    /// An `attackers` row with this address.
    Address(String),
    /// An `attackers` row with this uuid.
    Attacker(String),
    /// An `attacker_identities` row with this uuid.
    Identity(String),
}

impl Wait {
    fn to_column(&self) -> String {
        match self {
            Wait::Address(ip) => format!("address {ip}"),
            Wait::Attacker(uuid) => format!("attacker {uuid}"),
            Wait::Identity(uuid) => format!("identity {uuid}"),
        }
    }

    fn from_column(text: &str) -> Option<Wait> {
        let (kind, value) = text.split_once(' ')?;
        let value = value.to_owned();
        match kind {
            "address" => Some(Wait::Address(value)),
            "attacker" => Some(Wait::Attacker(value)),
            "identity" => Some(Wait::Identity(value)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_column())
    }
}

/// One held message.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// Identifies the message: the same message held twice is one entry.
    pub key: String,
    pub subject: String,
    pub envelope_type: String,
    pub payload: Map<String, Value>,
    pub waiting_for: Wait,
    /// The tags it gave when it was held (shown by `tags --pending`; rewritten on release).
    pub tags: Vec<Tag>,
}

/// A held message as it comes back to be tagged again.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldMessage {
    pub key: String,
    pub subject: String,
    pub envelope_type: String,
    pub payload: Map<String, Value>,
}

/// A held message as `tags --pending` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEntry {
    pub subject: String,
    pub waiting_for: String,
    pub held_at: String,
    /// Its tags as JSON objects.
    pub tags: Vec<Value>,
}

/// The key of a message: its subject, type and payload as received, hashed.
pub fn message_key(subject: &str, envelope_type: &str, payload: &Map<String, Value>) -> String {
    use sha1::Digest as _;
    let mut hasher = sha1::Sha1::new();
    for part in [subject, envelope_type] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.update(Value::Object(payload.clone()).to_string().as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn tags_json(tags: &[Tag]) -> String {
    let mut out = vec![b'['];
    for (i, tag) in tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        tag.write_json(&mut out);
    }
    out.push(b']');
    String::from_utf8(out).unwrap_or_else(|_| "[]".into())
}

impl Store {
    /// Holds `messages` (one transaction); a message held already keeps its first entry.
    /// Returns how many were new.
    pub fn hold(&mut self, messages: &[Held]) -> Result<usize, StoreError> {
        if messages.is_empty() {
            return Ok(0);
        }
        let path = self.path.clone();
        let sqlite = |e| StoreError::from_sqlite(&path, e);
        let now = format_utc(std::time::SystemTime::now());
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let mut added = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO pending_message
                        (key, subject, envelope_type, payload, waiting_for, tags, held_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (key) DO NOTHING",
                )
                .map_err(sqlite)?;
            for held in messages {
                added += insert
                    .execute(rusqlite::params![
                        held.key,
                        held.subject,
                        held.envelope_type,
                        Value::Object(held.payload.clone()).to_string(),
                        held.waiting_for.to_column(),
                        tags_json(&held.tags),
                        now,
                    ])
                    .map_err(sqlite)?;
            }
        }
        tx.commit().map_err(sqlite)?;
        Ok(added)
    }

    /// Changes what held messages wait for (key, new wait, their tags now), in one transaction.
    pub fn rewait(&mut self, changes: &[(String, Wait, Vec<Tag>)]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let sqlite = |e| StoreError::from_sqlite(&path, e);
        let tx = self.conn.transaction().map_err(sqlite)?;
        {
            let mut update = tx
                .prepare_cached(
                    "UPDATE pending_message SET waiting_for = ?2, tags = ?3 WHERE key = ?1",
                )
                .map_err(sqlite)?;
            for (key, wait, tags) in changes {
                update
                    .execute(rusqlite::params![key, wait.to_column(), tags_json(tags)])
                    .map_err(sqlite)?;
            }
        }
        tx.commit().map_err(sqlite)
    }

    /// What held messages wait for: at most `limit` distinct rows, oldest first, after
    /// skipping `offset` of them (a caller that looks at all of them in turns).
    pub fn pending_waits(&self, limit: usize, offset: usize) -> Result<Vec<Wait>, StoreError> {
        let sqlite = |e| StoreError::from_sqlite(&self.path, e);
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT waiting_for FROM pending_message GROUP BY waiting_for
                 ORDER BY MIN(held_at), waiting_for LIMIT ?1 OFFSET ?2",
            )
            .map_err(sqlite)?;
        let rows = statement
            .query_map([limit as i64, offset as i64], |row| row.get::<_, String>(0))
            .map_err(sqlite)?;
        let mut waits = Vec::new();
        for row in rows {
            if let Some(wait) = Wait::from_column(&row.map_err(sqlite)?) {
                waits.push(wait);
            }
        }
        Ok(waits)
    }

    /// The held messages waiting for `wait`, oldest first.
    pub fn held_for(&self, wait: &Wait) -> Result<Vec<HeldMessage>, StoreError> {
        let sqlite = |e| StoreError::from_sqlite(&self.path, e);
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT key, subject, envelope_type, payload FROM pending_message
                 WHERE waiting_for = ?1 ORDER BY held_at, rowid",
            )
            .map_err(sqlite)?;
        let rows = statement
            .query_map([wait.to_column()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })
            .map_err(sqlite)?;
        let mut out = Vec::new();
        for row in rows {
            let (key, subject, envelope_type, payload) = row.map_err(sqlite)?;
            let payload = match serde_json::from_str(&payload) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            out.push(HeldMessage {
                key,
                subject,
                envelope_type,
                payload,
            });
        }
        Ok(out)
    }

    /// Forgets held messages (after their tags went into DECNET's database).
    pub fn release(&mut self, keys: &[String]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sqlite = |e| StoreError::from_sqlite(&path, e);
        let tx = self.conn.transaction().map_err(sqlite)?;
        {
            let mut delete = tx
                .prepare_cached("DELETE FROM pending_message WHERE key = ?1")
                .map_err(sqlite)?;
            for key in keys {
                delete.execute([key]).map_err(sqlite)?;
            }
        }
        tx.commit().map_err(sqlite)
    }

    /// Held messages, oldest first (`tags --pending`).
    pub fn pending(&self, limit: usize) -> Result<Vec<PendingEntry>, StoreError> {
        let sqlite = |e| StoreError::from_sqlite(&self.path, e);
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT subject, waiting_for, held_at, tags FROM pending_message
                 ORDER BY held_at, rowid LIMIT ?1",
            )
            .map_err(sqlite)?;
        let rows = statement
            .query_map([limit as i64], |row| {
                Ok(PendingEntry {
                    subject: row.get(0)?,
                    waiting_for: row.get(1)?,
                    held_at: row.get(2)?,
                    tags: match serde_json::from_str(&row.get::<_, String>(3)?) {
                        Ok(Value::Array(tags)) => tags,
                        _ => Vec::new(),
                    },
                })
            })
            .map_err(sqlite)?;
        rows.collect::<Result<_, _>>().map_err(sqlite)
    }

    /// How many messages are held.
    pub fn pending_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM pending_message", [], |row| {
                row.get::<_, i64>(0)
            })
            .optional()
            .map(|n| n.unwrap_or(0).max(0) as u64)
            .map_err(|e| StoreError::from_sqlite(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn held(key_payload: Value, wait: Wait) -> Held {
        let payload = key_payload.as_object().cloned().unwrap_or_default();
        Held {
            key: message_key("attacker.session.ended", "", &payload),
            subject: "attacker.session.ended".into(),
            envelope_type: String::new(),
            payload,
            waiting_for: wait,
            tags: vec![Tag::for_test("00000000-0000-5000-8000-000000000001")],
        }
    }

    #[test]
    fn held_messages_survive_reopening_and_are_released_by_key() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ttp.db");
        let a = held(
            json!({"session_id": "s1", "attacker_ip": "198.51.100.1"}),
            Wait::Address("198.51.100.1".into()),
        );
        let b = held(
            json!({"session_id": "s2", "attacker_uuid": "U"}),
            Wait::Attacker("U".into()),
        );
        {
            let mut store = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(store.hold(&[a.clone(), b.clone(), a.clone()]).ok(), Some(2));
            assert_eq!(store.hold(std::slice::from_ref(&a)).ok(), Some(0));
        }
        let mut store = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.pending_count().ok(), Some(2));
        let waits = store.pending_waits(10, 0).unwrap_or_default();
        assert_eq!(waits.len(), 2);
        assert_eq!(store.pending_waits(10, 1).unwrap_or_default(), waits[1..]);
        let for_a = store
            .held_for(&Wait::Address("198.51.100.1".into()))
            .unwrap_or_default();
        assert_eq!(for_a.len(), 1);
        assert_eq!(for_a[0].payload, a.payload);
        let listed = store.pending(10).unwrap_or_default();
        assert_eq!(listed[0].tags.len(), 1);
        assert_eq!(listed[0].waiting_for, "address 198.51.100.1");
        store
            .release(std::slice::from_ref(&a.key))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.pending_count().ok(), Some(1));
    }
}
