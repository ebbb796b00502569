//! Learned `attacker_ip → attacker_uuid` anchors.
//!
//! Session events arrive with an address and no attacker UUID (docs/tagging.md §3.2); DECNET looks
//! the address up in its own database, which a bus-only worker does not have. The resolver
//! learns pairs from the events that carry both, and this table keeps them across restarts.
//! Tags written before an address was known are stored IP-anchored; learning the address later
//! gives them their attacker UUID, so an analyst's per-attacker query finds them.

use std::collections::HashMap;

use rusqlite::Connection;

use super::db::Store;
use super::error::StoreError;

/// An `attacker_ip → attacker_uuid` pair the resolver learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub attacker_ip: String,
    pub attacker_uuid: String,
}

/// Rejects pairs that would match rows by accident (an empty address matches every tag whose
/// address is empty) or erase meaning (an empty UUID).
pub(super) fn validate(anchor: &Anchor) -> Result<(), &'static str> {
    if anchor.attacker_ip.trim().is_empty() {
        return Err("attacker_ip is empty");
    }
    if anchor.attacker_uuid.trim().is_empty() {
        return Err("attacker_uuid is empty");
    }
    Ok(())
}

/// Records the pair (latest UUID wins, `first_seen` kept) and upgrades that address's
/// IP-anchored tags. Identity roll-ups are left alone even when they carry an address: the
/// identity lifter deliberately has no attacker UUID (docs/tagging.md §4.1). Tag UUIDs never
/// change: anchors are not part of the identity key (§4.2). Returns the rows upgraded.
pub(super) fn learn(conn: &Connection, anchor: &Anchor, now: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT INTO attacker_anchor (attacker_ip, attacker_uuid, first_seen, last_seen)
         VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (attacker_ip) DO UPDATE
         SET attacker_uuid = excluded.attacker_uuid, last_seen = excluded.last_seen",
    )?
    .execute((&anchor.attacker_ip, &anchor.attacker_uuid, now))?;
    conn.prepare_cached(
        "UPDATE ttp_tag SET attacker_uuid = ?2
         WHERE attacker_uuid IS NULL AND identity_uuid IS NULL AND attacker_ip = ?1",
    )?
    .execute((&anchor.attacker_ip, &anchor.attacker_uuid))
}

impl Store {
    /// Learns one anchor in its own transaction; see [`Store::commit_batch`] to learn anchors
    /// together with the tags of a batch. Returns how many IP-anchored tags were upgraded.
    pub fn learn_anchor(
        &mut self,
        attacker_ip: &str,
        attacker_uuid: &str,
    ) -> Result<usize, StoreError> {
        let anchor = Anchor {
            attacker_ip: attacker_ip.to_string(),
            attacker_uuid: attacker_uuid.to_string(),
        };
        if let Err(reason) = validate(&anchor) {
            return Err(StoreError::InvalidAnchor {
                attacker_ip: anchor.attacker_ip,
                attacker_uuid: anchor.attacker_uuid,
                reason,
            });
        }
        Ok(self.commit_batch(&[], &[anchor])?.upgraded)
    }

    /// Every learned anchor, to seed the resolver at start-up.
    pub fn load_anchors(&self) -> Result<HashMap<String, String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT attacker_ip, attacker_uuid FROM attacker_anchor")
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<rusqlite::Result<HashMap<String, String>>>()
            .map_err(|e| self.sqlite(e))
    }
}
