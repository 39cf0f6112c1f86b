//! [`RabbitSubscription`]: one competing consumer on its own channel.
//!
//! A background task owns the channel (`basic.qos(prefetch)`, manual acks)
//! and feeds deliveries into an unbounded mpsc (bounded in practice by the
//! prefetch window), so [`Subscription::next_batch`] only awaits `recv`
//! and is cancel-safe. When the channel or connection is lost the task
//! opens a new channel on the next connection and consumes again; RabbitMQ
//! has requeued the deliveries of the lost channel, so their tags become
//! stale and acking, requeueing or dead-lettering them is a no-op.
//!
//! Acks may be held back for `ack_delay` (see [`RabbitConfig::ack_delay`])
//! and sent together: at light load every delivery is its own batch, and one
//! `multiple` ack for several of them is one command in the quorum queue's
//! log instead of several. They go out when `ack_delay` has passed since the
//! first of them (`next_batch` waits for that moment too), when
//! `ack_coalesce` of them wait, or on `flush`.
//!
//! Tags are `epoch << 40 | delivery_tag`, where the epoch counts the
//! channels this subscription has consumed on (so the first channel's tags
//! are RabbitMQ's delivery tags, and tags never collide across channels).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use auditflow_core::broker::{BrokerError, Delivery, Message, Subscription};
use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Acker;
use lapin::{BasicProperties, Channel, Consumer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{RabbitConfig, Topology};
use crate::dead_letters::{publish_dead_letter, stable_id, DELIVERY_LIMIT_REASON};
use crate::error::classify;
use crate::publisher::{amqp_int, from_field_table};
use crate::supervisor::{Live, Shared};

const EPOCH_SHIFT: u32 = 40;
const MAX_STALE_TAGS: usize = 10_000;

/// What the consumer task hands over, in order.
// The large variant is the common one (a channel switch is rare); boxing it
// would cost an allocation per delivery.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Feed {
    /// The task consumes on a new channel: the deliveries that follow are
    /// on it. Sent once per channel, so a delivery does not carry its own
    /// clone of the channel (128 bytes, a prefetch of them per subscription).
    Channel {
        epoch: u64,
        channel: Channel,
    },
    Delivery(Incoming),
}

/// A delivery handed over by the consumer task.
#[derive(Debug)]
struct Incoming {
    epoch: u64,
    delivery: lapin::message::Delivery,
    delivery_count: u32,
    /// The compat topology's redelivery key (see [`delivery_key`]).
    key: Option<String>,
}

/// A delivery owned by the caller until acked, requeued or dead-lettered.
#[derive(Debug)]
struct Held {
    epoch: u64,
    amqp_tag: u64,
    acker: Acker,
    /// Shared with the delivery handed out (one copy of the body, not two).
    payload: Bytes,
    properties: BasicProperties,
    delivery_count: u32,
    key: Option<String>,
}

/// False once `held`'s channel is gone: RabbitMQ has requeued it.
fn live(channels: &HashMap<u64, Channel>, held: &Held) -> bool {
    !held.acker.poisoned()
        && channels
            .get(&held.epoch)
            .is_some_and(|c| c.status().connected())
}

/// A competing consumer of one RabbitMQ queue. Dropping it closes its
/// channel, which returns its unacked deliveries to the queue.
#[derive(Debug)]
pub struct RabbitSubscription {
    shared: Arc<Shared>,
    queue: String,
    rx: mpsc::UnboundedReceiver<Feed>,
    /// The channel of each epoch that still has held deliveries, and of
    /// the current one.
    channels: HashMap<u64, Channel>,
    /// Boxed: a `Held` is over 400 bytes, and a table of a batch of them
    /// inline (1,024 deliveries, 2,048 to 4,096 slots while it grows) peaked
    /// at 1.8 MB of analyze's 10.3 MB heap; boxed, the table is 16 bytes a
    /// slot and taking a batch out to ack it moves pointers, not records.
    held: HashMap<u64, Box<Held>>,
    /// Acked by the caller, not yet sent (see the module docs). Boxed as
    /// they came out of `held`: moved, not copied.
    #[allow(clippy::vec_box)]
    deferred: Vec<Box<Held>>,
    /// When `deferred` must go out: `ack_delay` after its first ack.
    flush_at: Option<tokio::time::Instant>,
    stale: HashSet<u64>,
    epoch: u64,
    counter: Arc<AtomicU64>,
    counted: u64,
    task: JoinHandle<()>,
}

