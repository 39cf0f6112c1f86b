//! AuditFlow's RabbitMQ backend: [`RabbitBroker`] implements
//! [`auditflow_core::broker::Broker`] over [lapin](https://docs.rs/lapin).
//!
//! - [`config`]: [`RabbitConfig`] (serde, humantime durations, defaults).
//! - [`topology`]: quorum queues with a delivery limit and a dead-letter
//!   exchange/queue (default), or the earlier Python services' classic
//!   queues without arguments (`compat`).
//! - Publishing ([`Broker::publish`](auditflow_core::broker::Broker::publish))
//!   uses publisher confirms, pipelined per call, persistent messages with
//!   `message_id`, `content_type=application/json` and the message headers.
//! - Each subscription consumes on its own channel with `basic.qos`.
//! - [`dead_letters`]: explicit dead-lettering keeps the reason in headers;
//!   listing is a non-destructive peek of `<queue>.dlq`.
//! - A supervisor task reconnects with capped exponential backoff and
//!   jitter, re-declares the topology and re-opens consumers.
//!
//! `stats().unacked` counts the deliveries held by this process's
//! subscriptions only: RabbitMQ does not expose unacked counts over AMQP.
#![deny(missing_docs)]

mod broker;
pub mod config;
pub mod dead_letters;
mod error;
mod publisher;
mod subscription;
mod supervisor;
pub mod topology;

pub use broker::RabbitBroker;
pub use config::{RabbitConfig, ReconnectConfig, Topology};
pub use error::ConfigError;
pub use publisher::CONTENT_TYPE;
pub use subscription::RabbitSubscription;
