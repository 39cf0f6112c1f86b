//! In-memory state of one durable queue: the ready deque (ordered by
//! sequence number, so FIFO holds even after requeues), counters, and the
//! wake-up signal for consumers.
//!
//! The database is the source of truth for *what* is queued; this state is
//! the source of truth for *who* holds what. The hot path (publish, deliver)
//! never reads back from disk.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use auditflow_core::broker::{Message, QueueStats};
use tokio::sync::Notify;

/// One stored message.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Row id in `messages`; increases with publish order.
    pub seq: i64,
    /// The message.
    pub message: Message,
    /// Times it has been delivered so far.
    pub deliveries: u32,
    /// Whether a consumer may have seen it before (delivered, or loaded after a restart).
    pub redelivered: bool,
}

/// Counters and the ready deque, under the queue's mutex.
#[derive(Debug, Default)]
pub(crate) struct QueueState {
    /// Messages waiting for a consumer, in `seq` order.
    pub ready: VecDeque<Entry>,
    /// Messages held by subscriptions.
    pub unacked: u64,
    /// Messages of publishes not yet committed (reserved against the bound).
    pub pending: u64,
    /// Messages in the dead-letter table.
    pub dead: u64,
}

impl QueueState {
    /// Ready + unacked + being published: what the bound applies to.
    pub fn depth(&self) -> u64 {
        self.ready.len() as u64 + self.unacked + self.pending
    }
}

/// One queue.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    /// Signalled whenever messages become ready.
    pub notify: Notify,
    /// Signalled whenever the depth shrinks (acks, dead letters, failed
    /// publishes): publishers waiting for room under the bound look again.
    pub room: Notify,
}

impl Queue {
    /// Locks the state. A panic while holding the lock cannot leave it
    /// half-updated in a way that matters more than losing the queue, so a
    /// poisoned lock is recovered.
    pub fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends newly committed messages and wakes consumers.
    pub fn push_committed(&self, entries: Vec<Entry>, reserved: u64) {
        {
            let mut state = self.lock();
            state.pending = state.pending.saturating_sub(reserved);
            state.ready.extend(entries);
        }
        self.notify.notify_waiters();
    }

    /// Puts messages taken by a subscription back, each at its place by
    /// sequence number (so at the front of anything published later).
    pub fn return_unacked(&self, mut entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        entries.sort_by_key(|e| e.seq);
        {
            let mut state = self.lock();
            state.unacked = state.unacked.saturating_sub(entries.len() as u64);
            for entry in entries.into_iter().rev() {
                let at = state.ready.partition_point(|e| e.seq < entry.seq);
                state.ready.insert(at, entry);
            }
        }
        self.notify.notify_waiters();
    }

    /// Takes `n` messages off the unacked count (acked or dead-lettered)
    /// and wakes publishers waiting for room.
    pub fn release_unacked(&self, n: u64) {
        {
            let mut state = self.lock();
            state.unacked = state.unacked.saturating_sub(n);
        }
        self.room.notify_waiters();
    }

    /// Takes `n` messages of a failed publish off the pending count and
    /// wakes publishers waiting for room.
    pub fn release_pending(&self, n: u64) {
        {
            let mut state = self.lock();
            state.pending = state.pending.saturating_sub(n);
        }
        self.room.notify_waiters();
    }

    /// Current sizes.
    pub fn stats(&self) -> QueueStats {
        let state = self.lock();
        QueueStats {
            ready: state.ready.len() as u64,
            unacked: state.unacked,
            dead_lettered: state.dead,
        }
    }
}
