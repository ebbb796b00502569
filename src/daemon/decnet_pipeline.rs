//! The [`Handler`] for a worker pointed at DECNET's database (docs/decnet-db.md): it does what
//! DECNET's own worker does with that database, and keeps what DECNET would drop.
//!
//! Per batch: look the messages' addresses up in DECNET's `attackers` (through a short-lived
//! cache), read the intel rows the catch-up needs, tag every message as DECNET would, then
//! sort the messages. One whose tags DECNET can take (anchors with rows) goes into DECNET's
//! `ttp_tag`; one that waits for a row (an unknown address, an attacker or identity without
//! a row) is held in the worker's own store. Held messages are committed first and DECNET's
//! rows second, so a failure in between only repeats idempotent work; announcements go out
//! last, for DECNET's new rows only. On every tick, and at most every few seconds while busy,
//! the held messages whose row has appeared are tagged again and written.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};

use super::main_loop::{BatchFailed, Handler, Interrupt, MAX_BATCH_TAGS};
use super::{announce, reports};
use crate::channels::Outbox;
use crate::counters::Counters;
use crate::decnet_db::{AttackerCache, Backend, DbError};
use crate::envelope::Inbound;
use crate::store::{Held, HeldMessage, Store, StoreError, Wait, message_key};
use crate::tagging::event::{catchup_attacker, lookup_address};
use crate::tagging::{AnchorResolver, Tag, Tagger, Tally};

/// How often held messages are looked at while messages keep arriving (ticks look too).
const RECHECK_EVERY: Duration = Duration::from_secs(5);
/// Distinct rows waited for that one look asks the database about.
const RECHECK_WAITS: usize = 512;

pub struct DecnetPipeline {
    tagger: Tagger,
    local: Store,
    db: Box<dyn Backend + Send>,
    attackers: AttackerCache,
    counters: Arc<Counters>,
    last_recheck: Instant,
    /// Where the next look at held messages starts: each look takes the next
    /// [`RECHECK_WAITS`] rows waited for, so that rows that never appear do not keep the
    /// others from being looked at.
    recheck_from: usize,
}

/// One message on its way through: as received, or as held.
struct Message<'a> {
    subject: &'a str,
    /// Names the message in a log line; a held message's key stands in for it.
    envelope_id: &'a str,
    envelope_type: &'a str,
    payload: &'a Map<String, Value>,
}

/// Where a tagged message goes.
enum Destination {
    /// DECNET can take its tags.
    Decnet(Vec<Tag>),
    /// It waits for this row.
    Hold(Wait, Vec<Tag>),
    /// Nothing to write, now or later.
    Nowhere,
}

/// The database side failed: hold the batch, and say whether it may pass by itself.
fn db_failed(err: DbError, counters: &Counters) -> BatchFailed {
    Counters::bump(&counters.store_errors);
    if err.is_transient() {
        BatchFailed::Transient(Box::new(err))
    } else {
        BatchFailed::Lasting(Box::new(err))
    }
}

fn local_failed(err: StoreError, counters: &Counters) -> BatchFailed {
    Counters::bump(&counters.store_errors);
    if err.is_fatal() {
        BatchFailed::Fatal(Box::new(err))
    } else if err.is_transient() {
        BatchFailed::Transient(Box::new(err))
    } else {
        BatchFailed::Lasting(Box::new(err))
    }
}

impl DecnetPipeline {
    pub fn new(
        tagger: Tagger,
        local: Store,
        db: Box<dyn Backend + Send>,
        counters: Arc<Counters>,
    ) -> DecnetPipeline {
        DecnetPipeline {
            tagger,
            local,
            db,
            attackers: AttackerCache::default(),
            counters,
            last_recheck: Instant::now(),
            recheck_from: 0,
        }
    }

