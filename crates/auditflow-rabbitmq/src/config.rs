//! [`RabbitConfig`]: how to reach RabbitMQ and which topology to use.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which queue layout [`crate::RabbitBroker`] declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// Durable quorum queues with a server-side delivery limit, a dead-letter
    /// exchange `<queue>.dlx` routing to the quorum queue `<queue>.dlq`
    /// (at-least-once dead-lettering) and an optional length bound.
    #[default]
    Quorum,
    /// Durable classic queues declared with no arguments, exactly as the
    /// earlier Python services declare them, so both can share a queue. The
    /// delivery limit is enforced client-side and dead letters are published
    /// explicitly to the classic queue `<queue>.dlq`. `max_queue_length` is
    /// not applied (it would need queue arguments).
    Compat,
}

/// Reconnection backoff: `initial * 2^attempt`, capped at `max`, each delay
/// shortened by a random fraction of up to `jitter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconnectConfig {
    /// First delay after a failed attempt.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Largest delay.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Fraction (0 to 1) of each delay that is randomised away, so that many
    /// processes do not reconnect in lockstep.
    pub jitter: f64,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig {
            initial: Duration::from_millis(100),
            // The time to recover after RabbitMQ returns is bounded by this
            // (the chaos suite measured ~8.5 s of RTO after a 20 s partition
            // with 10 s); one attempt every few seconds per process is
            // nothing for a broker, even with many replicas.
            max: Duration::from_secs(3),
            jitter: 0.2,
        }
    }
}

impl ReconnectConfig {
    /// The delay before attempt number `attempt + 1` (`attempt` starts at 0).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
            .min(self.max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        base.mul_f64(1.0 - jitter * fastrand::f64())
    }
}

/// Configuration of [`crate::RabbitBroker`]. Every field has a default, so
/// `RabbitConfig::default()` talks to a local RabbitMQ as guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RabbitConfig {
    /// AMQP URL, vhost percent-encoded (`%2f` is `/`).
    pub url: String,
    /// Queue layout; see [`Topology`].
    pub topology: Topology,
    /// Deliveries allowed per message; the next one dead-letters it with the
    /// reason `delivery limit exceeded`.
    pub delivery_limit: u32,
    /// How long `publish` may take, reconnections included, before it gives
    /// up with `Unavailable`.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// Largest number of messages of one `publish` call in flight before
    /// their confirms are awaited: a call publishes up to this many
    /// messages back to back, then awaits all their confirms, then goes on.
    pub confirm_batch: usize,
    /// Reconnection backoff.
    pub reconnect: ReconnectConfig,
    /// Prefetch used when a caller asks for 0; callers normally pass their own.
    pub prefetch: u16,
    /// Optional bound on a queue's ready messages (quorum topology): the
    /// broker then refuses (nacks) publishes and `publish` returns `Full`.
    pub max_queue_length: Option<u64>,
    /// Most dead letters examined by `dead_letters` and `redrive` (both
    /// scan the dead-letter queue with `basic.get`).
    pub dead_letter_scan_limit: usize,
    /// Connection name shown by `rabbitmqctl list_connections client_properties`.
    pub connection_name: String,
    /// Queues declared with `x-single-active-consumer` (quorum topology):
    /// however many replicas subscribe, one consumes at a time and another
    /// takes over when it goes, so the queue is processed in order. AuditFlow
    /// sets it on the events queue, whose threshold windows need queue order.
    /// Changing it for an existing queue requires deleting the queue first
    /// (RabbitMQ refuses to redeclare a queue with other arguments).
    pub single_active_consumer: Vec<String>,
    /// Largest AMQP frame we propose, in bytes, unless the URL sets
    /// `frame_max` itself. lapin keeps a send and a receive ring buffer of 32
    /// frames each per connection, so RabbitMQ's own default (128 KiB) costs
    /// 8 MiB of resident memory per process, 32 KiB costs 2 MiB and 8 KiB
    /// (the default) 512 KiB. Audit events and alerts are a few kilobytes
    /// at most; a larger message is split into more body frames. Measured
    /// with `scripts/bench.py --distributed`: 128 -> 32 KiB (2026-12-03,
    /// three runs each) peak RSS of analyze 51 -> 45 MB, notify 29.5 -> 26.5
    /// MB, ingest 49 -> 47 MB, end-to-end throughput 14.4-15.5k ->
    /// 15.1-15.6k events/s; 32 -> 8 KiB (2026-12-04, one run) analyze 40.8
    /// -> 39.6 MB, ingest 43.6 -> 42.5 MB, throughput within the noise.
    pub frame_max: u32,
    /// How long a consumer may hold an ack back so that the acks of the
    /// deliveries that follow go out with it, as one `multiple` ack (0:
    /// every ack at once). Each ack is a command in a quorum queue's log, so
    /// at light load, where every delivery is its own batch, acking them one
    /// by one cost RabbitMQ about 15% more CPU (1,000 messages/s, acks of 10
    /// against acks of 1, 2026-12-07). The events are durable before their
    /// ack, so an ack lost with its process only means a redelivery.
    #[serde(with = "humantime_serde")]
    pub ack_delay: Duration,
    /// Most acks held back: once this many wait, they are sent at once. So
    /// a busy consumer's acks (a batch of them per call) are not delayed,
    /// and acked deliveries take at most this much of the prefetch window.
    pub ack_coalesce: usize,
}

impl Default for RabbitConfig {
    fn default() -> Self {
        RabbitConfig {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_string(),
            topology: Topology::Quorum,
            delivery_limit: 5,
            publish_timeout: Duration::from_secs(5),
            confirm_batch: 1000,
            reconnect: ReconnectConfig::default(),
            prefetch: 100,
            max_queue_length: None,
            dead_letter_scan_limit: 1000,
            connection_name: "auditflow".to_string(),
            single_active_consumer: Vec::new(),
            frame_max: 8 * 1024,
            ack_delay: Duration::from_millis(5),
            ack_coalesce: 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let r = ReconnectConfig::default();
        assert!(r.delay(0) <= Duration::from_millis(100));
        assert!(r.delay(0) >= Duration::from_millis(80));
        assert!(r.delay(3) <= Duration::from_millis(800));
        // Capped at 3 s, minus at most 20 % of jitter.
        assert!(r.delay(50) <= Duration::from_secs(3));
        assert!(r.delay(50) >= Duration::from_millis(2400));
    }

    #[test]
    fn defaults_and_humantime() {
        let c: RabbitConfig = serde_json::from_str(
            r#"{"topology":"compat","publish_timeout":"2s","reconnect":{"max":"3s"}}"#,
        )
        .unwrap();
        assert_eq!(c.topology, Topology::Compat);
        assert_eq!(c.publish_timeout, Duration::from_secs(2));
        assert_eq!(c.reconnect.max, Duration::from_secs(3));
        assert_eq!(c.reconnect.initial, Duration::from_millis(100));
        assert_eq!(c.delivery_limit, 5);
        assert_eq!(
            RabbitConfig::default().url,
            "amqp://guest:guest@127.0.0.1:5672/%2f"
        );
    }
}
