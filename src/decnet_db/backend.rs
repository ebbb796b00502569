//! The seam between the DECNET pipeline and one kind of DECNET database.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::error::DbError;
use crate::tagging::Tag;

/// What one batch write did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Written {
    /// Per message, the indices of its tags that were new rows.
    pub inserted: Vec<Vec<usize>>,
    /// Rows the database refused (uuid, reason): a check the worker did not foresee.
    pub refused: Vec<(String, String)>,
}

/// One kind of DECNET database. Each call is one short round trip (or transaction); a
/// transient failure leaves nothing half done.
pub trait Backend {
    /// Which database, for log lines (never a password).
    fn describe(&self) -> String;
    /// `attackers` rows by address: every uuid found for each address asked about.
    fn attackers_by_ip(&mut self, ips: &[String]) -> Result<HashMap<String, Vec<String>>, DbError>;
    /// Which of these attacker uuids have a row.
    fn existing_attackers(&mut self, uuids: &[String]) -> Result<HashSet<String>, DbError>;
    /// Which of these identity uuids have a row.
    fn existing_identities(&mut self, uuids: &[String]) -> Result<HashSet<String>, DbError>;
    /// The catch-up payloads of these attackers' intel rows, by attacker uuid.
    fn intel_rows(
        &mut self,
        attackers: &[String],
    ) -> Result<HashMap<String, Map<String, Value>>, DbError>;
    /// Inserts every message's tags in one transaction, ignoring uuids already there, and
    /// updates the IPv6 leak record of each message that added a row.
    fn write(&mut self, messages: &[Vec<Tag>], now: SystemTime) -> Result<Written, DbError>;
}
