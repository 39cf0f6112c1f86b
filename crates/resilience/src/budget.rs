//! A retry budget shared by all callers of a dependency.
//!
//! Modelled on Finagle's `RetryBudget` / Envoy's retry budgets: every call
//! [deposits](RetryBudget::deposit) `ratio` tokens (0.2 by default) and every
//! retry [withdraws](RetryBudget::try_withdraw) one, so retries stay at about
//! `ratio` × calls. A separate *floor* bucket refilled at
//! `min_retries_per_sec` (through the [`Clock`](crate::Clock)) lets a lightly
//! loaded client still retry occasionally. Deposits are capped at
//! `max_tokens`, approximating Finagle's time-to-live on deposits.
//!
//! Invariant (checked by property tests): over any run,
//! `retries ≤ ratio × calls + floor_capacity + min_retries_per_sec × elapsed_secs`.
//!
//! Implementation: deposits are one lock-free `fetch_add` on a fixed-point
//! (milli-token) balance, so the success path stays cheap; withdrawals (only
//! on the retry path) use a CAS loop and, for the floor, a short mutex.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;

const MILLI: i64 = 1000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Configuration of a [`RetryBudget`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Whether the budget is enforced at all.
    pub enabled: bool,
    /// Tokens deposited per call; a retry costs one token. Default `0.2`.
    pub ratio: f64,
    /// Floor of retries per second available regardless of traffic. Default `10`.
    pub min_retries_per_sec: u32,
    /// Cap on the deposited balance, in tokens. Default `100`.
    pub max_tokens: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            enabled: true,
            ratio: 0.2,
            min_retries_per_sec: 10,
            max_tokens: 100,
        }
    }
}

#[derive(Debug)]
struct Floor {
    /// Available floor tokens, in milli-tokens.
    milli: u64,
    last_refill_nanos: u64,
}

/// A token-bucket retry budget. Share it (`Arc<RetryBudget>`) between all
/// callers of one dependency.
///
/// ```
/// use resilience::{BudgetConfig, ManualClock, RetryBudget};
///
/// let clock = ManualClock::new();
/// let budget = RetryBudget::new(
///     BudgetConfig { min_retries_per_sec: 0, ..BudgetConfig::default() },
///     clock.shared(),
/// );
/// for _ in 0..10 {
///     budget.deposit(); // ten calls -> two retries at ratio 0.2
/// }
/// assert!(budget.try_withdraw());
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw());
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    deposit_milli: i64,
    max_milli: i64,
    floor_rate: u64,
    floor_cap_milli: u64,
    balance_milli: AtomicI64,
    floor: Mutex<Floor>,
    clock: SharedClock,
    exhausted: AtomicU64,
}

impl RetryBudget {
    /// A budget with the given configuration, the floor bucket starting full.
    pub fn new(config: BudgetConfig, clock: SharedClock) -> Self {
        let ratio = if config.ratio.is_finite() {
            config.ratio.max(0.0)
        } else {
            0.0
        };
        let floor_rate = u64::from(config.min_retries_per_sec);
        let floor_cap_milli = floor_rate * MILLI as u64;
        let now = clock.now_nanos();
        RetryBudget {
            deposit_milli: (ratio * MILLI as f64).round() as i64,
            max_milli: i64::from(config.max_tokens) * MILLI,
            floor_rate,
            floor_cap_milli,
            balance_milli: AtomicI64::new(0),
            floor: Mutex::new(Floor {
                milli: floor_cap_milli,
                last_refill_nanos: now,
            }),
            clock,
            exhausted: AtomicU64::new(0),
        }
    }

    /// Records one call (not one attempt): adds `ratio` tokens.
    #[inline]
    pub fn deposit(&self) {
        let prev = self
            .balance_milli
            .fetch_add(self.deposit_milli, Ordering::Relaxed);
        if prev + self.deposit_milli > self.max_milli {
            self.balance_milli
                .fetch_min(self.max_milli, Ordering::Relaxed);
        }
    }

    /// Tries to pay for one retry. Returns `false` (and counts an exhaustion)
    /// when neither the deposited balance nor the floor has a whole token.
    pub fn try_withdraw(&self) -> bool {
        let mut cur = self.balance_milli.load(Ordering::Relaxed);
        while cur >= MILLI {
            match self.balance_milli.compare_exchange_weak(
                cur,
                cur - MILLI,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
        if self.withdraw_floor() {
            return true;
        }
        self.exhausted.fetch_add(1, Ordering::Relaxed);
        false
    }

    fn withdraw_floor(&self) -> bool {
        if self.floor_rate == 0 {
            return false;
        }
        let now = self.clock.now_nanos();
        let mut floor = match self.floor.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let elapsed = now.saturating_sub(floor.last_refill_nanos);
        // milli-tokens earned = elapsed_ns * rate * 1000 / 1e9
        let earned =
            u128::from(elapsed) * u128::from(self.floor_rate) * MILLI as u128 / NANOS_PER_SEC;
        if earned > 0 {
            let earned = u64::try_from(earned).unwrap_or(u64::MAX);
            floor.milli = floor.milli.saturating_add(earned).min(self.floor_cap_milli);
            floor.last_refill_nanos = now;
        }
        if floor.milli >= MILLI as u64 {
            floor.milli -= MILLI as u64;
            true
        } else {
            false
        }
    }

    /// Whole tokens currently in the deposited balance (excluding the floor).
    pub fn balance(&self) -> f64 {
        self.balance_milli.load(Ordering::Relaxed) as f64 / MILLI as f64
    }

    /// How many withdrawals have been refused so far.
    pub fn exhausted_count(&self) -> u64 {
        self.exhausted.load(Ordering::Relaxed)
    }

    /// Upper bound on retries this budget can have granted after `calls`
    /// deposits over `elapsed` (used by tests and capacity planning).
    pub fn max_retries_for(&self, calls: u64, elapsed: Duration) -> f64 {
        self.deposit_milli as f64 / MILLI as f64 * calls as f64
            + (self.floor_cap_milli / MILLI as u64) as f64
            + self.floor_rate as f64 * elapsed.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    #[test]
    fn floor_refills_over_time() {
        let clock = ManualClock::new();
        let b = RetryBudget::new(
            BudgetConfig {
                ratio: 0.0,
                min_retries_per_sec: 2,
                ..BudgetConfig::default()
            },
            clock.shared(),
        );
        assert!(b.try_withdraw());
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        clock.advance(Duration::from_millis(500));
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        assert_eq!(b.exhausted_count(), 2);
    }

    #[test]
    fn deposits_are_capped() {
        let clock = ManualClock::new();
        let b = RetryBudget::new(
            BudgetConfig {
                ratio: 1.0,
                min_retries_per_sec: 0,
                max_tokens: 3,
                ..BudgetConfig::default()
            },
            clock.shared(),
        );
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(b.balance(), 3.0);
    }
}
