//! What the daemon does with a batch of messages: the [`Handler`] behind the main loop.
//!
//! Today: tag each message and count. The store and the `ttp.tagged` announcements join here.

use std::sync::Arc;

use crate::counters::Counters;
use crate::envelope::Inbound;
use crate::tagging::Tagger;
use crate::worker::{BatchFailed, Handler, Outbox};

pub struct TaggingPipeline {
    tagger: Tagger,
    counters: Arc<Counters>,
}

impl TaggingPipeline {
    pub fn new(tagger: Tagger, counters: Arc<Counters>) -> TaggingPipeline {
        TaggingPipeline { tagger, counters }
    }

    pub fn tagger(&self) -> &Tagger {
        &self.tagger
    }
}

impl Handler for TaggingPipeline {
    fn handle_batch(&mut self, batch: &[Inbound], _outbox: &dyn Outbox) -> Result<(), BatchFailed> {
        for message in batch {
            let tagged = self.tagger.tag_message(message);
            Counters::add(&self.counters.events, tagged.events as u64);
            Counters::add(&self.counters.tags, tagged.tags.len() as u64);
            Counters::add(&self.counters.lifter_warnings, tagged.warnings.len() as u64);
            if tagged.unbuildable.is_some() {
                Counters::bump(&self.counters.untaggable);
            }
            log::debug!(
                "{} ({}): {} events, {} tags{}",
                message.subject,
                message.envelope.id,
                tagged.events,
                tagged.tags.len(),
                tagged
                    .unbuildable
                    .map(|why| format!(", not tagged: {why:?}"))
                    .unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Rebuilds the engine from the same options; a failure keeps the running one.
    fn reload(&mut self) {
        match self.tagger.reload() {
            Ok(fresh) => {
                for problem in fresh.problems() {
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
}
