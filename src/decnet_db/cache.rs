//! What DECNET's database said about addresses and anchors, kept for a while so that a burst
//! of one attacker's events costs one lookup. A found attacker is kept long (rows are not
//! renumbered); a miss only briefly, because DECNET's profiler creates the row shortly after
//! it first sees an address (docs/decnet-db.md §2.2), and the next event should find it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::backend::Backend;
use super::error::DbError;

/// How long a found attacker is believed.
const HIT_FOR: Duration = Duration::from_secs(600);
/// How long "no such row" is believed.
const MISS_FOR: Duration = Duration::from_secs(2);
/// Entries kept before the cache starts over (a few MB at most).
const MAX_ENTRIES: usize = 50_000;

#[derive(Debug, Clone)]
struct Entry {
    /// `None`: no row, or several rows for one address (DECNET gives up on those, §4).
    attacker: Option<String>,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct AttackerCache {
    by_ip: HashMap<String, Entry>,
}

impl AttackerCache {
    /// The attacker of each address DECNET's `attackers` table knows, asking the database
    /// about those not known recently.
    pub fn resolve(
        &mut self,
        ips: &[&str],
        db: &mut dyn Backend,
        now: Instant,
    ) -> Result<HashMap<String, String>, DbError> {
        let stale = |e: &Entry| {
            let keep = if e.attacker.is_some() {
                HIT_FOR
            } else {
                MISS_FOR
            };
            now.duration_since(e.at) >= keep
        };
        let mut ask: Vec<String> = ips
            .iter()
            .filter(|ip| self.by_ip.get(**ip).is_none_or(stale))
            .map(|ip| (*ip).to_owned())
            .collect();
        ask.sort();
        ask.dedup();
        if !ask.is_empty() {
            let found = db.attackers_by_ip(&ask)?;
            if self.by_ip.len() + ask.len() > MAX_ENTRIES {
                self.by_ip.clear();
            }
            for ip in ask {
                let attacker = match found.get(&ip).map(Vec::as_slice) {
                    Some([one]) => Some(one.clone()),
                    Some([_, _, ..]) => {
                        log::warn!(
                            "{} attackers rows have the address {ip}; DECNET resolves none of them, nor does this worker",
                            found[&ip].len()
                        );
                        None
                    }
                    _ => None,
                };
                self.by_ip.insert(ip, Entry { attacker, at: now });
            }
        }
        Ok(ips
            .iter()
            .filter_map(|ip| {
                let attacker = self.by_ip.get(*ip)?.attacker.clone()?;
                Some(((*ip).to_owned(), attacker))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::SystemTime;

    use serde_json::{Map, Value};

    use super::*;
    use crate::decnet_db::backend::Written;
    use crate::tagging::Tag;

    /// An `attackers` table in memory that counts the addresses it is asked about: the cache's
    /// logic, not a database, is what these tests are about.
    #[derive(Default)]
    struct Attackers {
        rows: Vec<(String, String)>,
        asked: usize,
    }

    impl Backend for Attackers {
        fn describe(&self) -> String {
            "in memory".into()
        }
        fn attackers_by_ip(
            &mut self,
            ips: &[String],
        ) -> Result<HashMap<String, Vec<String>>, DbError> {
            self.asked += ips.len();
            let mut found: HashMap<String, Vec<String>> = HashMap::new();
            for (ip, uuid) in &self.rows {
                if ips.contains(ip) {
                    found.entry(ip.clone()).or_default().push(uuid.clone());
                }
            }
            Ok(found)
        }
        fn existing_attackers(&mut self, _: &[String]) -> Result<HashSet<String>, DbError> {
            Ok(HashSet::new())
        }
        fn existing_identities(&mut self, _: &[String]) -> Result<HashSet<String>, DbError> {
            Ok(HashSet::new())
        }
        fn intel_rows(
            &mut self,
            _: &[String],
        ) -> Result<HashMap<String, Map<String, Value>>, DbError> {
            Ok(HashMap::new())
        }
        fn write(&mut self, _: &[Vec<Tag>], _: SystemTime) -> Result<Written, DbError> {
            Ok(Written::default())
        }
    }

    #[test]
    fn hits_are_kept_misses_are_asked_again_soon_and_doubles_resolve_to_nobody() {
        let mut db = Attackers::default();
        db.rows.push(("10.0.0.1".into(), "A".into()));
        db.rows.push(("10.0.0.9".into(), "X".into()));
        db.rows.push(("10.0.0.9".into(), "Y".into()));
        let mut cache = AttackerCache::default();
        let t0 = Instant::now();
        let found = cache
            .resolve(
                &["10.0.0.1", "10.0.0.2", "10.0.0.9", "10.0.0.1"],
                &mut db,
                t0,
            )
            .unwrap_or_default();
        assert_eq!(found.get("10.0.0.1").map(String::as_str), Some("A"));
        assert!(!found.contains_key("10.0.0.2") && !found.contains_key("10.0.0.9"));
        assert_eq!(db.asked, 3);

        // Within the miss window nothing is asked again; the attacker then appears.
        db.rows.push(("10.0.0.2".into(), "B".into()));
        let found = cache.resolve(
            &["10.0.0.1", "10.0.0.2"],
            &mut db,
            t0 + Duration::from_secs(1),
        );
        assert!(!found.unwrap_or_default().contains_key("10.0.0.2"));
        assert_eq!(db.asked, 3);
        let later = t0 + MISS_FOR + Duration::from_millis(1);
        let found = cache
            .resolve(&["10.0.0.1", "10.0.0.2"], &mut db, later)
            .unwrap_or_default();
        assert_eq!(found.get("10.0.0.2").map(String::as_str), Some("B"));
        assert_eq!(db.asked, 4, "the hit for 10.0.0.1 is not asked again");
    }
}
