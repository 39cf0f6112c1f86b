//! AuditFlow's PostgreSQL backends, for deployments with several replicas.
//!
//! - [`PgStore`] ([`auditflow_core::Store`]): events, alerts and delivery
//!   records. Writes are batched into ONE statement per call
//!   (`INSERT ... SELECT * FROM UNNEST(...) ON CONFLICT DO NOTHING`), so a
//!   redelivered event or alert is stored once. The `alerts` table is
//!   column-for-column the earlier notification service's (plus
//!   `alert_json`), and an existing legacy table is adopted as it is.
//! - [`PgWindowState`] ([`auditflow_core::WindowState`]): threshold-rule
//!   windows decided by [`auditflow_core::window::GroupWindow`] under a
//!   transaction-scoped advisory lock per `(rule, group)`, so analyzers in
//!   several processes can compete for the same groups and still never
//!   decide an event twice.
//! - [`PgPool`]: the shared connection pool (deadpool, verified recycling,
//!   every call bounded by the configured timeouts).
//! - Versioned migrations ([`migrations`]) applied in one transaction under an
//!   advisory lock, so concurrent replicas can all migrate on start.
//!
//! Failures are classified by SQLSTATE ([`sqlstate`]), never by message
//! text: connection loss, shutdowns, serialization failures, deadlocks,
//! timeouts and pool exhaustion are transient
//! ([`auditflow_core::store::StoreError::Unavailable`]); everything else is
//! [`auditflow_core::store::StoreError::Rejected`].
#![deny(missing_docs)]

mod config;
mod deliveries;
mod error;
pub mod migrations;
mod pool;
mod query;
pub mod sqlstate;
mod store;
pub mod verify;
mod window;

pub use config::PgConfig;
pub use error::PgError;
pub use pool::PgPool;
pub use query::DEFAULT_PAGE;
pub use store::PgStore;
pub use verify::VERIFY_AFTER;
pub use window::PgWindowState;
