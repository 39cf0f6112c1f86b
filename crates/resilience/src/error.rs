//! Errors of the individual primitives.

use std::time::Duration;

/// Why a single primitive refused or abandoned a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The deadline passed before the call finished.
    #[error("timed out after {after:?}")]
    Timeout {
        /// The time limit that applied to the call.
        after: Duration,
    },
    /// The circuit breaker is not admitting calls.
    #[error("circuit breaker is open")]
    CircuitOpen {
        /// When the breaker will next consider admitting a probe, if known.
        retry_after: Option<Duration>,
    },
    /// No bulkhead slot became free in time.
    #[error("bulkhead full")]
    BulkheadFull,
    /// The rate limiter refused the call.
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited {
        /// Earliest time from now at which the call would be allowed.
        retry_after: Duration,
    },
}