    /// Tags `messages` as DECNET's worker would with its database, and says where each goes.
    /// Tags the messages in order and says where each goes. It stops early, so that fewer
    /// destinations than messages come back, once the batch has given [`MAX_BATCH_TAGS`] tags or
    /// `interrupt` asks; the messages past that are left as they were.
    fn tag_all(
        &mut self,
        messages: &[Message<'_>],
        interrupt: &Interrupt,
    ) -> Result<Vec<Destination>, DbError> {
        let now = Instant::now();
        let addresses: Vec<Option<&str>> = messages
            .iter()
            .map(|m| lookup_address(m.subject, m.envelope_type, m.payload))
            .collect();
        let asked: Vec<&str> = addresses.iter().flatten().copied().collect();
        let found = self.attackers.resolve(&asked, self.db.as_mut(), now)?;
        let mut resolver = AnchorResolver::default();
        for (ip, attacker) in &found {
            resolver.insert(ip.clone(), attacker.clone());
        }
        let catchup: Vec<Option<String>> = messages
            .iter()
            .map(|m| catchup_attacker(m.subject, m.envelope_type, m.payload, &resolver))
            .collect();
        let wanted: Vec<String> = catchup
            .iter()
            .flatten()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let intel = if wanted.is_empty() {
            Default::default()
        } else {
            self.db.intel_rows(&wanted)?
        };

        let mut tally = Tally::default();
        let mut tagged = Vec::with_capacity(messages.len());
        let mut tags_so_far = 0;
        for (m, attacker) in messages.iter().zip(&catchup) {
            if tags_so_far >= MAX_BATCH_TAGS || interrupt.requested() {
                break;
            }
            let row = attacker.as_ref().and_then(|a| intel.get(a));
            let report = self.tagger.tag_with_database(
                m.subject,
                m.envelope_type,
                m.payload,
                &resolver,
                row,
            );
            tally.add(&report);
            reports::note_cuts(m.subject, m.envelope_id, &report);
            tags_so_far += report.tags.len();
            tagged.push(report.tags);
        }
        reports::count(&self.counters, &tally);

        // Which anchors have rows: asked once for the whole batch.
        let mut attackers_named = BTreeSet::new();
        let mut identities_named = BTreeSet::new();
        for tag in tagged.iter().flatten() {
            attackers_named.extend(tag.attacker_uuid.clone());
            identities_named.extend(tag.identity_uuid.clone());
        }
        let attackers_known = self.existing(&attackers_named, true)?;
        let identities_known = self.existing(&identities_named, false)?;

        let mut destinations = Vec::with_capacity(messages.len());
        for ((m, address), tags) in messages.iter().zip(&addresses).zip(tagged) {
            let unresolved = address.filter(|ip| !found.contains_key(*ip));
            let destination = if let Some(ip) = unresolved {
                // DECNET drops it; it is kept until the address has an attacker. A session with
                // no tags of its own may still get the intel catch-up's then.
                if tags.is_empty() && !m.subject.contains("session.ended") {
                    Destination::Nowhere
                } else {
                    Destination::Hold(Wait::Address(ip.to_owned()), tags)
                }
            } else if tags.is_empty() {
                Destination::Nowhere
            } else if let Some(wait) = missing_anchor(&tags, &attackers_known, &identities_known) {
                Destination::Hold(wait, tags)
            } else {
                Destination::Decnet(tags)
            };
            destinations.push(destination);
        }
        Ok(destinations)
    }

    fn existing(
        &mut self,
        uuids: &BTreeSet<String>,
        attackers: bool,
    ) -> Result<HashSet<String>, DbError> {
        if uuids.is_empty() {
            return Ok(HashSet::new());
        }
        let list: Vec<String> = uuids.iter().cloned().collect();
        if attackers {
            self.db.existing_attackers(&list)
        } else {
            self.db.existing_identities(&list)
        }
    }

    /// Writes what DECNET can take, in one transaction, and announces its new rows.
    fn write(&mut self, messages: Vec<Vec<Tag>>, outbox: &dyn Outbox) -> Result<(), DbError> {
        if messages.is_empty() {
            return Ok(());
        }
        let written = self.db.write(&messages, SystemTime::now())?;
        for (uuid, reason) in &written.refused {
            Counters::bump(&self.counters.tags_skipped);
            log::warn!("tag {uuid} not stored: DECNET's database refused it: {reason}");
        }
        let new_rows = written.inserted.iter().map(Vec::len).sum::<usize>();
        Counters::add(&self.counters.tags_inserted, new_rows as u64);
        log::debug!(
            "DECNET's database: wrote {new_rows} new rows for {} messages",
            messages.len()
        );
        for (tags, new) in messages.iter().zip(&written.inserted) {
            let new_tags: Vec<&Tag> = new.iter().filter_map(|&i| tags.get(i)).collect();
            let (announcements, errors) = announce::announcements(&new_tags, outbox.max_payload());
            for error in errors {
                Counters::bump(&self.counters.publish_errors);
                log::warn!("{error}");
            }
            for announcement in announcements {
                let sent = outbox.publish(&announcement.subject, announcement.bytes);
                if sent && announcement.kind == announce::Kind::Tagged {
                    Counters::bump(&self.counters.tagged_published);
                }
            }
        }
        Ok(())
    }

    /// Looks at held messages whose row may have appeared, and writes those that can go now.
    fn recheck(&mut self, outbox: &dyn Outbox) -> Result<(), BatchFailed> {
        self.last_recheck = Instant::now();
        let counters = Arc::clone(&self.counters);
        let waits = self
            .local
            .pending_waits(RECHECK_WAITS, self.recheck_from)
            .map_err(|e| local_failed(e, &counters))?;
        self.recheck_from = if waits.len() < RECHECK_WAITS {
            0
        } else {
            self.recheck_from + RECHECK_WAITS
        };
        if waits.is_empty() {
            return Ok(());
        }
        let satisfied = self
            .satisfied(&waits)
            .map_err(|e| db_failed(e, &counters))?;
        for wait in satisfied {
            let held = self
                .local
                .held_for(&wait)
                .map_err(|e| local_failed(e, &counters))?;
            let messages: Vec<Message<'_>> = held
                .iter()
                .map(|h| Message {
                    subject: &h.subject,
                    envelope_id: &h.key,
                    envelope_type: &h.envelope_type,
                    payload: &h.payload,
                })
                .collect();
            let destinations = self
                .tag_all(&messages, &Interrupt::NEVER)
                .map_err(|e| db_failed(e, &counters))?;
            let mut writable = Vec::new();
            let mut still_held = Vec::new();
            let mut released = Vec::new();
            for (HeldMessage { key, .. }, destination) in held.iter().zip(destinations) {
                match destination {
                    Destination::Decnet(tags) => {
                        writable.push(tags);
                        released.push(key.clone());
                    }
                    Destination::Nowhere => released.push(key.clone()),
                    // Waits for something else now (its attacker has a row, its identity
                    // not yet, say): held on, for that.
                    Destination::Hold(next, tags) if next != wait => {
                        still_held.push((key.clone(), next, tags));
                    }
                    Destination::Hold(..) => {}
                }
            }
            self.local
                .rewait(&still_held)
                .map_err(|e| local_failed(e, &counters))?;
            self.write(writable, outbox)
                .map_err(|e| db_failed(e, &counters))?;
            self.local
                .release(&released)
                .map_err(|e| local_failed(e, &counters))?;
            if !released.is_empty() {
                Counters::add(&self.counters.released, released.len() as u64);
                log::info!(
                    "{} held messages written now that DECNET has {wait}",
                    released.len()
                );
            }
        }
        Ok(())
    }

    /// The waits whose row DECNET's database now has.
    fn satisfied(&mut self, waits: &[Wait]) -> Result<Vec<Wait>, DbError> {
        let mut out = Vec::new();
        let addresses: Vec<&str> = waits
            .iter()
            .filter_map(|w| match w {
                Wait::Address(ip) => Some(ip.as_str()),
                _ => None,
            })
            .collect();
        let found = self
            .attackers
            .resolve(&addresses, self.db.as_mut(), Instant::now())?;
        let of = |kind: fn(&Wait) -> Option<&String>| -> BTreeSet<String> {
            waits.iter().filter_map(kind).cloned().collect()
        };
        let attackers = of(|w| match w {
            Wait::Attacker(u) => Some(u),
            _ => None,
        });
        let identities = of(|w| match w {
            Wait::Identity(u) => Some(u),
            _ => None,
        });
        let attackers = self.existing(&attackers, true)?;
        let identities = self.existing(&identities, false)?;
        for wait in waits {
            let there = match wait {
                Wait::Address(ip) => found.contains_key(ip),
                Wait::Attacker(uuid) => attackers.contains(uuid),
                Wait::Identity(uuid) => identities.contains(uuid),
            };
            if there {
                out.push(wait.clone());
            }
        }
        Ok(out)
    }
}

/// The first anchor row a message's tags need that DECNET's database does not have.
fn missing_anchor(
    tags: &[Tag],
    attackers: &HashSet<String>,
    identities: &HashSet<String>,
) -> Option<Wait> {
    for tag in tags {
        if let Some(a) = tag
            .attacker_uuid
            .as_ref()
            .filter(|a| !attackers.contains(*a))
        {
            return Some(Wait::Attacker(a.clone()));
        }
        if let Some(i) = tag
            .identity_uuid
            .as_ref()
            .filter(|i| !identities.contains(*i))
        {
            return Some(Wait::Identity(i.clone()));
        }
        if tag.attacker_uuid.is_none() && tag.identity_uuid.is_none() {
            // Only an address: DECNET's table cannot hold it until the address resolves.
            return Some(Wait::Address(tag.attacker_ip.clone().unwrap_or_default()));
        }
    }
    None
}

impl Handler for DecnetPipeline {
    fn handle_batch(
        &mut self,
        batch: &[Inbound],
        outbox: &dyn Outbox,
        interrupt: &Interrupt,
    ) -> Result<usize, BatchFailed> {
        let counters = Arc::clone(&self.counters);
        let messages: Vec<Message<'_>> = batch
            .iter()
            .map(|m| Message {
                subject: &m.subject,
                envelope_id: &m.envelope.id,
                envelope_type: &m.envelope.kind,
                payload: &m.envelope.payload,
            })
            .collect();
        let destinations = self
            .tag_all(&messages, interrupt)
            .map_err(|e| db_failed(e, &counters))?;
        let done = destinations.len();
        let mut writable = Vec::new();
        let mut held = Vec::new();
        for (m, destination) in messages.iter().zip(destinations) {
            match destination {
                Destination::Decnet(tags) => writable.push(tags),
                Destination::Hold(wait, tags) => held.push(Held {
                    key: message_key(m.subject, m.envelope_type, m.payload),
                    subject: m.subject.to_owned(),
                    envelope_type: m.envelope_type.to_owned(),
                    payload: m.payload.clone(),
                    waiting_for: wait,
                    tags,
                }),
                Destination::Nowhere => {}
            }
        }
        let newly_held = self
            .local
            .hold(&held)
            .map_err(|e| local_failed(e, &counters))?;
        Counters::add(&self.counters.held, newly_held as u64);
        if newly_held > 0 {
            log::debug!("held {newly_held} messages for rows DECNET's database does not have yet");
        }
        self.write(writable, outbox)
            .map_err(|e| db_failed(e, &counters))?;
        if self.last_recheck.elapsed() >= RECHECK_EVERY {
            // A failed look is retried on the next tick; the batch itself is done.
            if let Err(err) = self.recheck(outbox) {
                log::warn!("could not look at held messages: {err}");
            }
        }
        Ok(done)
    }

    fn reload(&mut self) {
        match self.tagger.reload() {
            Ok(fresh) => {
                for problem in fresh.problems().iter().chain(fresh.warnings()) {
                    log::warn!("{problem}");
                }
                log::info!(
                    "rules reloaded: {} rules, {} problems",
                    fresh.rules().len(),
                    fresh.problems().len()
                );
                self.tagger = fresh;
            }
            Err(err) => log::error!("reload failed, keeping the rules in use: {err}"),
        }
    }

    fn settle(&mut self) {
        self.tagger.release_caches();
        self.local.release_cache();
        crate::memory::release_freed_memory();
        log::debug!("quiet: released the regex and page caches and free heap pages");
    }

    fn tick(&mut self, outbox: &dyn Outbox) {
        if let Err(err) = self.recheck(outbox) {
            log::warn!("could not look at held messages: {err}");
        }
    }
}