impl RabbitSubscription {
    pub(crate) fn start(shared: Arc<Shared>, queue: String, prefetch: u16) -> RabbitSubscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(consume(Arc::clone(&shared), queue.clone(), prefetch, tx));
        RabbitSubscription {
            counter: shared.unacked_counter(&queue),
            shared,
            queue,
            rx,
            channels: HashMap::new(),
            held: HashMap::new(),
            deferred: Vec::new(),
            flush_at: None,
            stale: HashSet::new(),
            epoch: 0,
            counted: 0,
            task,
        }
    }

    /// The consumer task consumes on a new channel.
    fn switch_channel(&mut self, epoch: u64, channel: Channel) {
        self.channels.insert(epoch, channel);
        if epoch > self.epoch {
            self.epoch = epoch;
            self.purge_stale();
        }
    }

    /// Moves held deliveries of dead channels aside: their tags stay valid
    /// (as no-ops) but they no longer count as unacked. Forgets the
    /// channels of earlier epochs that hold nothing any more.
    fn purge_stale(&mut self) {
        let dead: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| h.epoch < self.epoch && !live(&self.channels, h))
            .map(|(t, _)| *t)
            .collect();
        if !dead.is_empty() {
            if self.stale.len() + dead.len() > MAX_STALE_TAGS {
                self.stale.clear();
            }
            for tag in dead {
                self.held.remove(&tag);
                self.stale.insert(tag);
            }
            self.sync_counter();
        }
        let (held, current) = (&self.held, self.epoch);
        self.channels
            .retain(|epoch, _| *epoch == current || held.values().any(|h| h.epoch == *epoch));
    }

    fn accept(&mut self, incoming: Incoming) -> Delivery {
        let d = incoming.delivery;
        let payload = Bytes::from(d.data);
        let tag = (incoming.epoch << EPOCH_SHIFT) | d.delivery_tag;
        let message = Message {
            message_id: d
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            payload: payload.clone(),
            headers: from_field_table(d.properties.headers().as_ref()),
        };
        let delivery = Delivery {
            tag,
            message,
            redelivered: d.redelivered || incoming.delivery_count > 1,
            delivery_count: incoming.delivery_count,
        };
        self.held.insert(
            tag,
            Box::new(Held {
                epoch: incoming.epoch,
                amqp_tag: d.delivery_tag,
                acker: d.acker,
                payload,
                properties: d.properties,
                delivery_count: incoming.delivery_count,
                key: incoming.key,
            }),
        );
        delivery
    }

    /// Removes `tags` from the held set: (held deliveries, unknown tags).
    /// Stale tags (of a lost channel) are silently dropped.
    // The boxes come out of `held` as they are: unboxing would copy each
    // record (see `held`).
    #[allow(clippy::vec_box)]
    fn take(&mut self, tags: &[u64]) -> (Vec<Box<Held>>, Vec<u64>) {
        let mut taken = Vec::with_capacity(tags.len());
        let mut unknown = Vec::new();
        for tag in tags {
            if let Some(h) = self.held.remove(tag) {
                taken.push(h);
            } else if !self.stale.remove(tag) {
                unknown.push(*tag);
            }
        }
        self.sync_counter();
        (taken, unknown)
    }

    /// Brings the per-queue unacked counter (shared by this process's
    /// subscriptions of the queue) in line with what this one holds.
    fn sync_counter(&mut self) {
        let now = self.held.len() as u64;
        if now > self.counted {
            self.counter
                .fetch_add(now - self.counted, Ordering::Relaxed);
        } else {
            self.counter
                .fetch_sub(self.counted - now, Ordering::Relaxed);
        }
        self.counted = now;
    }

    /// Sends the held-back acks: one `multiple` ack per channel where no
    /// delivery below the highest is still held, else one ack each.
    async fn send_acks(&mut self) {
        self.flush_at = None;
        let mut by_epoch: BTreeMap<u64, Vec<Box<Held>>> = BTreeMap::new();
        for h in std::mem::take(&mut self.deferred) {
            // A delivery of a lost channel is back in the queue: no-op.
            if live(&self.channels, &h) {
                by_epoch.entry(h.epoch).or_default().push(h);
            }
        }
        for (epoch, mut group) in by_epoch {
            group.sort_by_key(|h| h.amqp_tag);
            let max_tag = group.last().map_or(0, |h| h.amqp_tag);
            // `multiple` acks everything up to max_tag on the channel: only
            // when we hold nothing else below it there.
            let contiguous = group.len() > 1
                && !self
                    .held
                    .values()
                    .any(|h| h.epoch == epoch && h.amqp_tag < max_tag);
            let channel = self.channels.get(&epoch).filter(|_| contiguous);
            if let Some(channel) = channel {
                if let Err(e) = channel
                    .basic_ack(max_tag, BasicAckOptions { multiple: true })
                    .await
                {
                    // The channel died: RabbitMQ requeues, a redelivery follows.
                    tracing::debug!(queue = %self.queue, error = %e, "ack lost with its channel");
                }
            } else {
                let acks = group
                    .iter()
                    .map(|h| h.acker.ack(BasicAckOptions { multiple: false }));
                for r in join_all(acks).await {
                    if let Err(e) = r {
                        tracing::debug!(queue = %self.queue, error = %e, "ack lost with its channel");
                    }
                }
            }
        }
    }

    fn forget_compat(&self, held: &[Box<Held>]) {
        for key in held.iter().filter_map(|h| h.key.as_deref()) {
            self.shared.forget_delivery(&self.queue, key);
        }
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
impl Subscription for RabbitSubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        let max = max.max(1);
        let mut out = Vec::with_capacity(max.min(64));
        // `recv` is cancel-safe and nothing after it awaits: a channel
        // switch taken before a cancellation is already recorded.
        while out.is_empty() {
            let feed = match self.flush_at {
                Some(at) => tokio::select! {
                    biased;
                    feed = self.rx.recv() => feed,
                    // Nothing came in time to go with the held acks. Once
                    // polled, the flush has handed every ack to lapin, so a
                    // cancellation in it loses none.
                    () = tokio::time::sleep_until(at) => {
                        self.send_acks().await;
                        continue;
                    }
                },
                None => self.rx.recv().await,
            };
            match feed {
                Some(Feed::Channel { epoch, channel }) => self.switch_channel(epoch, channel),
                Some(Feed::Delivery(incoming)) => out.push(self.accept(incoming)),
                None => {
                    return Err(if self.shared.is_closed() {
                        BrokerError::Closed
                    } else {
                        BrokerError::Unavailable(format!("consumer of '{}' stopped", self.queue))
                    })
                }
            }
        }
        while out.len() < max {
            match self.rx.try_recv() {
                Ok(Feed::Channel { epoch, channel }) => self.switch_channel(epoch, channel),
                Ok(Feed::Delivery(incoming)) => out.push(self.accept(incoming)),
                Err(_) => break,
            }
        }
        self.sync_counter();
        Ok(out)
    }

    async fn ack(&mut self, tags: &[u64]) -> Result<(), BrokerError> {
        let (taken, unknown) = self.take(tags);
        self.forget_compat(&taken);
        if !taken.is_empty() {
            let config: &RabbitConfig = &self.shared.config;
            let now = tokio::time::Instant::now();
            let due = *self.flush_at.get_or_insert(now + config.ack_delay);
            self.deferred.extend(taken);
            if self.deferred.len() >= config.ack_coalesce || now >= due {
                self.send_acks().await;
            }
        }
        unknown_tags(&unknown)
    }

    async fn flush(&mut self) -> Result<(), BrokerError> {
        self.send_acks().await;
        Ok(())
    }

    async fn requeue(&mut self, tags: &[u64]) -> Result<(), BrokerError> {
        let (taken, unknown) = self.take(tags);
        let nacks = taken.iter().filter(|h| live(&self.channels, h)).map(|h| {
            h.acker.nack(BasicNackOptions {
                multiple: false,
                requeue: true,
            })
        });
        for r in join_all(nacks).await {
            if let Err(e) = r {
                tracing::debug!(queue = %self.queue, error = %e, "requeue lost with its channel");
            }
        }
        unknown_tags(&unknown)
    }

    async fn dead_letter(&mut self, tag: u64, reason: &str) -> Result<(), BrokerError> {
        let Some(held) = self.held.get(&tag) else {
            if self.stale.remove(&tag) {
                return Ok(());
            }
            return unknown_tags(&[tag]);
        };
        if !live(&self.channels, held) {
            // Already back in the queue; it will be delivered (and judged) again.
            self.held.remove(&tag);
            self.sync_counter();
            return Ok(());
        }
        publish_dead_letter(
            &self.shared,
            &self.queue,
            &held.payload,
            &held.properties,
            reason,
            held.delivery_count,
        )
        .await?;
        let Some(held) = self.held.remove(&tag) else {
            return Ok(());
        };
        self.sync_counter();
        self.forget_compat(std::slice::from_ref(&held));
        if let Err(e) = held.acker.ack(BasicAckOptions { multiple: false }).await {
            // The copy is in the DLQ; the original comes back and may be
            // dead-lettered twice, which is a duplicate, not a loss.
            tracing::debug!(queue = %self.queue, error = %e, "ack after dead-lettering lost");
        }
        Ok(())
    }
}

