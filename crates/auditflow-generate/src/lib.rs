//! AuditFlow's load and demo source.
//!
//! - [`factory`]: a seeded [`Factory`] of audit events in the earlier Python
//!   generator's format and mix (logins, sudo, file changes, service status,
//!   account creation), with optional failed-login bursts that fire
//!   `ANLY-SEC-001` and malformed items that ingest must refuse.
//! - [`driver`]: [`run`] sends them to `POST {url}/v1/events` in batches,
//!   paced to a target rate ([`pacing`]) by `concurrency` workers, retrying
//!   429/5xx (honouring `Retry-After`), and returns a [`Report`] ([`report`]):
//!   counts, achieved rate and latency percentiles.
//! - [`demo_options`]: the unbounded trickle behind `auditflow up --demo`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), auditflow_generate::GenerateError> {
//! use auditflow_generate::{run, GenerateOptions};
//! use tokio_util::sync::CancellationToken;
//!
//! let opts = GenerateOptions {
//!     url: "http://127.0.0.1:8080".into(),
//!     rate: 200.0,
//!     count: Some(1_000),
//!     malformed_ratio: 0.05,
//!     ..GenerateOptions::default()
//! };
//! let report = run(opts, CancellationToken::new()).await?;
//! println!("{report}");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod driver;
pub mod factory;
pub mod generated;
pub mod pacing;
pub mod report;

pub use driver::{demo_options, run, GenerateError, GenerateOptions, DEFAULT_URL};
pub use factory::{ConfigError, EventKind, Factory, FactoryConfig, Item, MalformedKind, Mix};
pub use generated::{Details, GeneratedEvent};
pub use pacing::Pacer;
pub use report::{Latency, Report, StopReason};
