//! Injectable monotonic time.
//!
//! Every state machine in this crate reads time through a [`Clock`] so that it
//! can be driven deterministically in tests with a [`ManualClock`]. Three
//! implementations are provided:
//!
//! * [`SystemClock`] — `std::time::Instant` based; the production default.
//! * [`TokioClock`] — `tokio::time::Instant` based; follows tokio's paused /
//!   auto-advanced test time, so async code that both sleeps (tokio timers)
//!   and reads the clock stays consistent under `tokio::time::pause()`.
//! * [`ManualClock`] — advanced by hand; clones share the same time.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A monotonic time source measured in nanoseconds since an arbitrary,
/// clock-specific origin.
///
/// Implementations must be monotonic (never go backwards) and cheap: the
/// circuit breaker reads the clock on its open path and when recording into a
/// time-based window.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Nanoseconds elapsed since this clock's origin.
    fn now_nanos(&self) -> u64;

    /// [`Clock::now_nanos`] as a [`Duration`] since the origin.
    fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }
}

/// A clock shared between components (`Arc<dyn Clock>`).
pub type SharedClock = Arc<dyn Clock>;

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
}

/// Saturating conversion of a [`Duration`] to whole nanoseconds.
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn process_origin() -> std::time::Instant {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    *ORIGIN.get_or_init(std::time::Instant::now)
}

/// Wall-independent monotonic clock backed by [`std::time::Instant`].
///
/// All `SystemClock`s share one process-wide origin, so readings from
/// different instances are comparable.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// A new system clock (zero-sized).
    pub fn new() -> Self {
        SystemClock
    }

    /// A [`SharedClock`] backed by the system clock.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        duration_nanos(process_origin().elapsed())
    }
}

/// Clock backed by [`tokio::time::Instant`], which honours
/// `tokio::time::pause()` / `advance()` in tests.
///
/// Outside of a paused runtime it behaves like [`SystemClock`].
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A new tokio clock whose origin is "now".
    pub fn new() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }

    /// A [`SharedClock`] backed by tokio time.
    pub fn shared() -> SharedClock {
        Arc::new(TokioClock::new())
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        duration_nanos(tokio::time::Instant::now().saturating_duration_since(self.origin))
    }
}

/// A test clock that only moves when told to.
///
/// Clones share the same underlying time, so a test can hand one clone to the
/// component under test (as a [`SharedClock`]) and advance another.
///
/// ```
/// use resilience::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let handle = clock.clone();
/// handle.advance(Duration::from_millis(250));
/// assert_eq!(clock.now_nanos(), 250_000_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock starting at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A manual clock starting at `start`.
    pub fn starting_at(start: Duration) -> Self {
        let clock = Self::default();
        clock.set(start);
        clock
    }

    /// Moves time forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = duration_nanos(by);
        // fetch_update with a total closure never fails; ignore the Result.
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Sets the absolute time. Setting a time earlier than the current one is
    /// ignored, preserving monotonicity.
    pub fn set(&self, to: Duration) {
        self.nanos.fetch_max(duration_nanos(to), Ordering::AcqRel);
    }

    /// This clock as a [`SharedClock`] (sharing the same time).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::Acquire)
    }
}

/// Adapter exposing a [`SharedClock`] as a `governor` clock.
#[derive(Debug, Clone)]
pub(crate) struct GovernorClock(pub(crate) SharedClock);

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_and_monotonic() {
        let c = ManualClock::new();
        let s = c.shared();
        c.advance(Duration::from_secs(2));
        assert_eq!(s.now(), Duration::from_secs(2));
        c.set(Duration::from_secs(1));
        assert_eq!(s.now(), Duration::from_secs(2));
        c.set(Duration::from_secs(5));
        assert_eq!(s.now_nanos(), 5_000_000_000);
    }

    #[test]
    fn system_clock_moves_forward() {
        let a = SystemClock.now_nanos();
        let b = SystemClock.now_nanos();
        assert!(b >= a);
    }
}
