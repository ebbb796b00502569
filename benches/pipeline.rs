//! The worker's own cost per event, without the network: the real tagging pipeline (engine,
//! SQLite commit, announcement encoding) fed batches the way the main loop feeds them.
//!
//! `cargo bench --bench pipeline`. Complements `end_to_end`, where the publisher and
//! nats-server share the same two cores.

#![allow(deprecated)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use common::corpus::{corpus_lines, distinct_copies, reference_options};
use ttp_worker::channels::Outbox;
use ttp_worker::counters::{Counters, Mode};
use ttp_worker::daemon::{Handler, Interrupt, MAX_BATCH, TaggingPipeline};
use ttp_worker::envelope::Inbound;
use ttp_worker::envelope::jsonl::parse_line;
use ttp_worker::store::Store;
use ttp_worker::tagging::Tagger;

/// Counts what would have gone on the bus.
#[derive(Default)]
struct CountingOutbox {
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl Outbox for CountingOutbox {
    fn publish(&self, _subject: &str, bytes: Vec<u8>) -> bool {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        true
    }
}

fn main() {
    let lines = distinct_copies(&corpus_lines(), 40);
    let messages: Vec<Inbound> = lines.iter().filter_map(|l| parse_line(l).ok()).collect();
    for batch_size in [1, 16, MAX_BATCH] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("ttp.db")).unwrap();
        let tagger = Tagger::new(&reference_options()).unwrap();
        let counters = Arc::new(Counters::new(Mode::Core));
        let mut pipeline = TaggingPipeline::new(tagger, store, counters.clone());
        let outbox = CountingOutbox::default();
        let started = Instant::now();
        for batch in messages.chunks(batch_size) {
            pipeline
                .handle_batch(batch, &outbox, &Interrupt::NEVER)
                .unwrap();
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "batches of {batch_size:>3}: {:>7.0} events/s, {:>7.0} tags committed/s, {} announcements ({} MiB) — {} events in {seconds:.2} s",
            messages.len() as f64 / seconds,
            Counters::get(&counters.tags_inserted) as f64 / seconds,
            outbox.messages.load(Ordering::Relaxed),
            outbox.bytes.load(Ordering::Relaxed) >> 20,
            messages.len(),
        );
    }
}
