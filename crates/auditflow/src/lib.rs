//! AuditFlow: a fault-tolerant audit-event platform. One binary, several roles.
//!
//! - `ingest` takes events over HTTP and publishes them durably;
//! - `analyze` stores events and runs the rules, publishing alerts;
//! - `notify` stores alerts and delivers them to channels;
//! - the read API serves events, alerts and dead letters;
//! - the dashboard shows them to people (`/dashboard`);
//! - `generate` is the load and demo source.
//!
//! Roles talk only through the broker and store interfaces of
//! [`auditflow_core`], so backends slot in without touching them.

pub mod allocator;
pub mod backends;
pub mod channels;
pub mod cli;
pub mod config;
pub mod context;
pub mod dashboard;
pub mod dependencies;
pub mod health;
pub mod metrics;
pub mod monitor;
pub mod persist;
pub mod platform;
pub mod resilient;
pub mod roles;
pub mod serve;
pub mod server;
pub mod sli;
pub mod slo;
pub mod telemetry;
pub mod traces;
pub mod window_source;
