//! A bulkhead: caps concurrent calls, optionally waiting a bounded time for a
//! free slot. Built on [`tokio::sync::Semaphore`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::Error;

/// Bulkhead configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadConfig {
    /// Whether the bulkhead is applied. Default `true`.
    pub enabled: bool,
    /// Maximum calls in flight. Default `64`.
    pub max_concurrent: u32,
    /// How long a call may wait for a slot; `0s` rejects at once. Default `0s`.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        BulkheadConfig {
            enabled: true,
            max_concurrent: 64,
            max_wait: Duration::ZERO,
        }
    }
}

/// A concurrency limiter.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use resilience::{Bulkhead, BulkheadConfig};
///
/// let bh = Bulkhead::new(BulkheadConfig { max_concurrent: 1, ..Default::default() });
/// let slot = bh.acquire().await.expect("free");
/// assert!(bh.acquire().await.is_err()); // full, max_wait = 0
/// drop(slot);
/// assert!(bh.acquire().await.is_ok());
/// assert_eq!(bh.rejected(), 1);
/// # }
/// ```
#[derive(Debug)]
pub struct Bulkhead {
    semaphore: Semaphore,
    max_concurrent: u32,
    max_wait: Duration,
    rejected: AtomicU64,
}

/// A held bulkhead slot; released on drop.
#[derive(Debug)]
pub struct BulkheadPermit<'a> {
    _permit: SemaphorePermit<'a>,
}

impl Bulkhead {
    /// A bulkhead with `config.max_concurrent` slots (at least one).
    pub fn new(config: BulkheadConfig) -> Self {
        let max = config.max_concurrent.max(1);
        Bulkhead {
            semaphore: Semaphore::new(max as usize),
            max_concurrent: max,
            max_wait: config.max_wait,
            rejected: AtomicU64::new(0),
        }
    }

    /// Takes a slot without waiting.
    pub fn try_acquire(&self) -> Result<BulkheadPermit<'_>, Error> {
        match self.semaphore.try_acquire() {
            Ok(p) => Ok(BulkheadPermit { _permit: p }),
            Err(_) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                Err(Error::BulkheadFull)
            }
        }
    }

    /// Takes a slot, waiting at most `max_wait` (tokio time).
    pub async fn acquire(&self) -> Result<BulkheadPermit<'_>, Error> {
        self.acquire_within(self.max_wait).await
    }

    /// Takes a slot, waiting at most `wait` (tokio time).
    pub async fn acquire_within(&self, wait: Duration) -> Result<BulkheadPermit<'_>, Error> {
        if let Ok(p) = self.semaphore.try_acquire() {
            return Ok(BulkheadPermit { _permit: p });
        }
        if !wait.is_zero() {
            if let Ok(Ok(p)) = tokio::time::timeout(wait, self.semaphore.acquire()).await {
                return Ok(BulkheadPermit { _permit: p });
            }
        }
        self.rejected.fetch_add(1, Ordering::Relaxed);
        Err(Error::BulkheadFull)
    }

    /// Calls currently holding a slot.
    pub fn in_flight(&self) -> u32 {
        self.max_concurrent
            .saturating_sub(u32::try_from(self.semaphore.available_permits()).unwrap_or(u32::MAX))
    }

    /// Configured limit.
    pub fn max_concurrent(&self) -> u32 {
        self.max_concurrent
    }

    /// Calls rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}