impl Drop for RabbitSubscription {
    fn drop(&mut self) {
        self.task.abort();
        self.held.clear();
        self.sync_counter();
    }
}

/// Opens a consuming channel on `live`.
async fn open_consumer(
    shared: &Shared,
    live: &Live,
    queue: &str,
    prefetch: u16,
) -> Result<(Channel, Consumer), BrokerError> {
    shared.ensure_declared(live, queue).await?;
    let channel = live.temp_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions { global: false })
        .await
        .map_err(|e| classify("cannot set prefetch", &e))?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: false,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| classify(format_args!("cannot consume from '{queue}'"), &e))?;
    Ok((channel, consumer))
}

/// The compat topology's key of a message, by which its deliveries are
/// counted (classic queues do not count them): its `message_id`, else a
/// hash of its body. `None` on quorum queues, which count for us.
fn delivery_key(shared: &Shared, d: &lapin::message::Delivery) -> Option<String> {
    if shared.config.topology != Topology::Compat {
        return None;
    }
    Some(match d.properties.message_id() {
        Some(id) if !id.as_str().is_empty() => id.as_str().to_string(),
        _ => stable_id(&d.data),
    })
}

/// How many times this message has been delivered, this one included.
fn delivery_count(
    shared: &Shared,
    queue: &str,
    d: &lapin::message::Delivery,
    key: Option<&str>,
) -> u32 {
    match (shared.config.topology, key) {
        (Topology::Compat, Some(key)) => shared.count_delivery(queue, key, d.redelivered),
        _ => {
            let previous = d
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-delivery-count"))
                .and_then(amqp_int);
            match previous {
                Some(n) => u32::try_from(n.max(0))
                    .unwrap_or(u32::MAX)
                    .saturating_add(1),
                None if d.redelivered => 2,
                None => 1,
            }
        }
    }
}

