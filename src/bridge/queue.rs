//! A bounded queue that makes room by dropping its oldest item, as DECNET's broker does: when
//! one side is down, the newest events are the ones worth keeping, and memory stays bounded.

use crossbeam_channel::{Receiver, Sender, bounded};

/// The pushing end; the other end is a plain [`Receiver`] for `select!`.
#[derive(Clone)]
pub struct DropOldest<T> {
    tx: Sender<T>,
    /// Kept to take the oldest item out when the queue is full.
    oldest: Receiver<T>,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued, after this many older items were dropped to make room.
    DroppedOldest(u64),
}

impl<T> DropOldest<T> {
    pub fn new(capacity: usize) -> (DropOldest<T>, Receiver<T>) {
        let (tx, rx) = bounded(capacity.max(1));
        (
            DropOldest {
                tx,
                oldest: rx.clone(),
            },
            rx,
        )
    }

    pub fn push(&self, mut item: T) -> Pushed {
        let mut dropped = 0;
        loop {
            match self.tx.try_send(item) {
                Ok(()) if dropped == 0 => return Pushed::Queued,
                Ok(()) => return Pushed::DroppedOldest(dropped),
                // Never disconnected: `oldest` is a receiver and lives as long as `tx`.
                Err(full) => {
                    item = full.into_inner();
                    // Empty: the consumer took one meanwhile, so there is room now.
                    if self.oldest.try_recv().is_ok() {
                        dropped += 1;
                    }
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.tx.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_its_oldest_items_and_keeps_the_newest() {
        let (queue, rx) = DropOldest::new(3);
        for n in 0..3 {
            assert_eq!(queue.push(n), Pushed::Queued);
        }
        assert_eq!(queue.push(3), Pushed::DroppedOldest(1));
        assert_eq!(queue.push(4), Pushed::DroppedOldest(1));
        assert_eq!(queue.len(), 3);
        let left: Vec<i32> = rx.try_iter().collect();
        assert_eq!(left, vec![2, 3, 4]);
    }
}
