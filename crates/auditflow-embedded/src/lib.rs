//! AuditFlow's embedded backends: no external server, one data directory,
//! crash-safe.
//!
//! [`Embedded::open`] locks a directory and opens three SQLite databases in
//! WAL mode, each owned by one writer thread doing **group commits** (every
//! pending request in one transaction, one fsync, then a reply to each):
//!
//! - [`EmbeddedBroker`] (`broker.sqlite`): durable FIFO queues with
//!   competing consumers, prefetch, acks, requeue, delivery limit, dead
//!   letters and redrive ([`auditflow_core::Broker`]).
//! - [`SqliteStore`] (`store.sqlite`): idempotent events, alerts (with the
//!   legacy alert columns) and delivery records, with indexed, cursor-paginated
//!   queries ([`auditflow_core::Store`]).
//! - [`SqliteWindowState`] (`window.sqlite`): durable threshold-rule windows
//!   deciding with [`auditflow_core::window::GroupWindow`]
//!   ([`auditflow_core::WindowState`]).
//!
//! With the default `synchronous = FULL`, anything acknowledged (a publish,
//! an insert, a window decision) survives `kill -9` and power loss. Async
//! callers never block the runtime: writers are std threads and queries run
//! on `spawn_blocking` with a pool of read-only connections.
//!
//! Failpoints (feature `failpoints`): `embedded::{broker,store,window}::before_commit`
//! and `embedded::{broker,store,window}::after_commit`.
#![deny(missing_docs)]

mod broker;
mod checkpoint;
mod conn;
mod deliveries;
mod embedded;
mod error;
mod failpoint;
mod lock;
mod options;
mod query;
mod queue;
mod readpool;
mod schema;
mod store;
mod subscription;
mod window;
mod writer;

pub use broker::{EmbeddedBroker, BROKER_FILE, DELIVERY_LIMIT_REASON};
pub use embedded::Embedded;
pub use error::EmbeddedError;
pub use lock::LOCK_FILE;
pub use options::{EmbeddedOptions, SyncMode};
pub use query::DEFAULT_PAGE;
pub use store::{SqliteStore, STORE_FILE};
pub use subscription::EmbeddedSubscription;
pub use window::{SqliteWindowState, WINDOW_FILE};
