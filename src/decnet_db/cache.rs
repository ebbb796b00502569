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