/// The consumer task: consume, hand over, and re-consume after failures.
async fn consume(
    shared: Arc<Shared>,
    queue: String,
    prefetch: u16,
    tx: mpsc::UnboundedSender<Feed>,
) {
    let mut epoch = 0u64;
    let mut failures = 0u32;
    loop {
        let live = tokio::select! {
            live = shared.wait_live(0, None) => match live {
                Ok(live) => live,
                Err(_) => return,
            },
            _ = tx.closed() => return,
        };
        let (channel, mut consumer) = match open_consumer(&shared, &live, &queue, prefetch).await {
            Ok(opened) => opened,
            Err(e) => {
                let delay = shared.config.reconnect.delay(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(queue, error = %e, ?delay, "cannot consume, retrying");
                shared.kick();
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        failures = 0;
        let switched = Feed::Channel {
            epoch,
            channel: channel.clone(),
        };
        if tx.send(switched).is_err() {
            return;
        }
        loop {
            let next = tokio::select! {
                next = consumer.next() => next,
                _ = tx.closed() => return,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => {
                    tracing::warn!(queue, error = %e, "consumer channel lost");
                    break;
                }
                None => {
                    tracing::warn!(queue, "consumer cancelled");
                    break;
                }
            };
            let key = delivery_key(&shared, &delivery);
            let count = delivery_count(&shared, &queue, &delivery, key.as_deref());
            if count > shared.config.delivery_limit.max(1) {
                over_limit(&shared, &queue, delivery, count, key.as_deref()).await;
                continue;
            }
            let incoming = Incoming {
                epoch,
                delivery,
                delivery_count: count,
                key,
            };
            if tx.send(Feed::Delivery(incoming)).is_err() {
                return;
            }
        }
        drop(consumer);
        drop(channel);
        epoch += 1;
        shared.kick();
        tokio::time::sleep(shared.config.reconnect.initial).await;
    }
}

/// Dead-letters a delivery over the limit (compat topology, or a quorum
/// delivery RabbitMQ let through) instead of handing it over.
async fn over_limit(
    shared: &Shared,
    queue: &str,
    delivery: lapin::message::Delivery,
    count: u32,
    key: Option<&str>,
) {
    let moved = publish_dead_letter(
        shared,
        queue,
        &delivery.data,
        &delivery.properties,
        DELIVERY_LIMIT_REASON,
        // Deliveries handed to callers: this one was not.
        count.saturating_sub(1),
    )
    .await;
    let result = match moved {
        Ok(()) => {
            if let Some(key) = key {
                shared.forget_delivery(queue, key);
            }
            delivery
                .acker
                .ack(BasicAckOptions { multiple: false })
                .await
        }
        Err(e) => {
            tracing::warn!(queue, error = %e, "cannot dead-letter a message over the delivery limit");
            delivery
                .acker
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await
        }
    };
    if let Err(e) = result {
        tracing::debug!(queue, error = %e, "settling an over-limit delivery failed");
    }
}
