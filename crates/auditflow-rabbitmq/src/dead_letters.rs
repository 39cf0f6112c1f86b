//! Dead letters: explicit dead-lettering with a reason, listing (a peek) and
//! redrive.
//!
//! A dead letter is a message in `<queue>.dlq`. Those we move there carry
//! the headers [`HEADER_REASON`], [`HEADER_FAILED_AT`],
//! [`HEADER_SOURCE_QUEUE`] and [`HEADER_DELIVERY_COUNT`]; those RabbitMQ
//! moved there itself (quorum delivery limit) carry `x-death`, whose reason
//! `delivery_limit` is reported as [`DELIVERY_LIMIT_REASON`].
//!
//! RabbitMQ cannot browse a queue, so listing takes messages with
//! `basic.get` (no auto-ack) on a temporary channel, up to
//! `dead_letter_scan_limit` of them, and closes the channel, which returns
//! them all to the dead-letter queue: a peek that changes nothing but the
//! messages' `redelivered` flag. `basic.get` yields the oldest first; to
//! honour [`Broker::dead_letters`](auditflow_core::broker::Broker::dead_letters)
//! (newest first) the scanned messages are reversed and the first `limit`
//! returned, so with more than `dead_letter_scan_limit` dead letters the
//! newest ones are not seen. While a scan runs (and briefly after, as
//! RabbitMQ processes the returns) the scanned messages are invisible to
//! other scans and to `stats`.
//!
//! Record ids are message ids (or `fnv-<hash of the body>` for messages
//! without one, e.g. from the earlier Python services); two dead letters of
//! the same message share an id and `redrive` moves the oldest.

use std::time::Duration;

use auditflow_core::broker::{BrokerError, DeadLetter, Message};
use chrono::{DateTime, Utc};
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use tokio::time::Instant;

use crate::error::classify;
use crate::publisher::{amqp_int, amqp_string, from_field_table, publish_confirmed, Outgoing};
use crate::supervisor::Shared;
use crate::topology::dlq_name;

/// Header with the reason a message was dead-lettered.
pub const HEADER_REASON: &str = "x-auditflow-reason";
/// Header with when it was dead-lettered (RFC 3339).
pub const HEADER_FAILED_AT: &str = "x-auditflow-failed-at";
/// Header with the queue it was taken from.
pub const HEADER_SOURCE_QUEUE: &str = "x-auditflow-source-queue";
/// Header with how many times it had been delivered.
pub const HEADER_DELIVERY_COUNT: &str = "x-auditflow-delivery-count";
/// Reason of messages over the delivery limit (same text as the embedded broker).
pub const DELIVERY_LIMIT_REASON: &str = "delivery limit exceeded";

/// Headers that describe a dead-lettering, removed on redrive.
const BOOKKEEPING_HEADERS: &[&str] = &[
    HEADER_REASON,
    HEADER_FAILED_AT,
    HEADER_SOURCE_QUEUE,
    HEADER_DELIVERY_COUNT,
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-last-death-exchange",
    "x-delivery-count",
];

/// A stable id for a message without a message id: FNV-1a of its body.
pub(crate) fn stable_id(payload: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in payload {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("fnv-{hash:016x}")
}

/// Publishes a copy of a message to `<queue>.dlq` with the reason, and
/// waits for its confirm.
pub(crate) async fn publish_dead_letter(
    shared: &Shared,
    queue: &str,
    payload: &[u8],
    properties: &BasicProperties,
    reason: &str,
    delivery_count: u32,
) -> Result<(), BrokerError> {
    let mut headers = properties.headers().clone().unwrap_or_default();
    let s = |v: &str| AMQPValue::LongString(LongString::from(v));
    headers.insert(HEADER_REASON.into(), s(reason));
    headers.insert(HEADER_FAILED_AT.into(), s(&Utc::now().to_rfc3339()));
    headers.insert(HEADER_SOURCE_QUEUE.into(), s(queue));
    headers.insert(
        HEADER_DELIVERY_COUNT.into(),
        AMQPValue::LongLongInt(i64::from(delivery_count)),
    );
    let item = Outgoing {
        payload: bytes::Bytes::copy_from_slice(payload),
        properties: properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2),
    };
    let deadline = Instant::now() + shared.config.publish_timeout;
    publish_confirmed(shared, queue, &dlq_name(queue), false, &[item], deadline).await
}

