//! GCRA rate limiting (global and keyed) via the `governor` crate, driven by
//! the crate's [`Clock`](crate::Clock).
//!
//! A refusal tells how long until the call would be allowed, ready for an
//! HTTP `Retry-After` header.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;
use serde::{Deserialize, Serialize};

use crate::clock::{GovernorClock, SharedClock};
use crate::error::Error;

/// Rate-limit configuration: `rate` calls per `per`, bursts up to `burst`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Whether the limiter is applied. Default `false` (no sensible default
    /// rate exists).
    pub enabled: bool,
    /// Calls allowed per `per`. Default `100`.
    pub rate: u32,
    /// Period of `rate`. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    /// Burst size (GCRA bucket depth). Default `100`.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: false,
            rate: 100,
            per: Duration::from_secs(1),
            burst: 100,
        }
    }
}

impl RateLimitConfig {
    fn quota(&self) -> Quota {
        let rate = self.rate.max(1);
        let interval = (self.per / rate).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        // with_period only fails for a zero interval, which max() rules out.
        Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

type Direct =
    governor::RateLimiter<NotKeyed, InMemoryState, GovernorClock, NoOpMiddleware<Duration>>;
type Keyed<K> =
    governor::RateLimiter<K, DashMapStateStore<K>, GovernorClock, NoOpMiddleware<Duration>>;

/// A global GCRA rate limiter.
///
/// ```
/// use resilience::{ManualClock, RateLimitConfig, RateLimiter};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let cfg = RateLimitConfig { enabled: true, rate: 10, per: Duration::from_secs(1), burst: 1 };
/// let rl = RateLimiter::new(&cfg, clock.shared());
/// assert!(rl.check().is_ok());
/// assert_eq!(rl.check().unwrap_err(), Duration::from_millis(100));
/// clock.advance(Duration::from_millis(100));
/// assert!(rl.check().is_ok());
/// ```
#[derive(Debug)]
pub struct RateLimiter {
    inner: Direct,
    clock: SharedClock,
}

impl RateLimiter {
    /// A limiter for `config` (its `enabled` flag is ignored here).
    pub fn new(config: &RateLimitConfig, clock: SharedClock) -> Self {
        RateLimiter {
            inner: governor::RateLimiter::direct_with_clock(
                config.quota(),
                GovernorClock(clock.clone()),
            ),
            clock,
        }
    }

    /// Admits one call, or returns how long until one would be admitted.
    #[inline]
    pub fn check(&self) -> Result<(), Duration> {
        self.inner
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// [`check`](Self::check) as an [`Error::RateLimited`].
    pub fn check_err(&self) -> Result<(), Error> {
        self.check()
            .map_err(|retry_after| Error::RateLimited { retry_after })
    }
}

/// A GCRA rate limiter with one bucket per key (client token, IP, ...).
///
/// ```
/// use resilience::{KeyedRateLimiter, ManualClock, RateLimitConfig};
///
/// let cfg = RateLimitConfig { enabled: true, rate: 1, burst: 1, ..Default::default() };
/// let rl = KeyedRateLimiter::new(&cfg, ManualClock::new().shared());
/// assert!(rl.check(&"10.0.0.1").is_ok());
/// assert!(rl.check(&"10.0.0.1").is_err());
/// assert!(rl.check(&"10.0.0.2").is_ok()); // independent bucket
/// ```
#[derive(Debug)]
pub struct KeyedRateLimiter<K: Hash + Eq + Clone> {
    inner: Keyed<K>,
    clock: SharedClock,
}

impl<K: Hash + Eq + Clone> KeyedRateLimiter<K> {
    /// A keyed limiter applying `config` to each key separately.
    pub fn new(config: &RateLimitConfig, clock: SharedClock) -> Self {
        KeyedRateLimiter {
            inner: governor::RateLimiter::dashmap_with_clock(
                config.quota(),
                GovernorClock(clock.clone()),
            ),
            clock,
        }
    }

    /// Admits one call for `key`, or returns how long until one would be.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.inner
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops keys whose buckets are full again (call periodically to bound
    /// memory).
    pub fn retain_recent(&self) {
        self.inner.retain_recent();
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no keys are tracked.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}
