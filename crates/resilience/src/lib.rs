//! Fault-tolerance primitives for AuditFlow's calls to its dependencies.
//!
//! | module | what |
//! |--------|------|
//! | [`clock`] | injectable monotonic time: [`SystemClock`], [`TokioClock`], [`ManualClock`]; cheap coarse reads for hot paths |
//! | [`deadline`] | absolute [`Deadline`]s, propagation (task-local), [`timeout`] |
//! | [`retry`] | capped exponential backoff with full / decorrelated jitter, [`RetryState`], [`Retry`] |
//! | [`budget`] | [`RetryBudget`]: retries ≤ ~20 % of calls + a floor per second |
//! | [`breaker`] | [`CircuitBreaker`] with count/time windows, slow calls, growing open time |
//! | [`bulkhead`] | [`Bulkhead`]: max concurrent calls with a bounded wait |
//! | [`rate_limit`] | GCRA [`RateLimiter`] / [`KeyedRateLimiter`] (via `governor`) |
//! | [`phi`] | [`PhiAccrualDetector`] and [`PhiRegistry`] (Akka-compatible) |
//! | [`policy`] | [`Policy`]: all of the above composed in one documented order |
//! | [`observer`] | [`PolicyObserver`] metrics hooks |
//!
//! Every state machine reads time only through a [`Clock`], so tests drive
//! them deterministically with a [`ManualClock`]; async parts (sleeps,
//! timeouts) use tokio timers and are tested under `tokio::time::pause()`
//! with a [`TokioClock`].
//!
//! # Composition
//!
//! [`Policy`] applies, outermost first:
//! `rate limit → bulkhead → retry (with budget) → circuit breaker → timeout → call`,
//! all inside one overall deadline. See [`policy`] for why.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use resilience::{ErrorClass, Policy, PolicyConfig, PolicyError};
//! use std::error::Error as _;
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("store unavailable")]
//! struct StoreDown;
//!
//! let mut cfg = PolicyConfig::default();
//! cfg.name = "store".into();
//! cfg.retry.max_attempts = 3;
//! cfg.retry.initial_backoff = std::time::Duration::from_millis(1);
//! let policy = Policy::new(cfg).expect("valid config");
//!
//! let mut calls = 0;
//! let res: Result<(), _> = policy
//!     .call_classified(
//!         || {
//!             calls += 1;
//!             async { Err(StoreDown) }
//!         },
//!         |_e: &StoreDown| ErrorClass::Transient,
//!     )
//!     .await;
//! assert_eq!(calls, 3);
//! let err = res.unwrap_err();
//! assert!(matches!(err, PolicyError::Inner(StoreDown)));
//! assert_eq!(err.source().map(|s| s.to_string()), Some("store unavailable".into()));
//! # }
//! ```
//!
//! # Deadline propagation
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use resilience::{timeout, Deadline, SystemClock};
//! use std::time::Duration;
//!
//! let outer = Deadline::after(SystemClock::shared(), Duration::from_secs(1));
//! let seen = timeout(outer, async {
//!     // Deep inside: derive a child bounded by the caller's deadline.
//!     let d = Deadline::current().expect("installed by timeout()");
//!     d.child(Duration::from_secs(60)).remaining()
//! })
//! .await
//! .expect("in time");
//! assert!(seen <= Duration::from_secs(1));
//! # }
//! ```
#![deny(missing_docs)]
#![warn(rust_2018_idioms, unreachable_pub)]

pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod clock;
mod counter;
pub mod deadline;
pub mod error;
pub mod observer;
pub mod phi;
pub mod policy;
pub mod rate_limit;
pub mod retry;

pub use breaker::{
    BreakerConfig, BreakerMetrics, BreakerState, CircuitBreaker, Permit, Rejected, StateTransition,
    WindowKind, WindowSnapshot,
};
pub use budget::{BudgetConfig, RetryBudget};
pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadPermit};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock, TokioClock};
pub use deadline::{timeout, timeout_after, Deadline};
pub use error::Error;
pub use observer::{CallOutcome, NoopObserver, PolicyObserver, RejectReason};
pub use phi::{MemberStatus, PhiAccrualDetector, PhiConfig, PhiRegistry, StatusChange};
pub use policy::{ConfigError, Policy, PolicyBuilder, PolicyConfig, PolicyError, TimeoutConfig};
pub use rate_limit::{KeyedRateLimiter, RateLimitConfig, RateLimiter};
pub use retry::{
    Backoff, ErrorClass, GiveUpReason, Jitter, Retry, RetryConfig, RetryDecision, RetryError,
    RetryState,
};
