//! [`EmbeddedSubscription`]: one competing consumer of an embedded queue.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use auditflow_core::broker::{BrokerError, Delivery, Subscription};

use crate::broker::{BrokerInner, DeadLetterRow, DELIVERY_LIMIT_REASON};
use crate::queue::{Entry, Queue};

/// A competing consumer holding at most `prefetch` unacked deliveries.
///
/// When the window is full, [`Subscription::next_batch`] waits (like a
/// RabbitMQ consumer at its prefetch limit) until deliveries are acked or
/// requeued; since it is cancel-safe, a consumer can `select!` it against
/// its own ack path. Dropping the subscription returns its unacked
/// deliveries to the front of the queue.
#[derive(Debug)]
pub struct EmbeddedSubscription {
    broker: Arc<BrokerInner>,
    queue_name: String,
    queue: Arc<Queue>,
    prefetch: usize,
    unacked: HashMap<u64, Entry>,
    next_tag: u64,
}

impl EmbeddedSubscription {
    pub(crate) fn new(
        broker: Arc<BrokerInner>,
        queue_name: String,
        queue: Arc<Queue>,
        prefetch: usize,
    ) -> Self {
        EmbeddedSubscription {
            broker,
            queue_name,
            queue,
            prefetch,
            unacked: HashMap::new(),
            next_tag: 1,
        }
    }

    /// Takes up to `max` ready messages without awaiting (so it is atomic
    /// with respect to cancellation). Messages at the delivery limit are
    /// returned separately, to be dead-lettered.
    fn take_ready(&mut self, max: usize) -> (Vec<Delivery>, Vec<Entry>) {
        let limit = self.broker.delivery_limit;
        let mut deliveries = Vec::new();
        let mut over_limit = Vec::new();
        let mut marks = Vec::new();
        {
            let mut state = self.queue.lock();
            while deliveries.len() < max {
                let Some(mut entry) = state.ready.pop_front() else {
                    break;
                };
                if entry.deliveries >= limit {
                    over_limit.push(entry);
                    continue;
                }
                entry.deliveries += 1;
                let tag = self.next_tag;
                self.next_tag += 1;
                deliveries.push(Delivery {
                    tag,
                    message: entry.message.clone(),
                    redelivered: entry.redelivered,
                    delivery_count: entry.deliveries,
                });
                entry.redelivered = true;
                marks.push((entry.seq, entry.deliveries));
                self.unacked.insert(tag, entry);
            }
            state.unacked += deliveries.len() as u64;
        }
        // Best effort: if the writer is gone, the next open starts from the
        // last recorded count.
        let _ = self.broker.record_deliveries(marks);
        (deliveries, over_limit)
    }

    fn take_tags(&mut self, tags: &[u64]) -> (Vec<Entry>, Vec<u64>) {
        let mut entries = Vec::with_capacity(tags.len());
        let mut unknown = Vec::new();
        for tag in tags {
            match self.unacked.remove(tag) {
                Some(entry) => entries.push(entry),
                None => unknown.push(*tag),
            }
        }
        (entries, unknown)
    }

    fn over_limit_rows(&self, entries: Vec<Entry>) -> Vec<DeadLetterRow> {
        entries
            .into_iter()
            .map(|entry| DeadLetterRow {
                queue: self.queue_name.clone(),
                entry,
                reason: DELIVERY_LIMIT_REASON.to_string(),
            })
            .collect()
    }
}

fn unknown_tags(unknown: &[u64]) -> Result<(), BrokerError> {
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(BrokerError::Rejected(format!(
            "unknown delivery tags {unknown:?} (already acked, requeued or from another subscription)"
        )))
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        let max = max.max(1);
        loop {
            let queue = Arc::clone(&self.queue);
            let notified = queue.notify.notified();
            tokio::pin!(notified);
            // Register before looking, so a publish in between is not missed.
            notified.as_mut().enable();
            let room = self.prefetch.saturating_sub(self.unacked.len());
            if room > 0 {
                let (deliveries, over_limit) = self.take_ready(max.min(room));
                if !over_limit.is_empty() {
                    let rows = self.over_limit_rows(over_limit);
                    self.broker
                        .dead_letter(&self.queue, rows, false, false)
                        .await
                        .map_err(BrokerError::from)?;
                }
                if !deliveries.is_empty() {
                    return Ok(deliveries);
                }
            }
            notified.await;
        }
    }

    async fn ack(&mut self, tags: &[u64]) -> Result<(), BrokerError> {
        let (entries, unknown) = self.take_tags(tags);
        if !entries.is_empty() {
            self.queue.release_unacked(entries.len() as u64);
            self.broker
                .delete_acked(entries.iter().map(|e| e.seq).collect())?;
        }
        unknown_tags(&unknown)
    }

    async fn requeue(&mut self, tags: &[u64]) -> Result<(), BrokerError> {
        let (entries, unknown) = self.take_tags(tags);
        let limit = self.broker.delivery_limit;
        let (over_limit, back): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|e| e.deliveries >= limit);
        self.queue.return_unacked(back);
        if !over_limit.is_empty() {
            let rows = self.over_limit_rows(over_limit);
            self.broker
                .dead_letter(&self.queue, rows, true, false)
                .await?;
        }
        unknown_tags(&unknown)
    }

    async fn dead_letter(&mut self, tag: u64, reason: &str) -> Result<(), BrokerError> {
        let Some(entry) = self.unacked.remove(&tag) else {
            return unknown_tags(&[tag]);
        };
        let row = DeadLetterRow {
            queue: self.queue_name.clone(),
            entry: entry.clone(),
            reason: reason.to_string(),
        };
        match self
            .broker
            .dead_letter(&self.queue, vec![row], true, true)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                // Still ours: the caller may retry, or dropping us returns it.
                self.unacked.insert(tag, entry);
                Err(e.into())
            }
        }
    }
}

impl Drop for EmbeddedSubscription {
    fn drop(&mut self) {
        let entries: Vec<Entry> = self.unacked.drain().map(|(_, e)| e).collect();
        self.queue.return_unacked(entries);
    }
}
