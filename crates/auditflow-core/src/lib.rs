//! AuditFlow's data model and the narrow interfaces its roles talk through.
//!
//! - [`event`] and [`alert`]: the wire formats, compatible with the earlier
//!   Python AuditFlow.
//! - [`broker`]: durable queues (publish with confirm, ack, redelivery, DLQ).
//! - [`store`]: idempotent storage of events, alerts and deliveries.
//! - [`window`]: event-time windows of threshold rules and their state.
//!
//! Backends (embedded, RabbitMQ, PostgreSQL, Redis) implement the traits;
//! roles depend only on the traits.
#![deny(missing_docs)]

pub mod alert;
pub mod broker;
#[cfg(feature = "test-support")]
pub mod conformance;
pub mod event;
pub mod headers;
pub mod nul;
pub mod store;
pub mod time;
pub mod window;

pub use alert::{alert_id_for, Alert};
pub use broker::{Broker, Delivery, Message, Subscription};
pub use event::{Event, Severity};
pub use store::Store;
pub use window::WindowState;