/// The first `x-death` entry (the most recent dead-lettering).
fn x_death(headers: &FieldTable) -> Option<&FieldTable> {
    match headers.inner().get("x-death")? {
        AMQPValue::FieldArray(a) => a.as_slice().iter().find_map(|v| match v {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

fn describe_rabbit_reason(reason: &str) -> String {
    match reason {
        "delivery_limit" => DELIVERY_LIMIT_REASON.to_string(),
        "rejected" => "rejected by a consumer".to_string(),
        "expired" => "expired (message TTL)".to_string(),
        "maxlen" => "queue length limit exceeded".to_string(),
        other => format!("dead-lettered by RabbitMQ: {other}"),
    }
}

/// The record id of a dead letter: its message id, else a hash of its body.
fn record_id(properties: &BasicProperties, payload: &[u8]) -> String {
    match properties.message_id() {
        Some(id) if !id.as_str().is_empty() => id.as_str().to_string(),
        _ => stable_id(payload),
    }
}

/// Describes a message taken from the DLQ of `queue`.
pub(crate) fn describe(
    shared: &Shared,
    queue: &str,
    properties: &BasicProperties,
    payload: &[u8],
) -> DeadLetter {
    let empty = FieldTable::default();
    let headers = properties.headers().as_ref().unwrap_or(&empty);
    let get = |k: &str| headers.inner().get(k);
    let death = x_death(headers);
    let death_get = |k: &str| death.and_then(|d| d.inner().get(k));
    let reason = get(HEADER_REASON)
        .and_then(amqp_string)
        .or_else(|| {
            death_get("reason")
                .and_then(amqp_string)
                .map(|r| describe_rabbit_reason(&r))
        })
        .unwrap_or_else(|| "unknown".to_string());
    let delivery_count = get(HEADER_DELIVERY_COUNT)
        .and_then(amqp_int)
        .and_then(|n| u32::try_from(n).ok())
        .or_else(|| {
            // RabbitMQ dead-letters at the limit, after `delivery_limit` deliveries.
            (reason == DELIVERY_LIMIT_REASON).then_some(shared.config.delivery_limit)
        })
        .or_else(|| {
            get("x-delivery-count")
                .and_then(amqp_int)
                .and_then(|n| u32::try_from(n + 1).ok())
        })
        .unwrap_or(0);
    let failed_at = get(HEADER_FAILED_AT)
        .and_then(amqp_string)
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            death_get("time")
                .and_then(amqp_int)
                .and_then(|secs| DateTime::from_timestamp(secs, 0))
        })
        .or_else(|| {
            properties
                .timestamp()
                .and_then(|t| i64::try_from(t).ok())
                .and_then(|secs| DateTime::from_timestamp(secs, 0))
        })
        .unwrap_or_else(Utc::now);
    DeadLetter {
        id: record_id(properties, payload),
        queue: get(HEADER_SOURCE_QUEUE)
            .and_then(amqp_string)
            .unwrap_or_else(|| queue.to_string()),
        message_id: properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        payload: String::from_utf8_lossy(payload).into_owned(),
        reason,
        delivery_count,
        failed_at,
    }
}

async fn scan_channel(shared: &Shared, queue: &str) -> Result<Channel, BrokerError> {
    let deadline = Instant::now() + shared.config.publish_timeout;
    let live = shared.wait_live(0, Some(deadline)).await?;
    shared.ensure_declared(&live, queue).await?;
    live.temp_channel().await
}

async fn get_one(
    channel: &Channel,
    dlq: &str,
) -> Result<Option<lapin::message::BasicGetMessage>, BrokerError> {
    let get = channel.basic_get(dlq.into(), BasicGetOptions { no_ack: false });
    match tokio::time::timeout(Duration::from_secs(5), get).await {
        Ok(r) => r.map_err(|e| classify(format_args!("cannot read '{dlq}'"), &e)),
        Err(_) => Err(BrokerError::Unavailable(format!(
            "reading '{dlq}' timed out"
        ))),
    }
}

/// Peeks at up to `dead_letter_scan_limit` dead letters of `queue` and
/// returns the newest `limit`, newest first.
pub(crate) async fn list(
    shared: &Shared,
    queue: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, BrokerError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let dlq = dlq_name(queue);
    let channel = scan_channel(shared, queue).await?;
    let mut letters = Vec::new();
    let result = async {
        while letters.len() < shared.config.dead_letter_scan_limit {
            let Some(got) = get_one(&channel, &dlq).await? else {
                break;
            };
            let d = &got.delivery;
            letters.push(describe(shared, queue, &d.properties, &d.data));
            if got.message_count == 0 {
                break;
            }
        }
        Ok::<_, BrokerError>(())
    }
    .await;
    // Closing the channel returns every message taken to the DLQ.
    let _ = channel.close(200, "peeked".into()).await;
    result?;
    letters.reverse();
    letters.truncate(limit);
    Ok(letters)
}

/// Moves the dead letter `id` of `queue` back onto `queue`.
pub(crate) async fn redrive(shared: &Shared, queue: &str, id: &str) -> Result<bool, BrokerError> {
    let dlq = dlq_name(queue);
    let channel = scan_channel(shared, queue).await?;
    let result = async {
        let mut scanned = 0usize;
        while scanned < shared.config.dead_letter_scan_limit {
            let Some(got) = get_one(&channel, &dlq).await? else {
                return Ok(false);
            };
            scanned += 1;
            let d = got.delivery;
            if record_id(&d.properties, &d.data) != id {
                if got.message_count == 0 {
                    return Ok(false);
                }
                continue;
            }
            let mut headers = from_field_table(d.properties.headers().as_ref());
            for h in BOOKKEEPING_HEADERS {
                headers.remove(h);
            }
            let message = Message {
                message_id: d
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                payload: d.data.clone().into(),
                headers,
            };
            let mut properties = crate::publisher::properties(&message);
            if d.properties.content_type().is_none() {
                // Keep a compat message as the earlier services sent it.
                properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(crate::publisher::to_field_table(&message.headers));
                if !message.message_id.is_empty() {
                    properties = properties.with_message_id(message.message_id.as_str().into());
                }
            }
            let item = Outgoing {
                payload: d.data.into(),
                properties,
            };
            let deadline = Instant::now() + shared.config.publish_timeout;
            publish_confirmed(shared, queue, queue, false, &[item], deadline).await?;
            d.acker
                .ack(BasicAckOptions { multiple: false })
                .await
                .map_err(|e| {
                    classify(
                        format_args!("cannot remove the dead letter from '{dlq}'"),
                        &e,
                    )
                })?;
            return Ok(true);
        }
        Ok(false)
    }
    .await;
    let _ = channel.close(200, "redriven".into()).await;
    result
}
