//! Queue names, arguments and declarations of both topologies.
//!
//! RabbitMQ 3.10 (the version this was written against) supports, for
//! quorum queues: `x-delivery-limit`, `x-dead-letter-exchange`,
//! `x-dead-letter-routing-key`, `x-overflow=reject-publish` and
//! `x-dead-letter-strategy=at-least-once` (added in 3.10; it requires
//! `reject-publish`, so that overflow is always declared). With at-least-once
//! dead-lettering the source queue keeps a message until the dead-letter
//! queue has confirmed it, so a server crash cannot lose a dead letter.
//!
//! Quorum topology for a queue `q`:
//! - exchange `q.dlx` (direct, durable), bound to
//! - queue `q.dlq` (durable quorum queue, no limit) with routing key `q.dlq`;
//! - queue `q` (durable quorum queue) with `x-delivery-limit`,
//!   `x-dead-letter-exchange=q.dlx`, `x-dead-letter-routing-key=q.dlq`,
//!   `x-dead-letter-strategy=at-least-once`, `x-overflow=reject-publish` and
//!   `x-max-length` when bounded.
//!
//! RabbitMQ 3.10 counts every return of a quorum-queue message (requeue,
//! channel closed while unacked) in `x-delivery-count` and dead-letters it
//! when that count exceeds `x-delivery-limit`, which is therefore declared as
//! `delivery_limit - 1`: a message is delivered at most `delivery_limit`
//! times, like the embedded broker.
//!
//! Compat topology: `q` and `q.dlq` are durable classic queues declared with
//! no arguments (as the earlier Python services do); dead letters go through
//! the default exchange.

use auditflow_core::broker::BrokerError;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use crate::config::{RabbitConfig, Topology};
use crate::error::classify;

/// Name of the dead-letter queue of `queue`.
pub fn dlq_name(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// Name of the dead-letter exchange of `queue` (quorum topology).
pub fn dlx_name(queue: &str) -> String {
    format!("{queue}.dlx")
}

fn string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// Arguments of the main queue.
pub(crate) fn queue_arguments(config: &RabbitConfig, queue: &str) -> FieldTable {
    let mut args = FieldTable::default();
    if config.topology == Topology::Compat {
        return args;
    }
    args.insert("x-queue-type".into(), string("quorum"));
    let limit = i64::from(config.delivery_limit.max(1) - 1);
    args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(limit));
    args.insert("x-dead-letter-exchange".into(), string(&dlx_name(queue)));
    args.insert("x-dead-letter-routing-key".into(), string(&dlq_name(queue)));
    args.insert("x-dead-letter-strategy".into(), string("at-least-once"));
    args.insert("x-overflow".into(), string("reject-publish"));
    if let Some(max) = config.max_queue_length {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        args.insert("x-max-length".into(), AMQPValue::LongLongInt(max));
    }
    if config.single_active_consumer.iter().any(|q| q == queue) {
        args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    }
    args
}

/// Arguments of the dead-letter queue.
pub(crate) fn dlq_arguments(config: &RabbitConfig) -> FieldTable {
    let mut args = FieldTable::default();
    if config.topology == Topology::Quorum {
        args.insert("x-queue-type".into(), string("quorum"));
    }
    args
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares `queue` and its dead-letter side on `channel`. A mismatch with an
/// existing declaration closes the channel and is reported as `Rejected`.
pub(crate) async fn declare(
    channel: &Channel,
    config: &RabbitConfig,
    queue: &str,
) -> Result<(), BrokerError> {
    let dlq = dlq_name(queue);
    if config.topology == Topology::Quorum {
        let dlx = dlx_name(queue);
        channel
            .exchange_declare(
                dlx.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| classify(format_args!("cannot declare exchange '{dlx}'"), &e))?;
        declare_one(channel, &dlq, dlq_arguments(config)).await?;
        channel
            .queue_bind(
                dlq.as_str().into(),
                dlx.as_str().into(),
                dlq.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| classify(format_args!("cannot bind '{dlq}' to '{dlx}'"), &e))?;
    } else {
        declare_one(channel, &dlq, dlq_arguments(config)).await?;
    }
    declare_one(channel, queue, queue_arguments(config, queue)).await
}

async fn declare_one(channel: &Channel, queue: &str, args: FieldTable) -> Result<(), BrokerError> {
    channel
        .queue_declare(queue.into(), durable(), args)
        .await
        .map(|_| ())
        .map_err(|e| classify(format_args!("cannot declare queue '{queue}'"), &e))
}

/// Ready messages of an existing queue (passive declare).
pub(crate) async fn depth(channel: &Channel, queue: &str) -> Result<u64, BrokerError> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map(|q| u64::from(q.message_count()))
        .map_err(|e| classify(format_args!("cannot inspect queue '{queue}'"), &e))
}
