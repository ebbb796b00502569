//! What the daemon does with a batch of messages: the [`Handler`] behind the main loop.
//!
//! Tag every message, commit all their tags (and the anchors they reveal) in one transaction,
//! then announce each message's really-new rows. The order is the contract: the store is the
//! truth, so nothing is announced before it is committed, and a failed commit fails the batch
//! (the main loop holds it, retries it, and does not acknowledge it).

use std::sync::Arc;

use serde_json::Value;

use super::main_loop::{BatchFailed, Handler, Interrupt, MAX_BATCH_TAGS};
use super::{announce, reports};
use crate::channels::Outbox;
use crate::counters::Counters;
use crate::envelope::Inbound;
use crate::store::{Anchor, Store, StoreError};
use crate::tagging::{Tag, Tagger, Tally};

pub struct TaggingPipeline {
    tagger: Tagger,
    store: Store,
    counters: Arc<Counters>,
}

impl TaggingPipeline {
    pub fn new(tagger: Tagger, store: Store, counters: Arc<Counters>) -> TaggingPipeline {
        TaggingPipeline {
            tagger,
            store,
            counters,
        }
    }

    fn announce(&self, tags: &[Tag], new: &[usize], outbox: &dyn Outbox) {
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
}

impl Handler for TaggingPipeline {
    fn handle_batch(
        &mut self,
        batch: &[Inbound],
        outbox: &dyn Outbox,
        interrupt: &Interrupt,
    ) -> Result<usize, BatchFailed> {
        let mut tags_per_message = Vec::with_capacity(batch.len());
        let mut anchors = Vec::new();
        let mut tally = Tally::default();
        let mut tags_so_far = 0;
        for message in batch {
            if tags_so_far >= MAX_BATCH_TAGS || interrupt.requested() {
                break;
            }
            let tagged = self.tagger.tag_message(message);
            tally.add(&tagged);
            reports::note_cuts(&message.subject, &message.envelope.id, &tagged);
            for tag in &tagged.out_of_range {
                log::warn!(
                    "tag {} of rule {} set aside: confidence {} is above 1",
                    tag.uuid,
                    tag.rule_id,
                    tag.confidence
                );
            }
            if let Some(why) = tagged.unbuildable {
                log::debug!(
                    "{} ({}): not tagged: {why:?}",
                    message.subject,
                    message.envelope.id
                );
            }
            anchors.extend(revealed_anchor(message));
            tags_so_far += tagged.tags.len();
            tags_per_message.push(tagged.tags);
        }
        let rows = tags_per_message;
        let done = rows.len();
        if done == 0 {
            return Ok(0);
        }
        let batch = &batch[..done];

        let outcome = self.store.commit_batch(&rows, &anchors).map_err(|err| {
            Counters::bump(&self.counters.store_errors);
            let (transient, fatal) = (err.is_transient(), err.is_fatal());
            let refused = Box::new(StoreRefused(err));
            if fatal {
                BatchFailed::Fatal(refused)
            } else if transient {
                BatchFailed::Transient(refused)
            } else {
                BatchFailed::Lasting(refused)
            }
        })?;

        reports::count(&self.counters, &tally);
        Counters::add(
            &self.counters.tags_inserted,
            outcome.inserted_count() as u64,
        );
        for skipped in &outcome.skipped {
            Counters::bump(&self.counters.tags_skipped);
            log::warn!(
                "tag {} of {} not stored: {}",
                skipped.uuid,
                crate::logging::clip(&batch[skipped.message].subject),
                skipped.reason
            );
        }
        for skipped in &outcome.skipped_anchors {
            log::warn!("anchor not learned: {skipped:?}");
        }
        if outcome.upgraded > 0 {
            log::info!(
                "{} IP-anchored tags now carry the attacker uuid revealed in this batch",
                outcome.upgraded
            );
        }
        for (tags, new) in rows.iter().zip(&outcome.inserted) {
            self.announce(tags, new, outbox);
        }
        Ok(done)
    }

    /// Rebuilds the engine from the same options; a failure keeps the running one.
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

    /// A burst is over: the rule sets' DFA caches, the store's page cache and the allocator's
    /// free pages (the subscription threads' message buffers above all) go back to the system.
    fn settle(&mut self) {
        self.tagger.release_caches();
        self.store.release_cache();
        crate::memory::release_freed_memory();
        log::debug!("quiet: released the regex and page caches and free heap pages");
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the tag store refused the batch: {0}")]
struct StoreRefused(#[source] StoreError);

/// A payload that names both an attacker uuid and its IP tells us who that IP is; the store
/// remembers it and upgrades that IP's earlier IP-anchored tags.
fn revealed_anchor(message: &Inbound) -> Option<Anchor> {
    let text = |key: &str| match message.envelope.payload.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    };
    let attacker_ip = text("attacker_ip").filter(|ip| ip != "Unknown")?;
    let attacker_uuid = text("attacker_uuid")?;
    Some(Anchor {
        attacker_ip,
        attacker_uuid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use serde_json::json;

    #[test]
    fn anchors_come_from_payloads_naming_both_uuid_and_ip() {
        let message = |payload: Value| Inbound {
            subject: "attacker.intel.enriched".into(),
            envelope: Envelope::new("", payload.as_object().unwrap().clone()),
            bytes: 0,
        };
        assert_eq!(
            revealed_anchor(&message(
                json!({"attacker_uuid": "u", "attacker_ip": "203.0.113.4"})
            )),
            Some(Anchor {
                attacker_ip: "203.0.113.4".into(),
                attacker_uuid: "u".into()
            })
        );
        for payload in [
            json!({"attacker_ip": "203.0.113.4"}),
            json!({"attacker_uuid": "u"}),
            json!({"attacker_uuid": null, "attacker_ip": "203.0.113.4"}),
            json!({"attacker_uuid": "u", "attacker_ip": "Unknown"}),
            json!({"attacker_uuid": "", "attacker_ip": "203.0.113.4"}),
        ] {
            assert_eq!(
                revealed_anchor(&message(payload.clone())),
                None,
                "{payload}"
            );
        }
    }
}
