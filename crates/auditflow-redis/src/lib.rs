//! AuditFlow's Redis backend for threshold-rule windows:
//! [`RedisWindowState`] implements [`auditflow_core::window::WindowState`].
//!
//! - [`config`]: [`RedisConfig`] (serde, humantime durations, defaults).
//! - [`script`]: the Lua scripts (`observe.lua`, `epoch.lua`) and the key
//!   layout. Each `(rule, group)` window is a sorted set of event times, a
//!   sorted set of first-observed times, a sorted set of fired events and a
//!   hash of recorded decisions, all under one TTL (retention + decision
//!   grace + slack) refreshed on write, so idle groups expire.
//! - [`window`]: the state: one atomic script call per group, the groups
//!   of a batch pipelined; the script mirrors
//!   [`auditflow_core::window::GroupWindow`] exactly.
//! - [`rebuild`]: how losing Redis's data is detected (an epoch marker) and
//!   groups are rebuilt from the durable [`auditflow_core::window::WindowSource`]
//!   before anything is decided on them.
//!
//! When Redis is unreachable, `observe` fails with
//! [`WindowError::Unavailable`](auditflow_core::window::WindowError) within
//! the command timeout; the caller pauses and retries, and the connection
//! manager reconnects by itself.
//!
//! Requirements on Redis: standalone (the script touches the epoch key and
//! the group's keys, which Redis Cluster would place in different slots), no
//! persistence or a marker reset on restore, and `maxmemory-policy
//! noeviction` (see [`rebuild`]).
#![deny(missing_docs)]

pub mod config;
mod error;
pub mod rebuild;
pub mod script;
pub mod window;

pub use config::RedisConfig;
pub use error::ConfigError;
pub use script::GroupKeys;
pub use window::RedisWindowState;
