//! The broker interface: durable queues with confirmed publish, manual acks,
//! redelivery and dead-lettering.
//!
//! Roles never talk to each other directly; they publish to and consume from
//! queues through this trait. The embedded backend and RabbitMQ implement it
//! with the same semantics:
//!
//! - [`Broker::publish`] returns only once every message is durable (an
//!   fsync'd commit, or a publisher confirm). Only then may ingest answer 202.
//! - A delivery stays owned by its subscription until acked, requeued or
//!   dead-lettered. If the subscriber dies (or the process is killed), every
//!   unacked delivery is delivered again, with `redelivered` set.
//! - A message delivered more than the queue's delivery limit is moved to the
//!   dead-letter queue with a reason instead of being delivered again, so a
//!   poison message can never spin.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub use crate::headers::Headers;

/// Header carrying the id that ties an event to everything it causes.
pub const HEADER_CORRELATION_ID: &str = "x-correlation-id";
/// Header carrying the W3C trace context.
pub const HEADER_TRACEPARENT: &str = "traceparent";
/// Header carrying when ingest accepted the event (RFC 3339), for end-to-end latency.
pub const HEADER_INGESTED_AT: &str = "x-ingested-at";

/// Default names of the two queues (the earlier platform's names).
pub const EVENTS_QUEUE: &str = "audit_events";
/// See [`EVENTS_QUEUE`].
pub const ALERTS_QUEUE: &str = "audit_alerts";

/// A message to publish or as delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The event or alert id; brokers use it for de-duplication where they can.
    pub message_id: String,
    /// JSON body.
    pub payload: Bytes,
    /// Headers travelling with the message.
    pub headers: Headers,
}

/// One message handed to a subscriber, owned by it until acknowledged.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Subscription-scoped handle used to ack, requeue or dead-letter.
    pub tag: u64,
    /// The message.
    pub message: Message,
    /// True when this message was delivered before (and not acked).
    pub redelivered: bool,
    /// How many times the message has been delivered, this one included.
    pub delivery_count: u32,
}

/// Sizes of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Messages waiting for a consumer.
    pub ready: u64,
    /// Messages delivered and not yet acked.
    pub unacked: u64,
    /// Messages in the queue's dead-letter queue.
    pub dead_lettered: u64,
}

/// A message that was given up on, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Id of the dead-letter record (for redrive).
    pub id: String,
    /// The queue the message was taken from.
    pub queue: String,
    /// The message id.
    pub message_id: String,
    /// The body, lossily decoded as UTF-8 for display.
    pub payload: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// How many times it had been delivered.
    pub delivery_count: u32,
    /// When it was dead-lettered.
    pub failed_at: DateTime<Utc>,
}

/// Broker failures, classified so callers know whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached or failed transiently; retry later.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The queue is over its bound; the caller should shed load.
    #[error("queue '{queue}' is full ({depth} messages)")]
    Full {
        /// The queue.
        queue: String,
        /// Its depth when the publish was refused.
        depth: u64,
    },
    /// The broker is shutting down.
    #[error("broker closed")]
    Closed,
    /// A request the broker will never accept (unknown tag, bad name...).
    #[error("broker rejected the request: {0}")]
    Rejected(String),
}

impl BrokerError {
    /// True for failures worth retrying.
    pub fn is_transient(&self) -> bool {
        matches!(self, BrokerError::Unavailable(_) | BrokerError::Full { .. })
    }
}

/// Durable queues. See the module docs for the guarantees.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Durably enqueues `messages` on `queue`, in order. Returns only when
    /// all are committed (or confirmed); on error, any subset may be durable,
    /// so callers retry with the same message ids and rely on idempotency.
    ///
    /// The messages are borrowed: a caller that retries keeps its one copy,
    /// and a backend makes its wire form one message at a time instead of
    /// holding a second copy of the whole batch until it is durable.
    async fn publish(&self, queue: &str, messages: &[Message]) -> Result<(), BrokerError>;

    /// Starts a competing consumer on `queue` that holds at most `prefetch`
    /// unacked deliveries.
    async fn subscribe(
        &self,
        queue: &str,
        prefetch: usize,
    ) -> Result<Box<dyn Subscription>, BrokerError>;

    /// Current sizes of `queue`.
    async fn stats(&self, queue: &str) -> Result<QueueStats, BrokerError>;

    /// The newest dead letters of `queue` (newest first), at most `limit`.
    async fn dead_letters(&self, queue: &str, limit: usize)
        -> Result<Vec<DeadLetter>, BrokerError>;

    /// Moves a dead letter back onto its queue. False when no such record exists.
    async fn redrive(&self, queue: &str, dead_letter_id: &str) -> Result<bool, BrokerError>;

    /// A cheap round trip proving the broker works (for readiness).
    async fn check(&self) -> Result<(), BrokerError>;

    /// Waits up to `timeout` until `queue` has room under its bound for `n`
    /// more messages; false if it still has none. A publisher calls it
    /// before [`Broker::publish`] to be held back briefly (backpressure)
    /// instead of being refused with [`BrokerError::Full`] at the first
    /// full moment. Only a hint: the publish may still find the queue full.
    /// Brokers that cannot tell cheaply answer true at once (the default).
    async fn wait_for_room(&self, queue: &str, n: usize, timeout: std::time::Duration) -> bool {
        let _ = (queue, n, timeout);
        true
    }
}

/// One competing consumer. Dropping it returns its unacked deliveries to the queue.
#[async_trait]
pub trait Subscription: Send {
    /// Waits until at least one delivery is available and returns up to `max`.
    /// Cancel-safe: if the future is dropped, no delivery is lost.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError>;

    /// Acknowledges deliveries: their effects are durable, forget them.
    ///
    /// A backend may hold acks back for a moment to send several as one
    /// (RabbitMQ: `ack_delay`); they go out at the latest on the next call
    /// of this subscription after that moment, or on [`Subscription::flush`].
    /// An ack held back when the process dies is lost, and its delivery comes
    /// again: a duplicate for idempotent effects to absorb, never a loss.
    async fn ack(&mut self, tags: &[u64]) -> Result<(), BrokerError>;

    /// Sends the acks held back by [`Subscription::ack`] now; a consumer
    /// calls it before it stops, so a clean shutdown redelivers nothing it
    /// acked. Default: nothing is held back.
    async fn flush(&mut self) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Returns deliveries to the queue after a transient failure; they count
    /// towards the delivery limit.
    async fn requeue(&mut self, tags: &[u64]) -> Result<(), BrokerError>;

    /// Moves a delivery to the dead-letter queue with `reason` (permanent failure).
    async fn dead_letter(&mut self, tag: u64, reason: &str) -> Result<(), BrokerError>;
}
