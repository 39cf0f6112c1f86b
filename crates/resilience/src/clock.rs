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
//!
//! # Coarse reads
//!
//! [`Clock::now_nanos_coarse`] is a cheaper reading on the *same* time line as
//! [`Clock::now_nanos`] that is never ahead of it but may lag behind it by up
//! to [`Clock::coarse_max_lag_nanos`]. It is meant for checks that only need
//! to know "certainly not yet" (the circuit breaker's open-state rejection).
//! [`SystemClock`] implements it on Linux with `CLOCK_MONOTONIC_COARSE` (a
//! vDSO read of the kernel's time as of its last timer tick: a few ns instead
//! of ~30 ns for `Instant::now()` on a VM; granularity one jiffy, 1–10 ms,
//! typically 4 ms); every other clock, and `SystemClock` on other targets,
//! returns exact time from it, so deterministic tests are unaffected.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A monotonic time source measured in nanoseconds since an arbitrary,
/// clock-specific origin.
///
/// Implementations must be monotonic (never go backwards) and cheap: the
/// circuit breaker reads the clock when it transitions, when recording into a
/// time-based window and (coarsely) on its open path.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Nanoseconds elapsed since this clock's origin.
    fn now_nanos(&self) -> u64;

    /// [`Clock::now_nanos`] as a [`Duration`] since the origin.
    fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }

    /// A cheaper, possibly stale reading of [`now_nanos`](Clock::now_nanos)
    /// on the same origin.
    ///
    /// Contract: monotonic, never ahead of a `now_nanos()` read that starts
    /// after it returns, and (normally) behind a `now_nanos()` read that ended
    /// before it by at most [`coarse_max_lag_nanos`](Clock::coarse_max_lag_nanos).
    /// The default is the exact time.
    #[inline]
    fn now_nanos_coarse(&self) -> u64 {
        self.now_nanos()
    }

    /// How far [`now_nanos_coarse`](Clock::now_nanos_coarse) may lag behind
    /// [`now_nanos`](Clock::now_nanos), in nanoseconds (0 = exact, the
    /// default). A bound under normal operation, not a hard guarantee: for
    /// [`SystemClock`] it can be exceeded if the kernel's timer tick is
    /// delayed by most of a tick (e.g. a descheduled vCPU). Must not change
    /// over a clock's life: the circuit breaker reads it once, at
    /// construction.
    #[inline]
    fn coarse_max_lag_nanos(&self) -> u64 {
        0
    }
}

/// A clock shared between components (`Arc<dyn Clock>`).
pub type SharedClock = Arc<dyn Clock>;

impl<C: Clock + ?Sized> Clock for Arc<C> {
    #[inline]
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }

    #[inline]
    fn now_nanos_coarse(&self) -> u64 {
        (**self).now_nanos_coarse()
    }

    #[inline]
    fn coarse_max_lag_nanos(&self) -> u64 {
        (**self).coarse_max_lag_nanos()
    }
}

/// Saturating conversion of a [`Duration`] to whole nanoseconds.
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Largest coarse-clock resolution we accept; beyond it (never seen on
/// Linux, where it is one jiffy: 1–10 ms) `SystemClock`'s coarse read is
/// the exact one.
#[cfg(target_os = "linux")]
const MAX_COARSE_RESOLUTION_NANOS: u64 = 10_000_000;

/// The process-wide origin of [`SystemClock`].
#[derive(Debug)]
struct Origin {
    /// `now_nanos()` is measured from here.
    instant: std::time::Instant,
    /// When a coarse clock is usable: raw `CLOCK_MONOTONIC` nanoseconds read
    /// just *after* `instant`, and the bound on how far a coarse reading lags
    /// `now_nanos()` (see [`Origin::capture`]).
    #[cfg(target_os = "linux")]
    coarse: Option<(u64, u64)>,
}

fn process_origin() -> &'static Origin {
    static ORIGIN: OnceLock<Origin> = OnceLock::new();
    ORIGIN.get_or_init(Origin::capture)
}

impl Origin {
    #[cfg(not(target_os = "linux"))]
    fn capture() -> Origin {
        Origin {
            instant: std::time::Instant::now(),
        }
    }

    /// `Instant` is `CLOCK_MONOTONIC` on Linux, so the coarse clock is on the
    /// same time line; only the origin's raw value has to be recorded. It is
    /// read *after* the `Instant`, so `coarse - mono_origin <= mono -
    /// instant_origin` always holds: the coarse reading is never ahead of
    /// `now_nanos()`. The gap between the two origin reads (which makes the
    /// coarse reading lag a little more) is kept under 1 µs by retrying.
    ///
    /// Lag bound: the kernel advances the coarse time in whole tick
    /// intervals at each tick and carries the sub-interval remainder `r`
    /// (0 ≤ r < one tick, stable for long stretches; ~0.43 ms on the dev VM)
    /// forward, so just before a tick the coarse time lags by one tick + `r`
    /// (measured max 4.46 ms with a 4 ms jiffy). Hence the bound of two
    /// `clock_getres` ticks plus the origin gap.
    #[cfg(target_os = "linux")]
    fn capture() -> Origin {
        let coarse_res = linux::resolution(libc::CLOCK_MONOTONIC_COARSE)
            .filter(|&r| r > 0 && r <= MAX_COARSE_RESOLUTION_NANOS)
            .filter(|_| linux::read(libc::CLOCK_MONOTONIC_COARSE).is_some());
        let mut best = None;
        for _ in 0..16 {
            let instant = std::time::Instant::now();
            let mono = linux::read(libc::CLOCK_MONOTONIC);
            let gap = instant.elapsed();
            let better = match best {
                None => true,
                Some((_, _, best_gap)) => gap < best_gap,
            };
            if better {
                best = Some((instant, mono, gap));
            }
            if gap < Duration::from_micros(1) {
                break;
            }
        }
        let (instant, mono, gap) =
            best.unwrap_or_else(|| (std::time::Instant::now(), None, Duration::ZERO));
        let lag_bound =
            coarse_res.map(|res| res.saturating_mul(2).saturating_add(duration_nanos(gap)));
        Origin {
            instant,
            coarse: mono.zip(lag_bound),
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    /// `clock_gettime(id)` in nanoseconds.
    #[inline]
    pub(super) fn read(id: libc::clockid_t) -> Option<u64> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable `timespec`; clock_gettime only
        // writes through the pointer and reports errors by its return value.
        let rc = unsafe { libc::clock_gettime(id, &mut ts) };
        (rc == 0).then(|| to_nanos(&ts))
    }

    /// `clock_getres(id)` in nanoseconds.
    pub(super) fn resolution(id: libc::clockid_t) -> Option<u64> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: as in `read`.
        let rc = unsafe { libc::clock_getres(id, &mut ts) };
        (rc == 0).then(|| to_nanos(&ts))
    }

    #[inline]
    fn to_nanos(ts: &libc::timespec) -> u64 {
        // Monotonic clocks never report negative fields.
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }
}

/// Wall-independent monotonic clock backed by [`std::time::Instant`].
///
/// All `SystemClock`s share one process-wide origin, so readings from
/// different instances are comparable.
///
/// On Linux [`now_nanos_coarse`](Clock::now_nanos_coarse) reads
/// `CLOCK_MONOTONIC_COARSE` (the kernel's time as of its last timer tick, a
/// few ns through the vDSO) on the same origin: it is never ahead of
/// `now_nanos()` and normally lags it by at most
/// [`coarse_max_lag_nanos`](Clock::coarse_max_lag_nanos) = two jiffies (from
/// `clock_getres`, so 8 ms with a 4 ms jiffy) plus the skew between the two
/// origin reads, normally well under 1 µs. On other targets, or if the coarse
/// clock is unavailable, the coarse read is exact.
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
        duration_nanos(process_origin().instant.elapsed())
    }

    #[inline]
    fn now_nanos_coarse(&self) -> u64 {
        #[cfg(target_os = "linux")]
        {
            let origin = process_origin();
            if let Some((mono_origin, _)) = origin.coarse {
                if let Some(now) = linux::read(libc::CLOCK_MONOTONIC_COARSE) {
                    // Just after the origin the last tick may predate it.
                    return now.saturating_sub(mono_origin);
                }
            }
        }
        self.now_nanos()
    }

    fn coarse_max_lag_nanos(&self) -> u64 {
        #[cfg(target_os = "linux")]
        {
            if let Some((_, lag_bound)) = process_origin().coarse {
                return lag_bound;
            }
        }
        0
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

    #[test]
    fn coarse_defaults_to_exact_time() {
        let c = ManualClock::starting_at(Duration::from_millis(7));
        assert_eq!(c.now_nanos_coarse(), 7_000_000);
        assert_eq!(c.coarse_max_lag_nanos(), 0);
        let shared = c.shared();
        c.advance(Duration::from_nanos(1));
        assert_eq!(shared.now_nanos_coarse(), 7_000_001);
        assert_eq!(TokioClock::new().coarse_max_lag_nanos(), 0);
    }

    /// Coarse reads are monotonic, never ahead of a precise read that starts
    /// after them, and behind one that ended before them by at most the
    /// advertised lag.
    #[test]
    fn system_coarse_clock_tracks_precise_clock() {
        let c = SystemClock;
        let max_lag = c.coarse_max_lag_nanos();
        // The Arc forwarding impl must not fall back to the exact default.
        assert_eq!(SystemClock::shared().coarse_max_lag_nanos(), max_lag);
        #[cfg(target_os = "linux")]
        assert!(
            max_lag <= 2 * MAX_COARSE_RESOLUTION_NANOS + 1_000_000,
            "{max_lag}"
        );
        #[cfg(not(target_os = "linux"))]
        assert_eq!(max_lag, 0);
        // The lag bound assumes timely timer ticks; allow one tick of tick
        // delivery delay on a loaded CI VM (max_lag is two ticks).
        let tolerance = max_lag / 2;

        let start = c.now_nanos();
        let first = c.now_nanos_coarse();
        let mut last = first;
        let mut ticks = 0;
        // A few coarse ticks, bounded to 200 ms.
        while ticks < 4 && c.now_nanos() - start < 200_000_000 {
            let before = c.now_nanos();
            let coarse = c.now_nanos_coarse();
            let after = c.now_nanos();
            assert!(coarse >= last, "coarse went backwards: {last} -> {coarse}");
            assert!(coarse <= after, "coarse {coarse} ahead of precise {after}");
            assert!(
                coarse + max_lag + tolerance >= before,
                "coarse {coarse} lags precise {before} by more than {max_lag} (+{tolerance})"
            );
            if coarse > last {
                ticks += 1;
            }
            last = coarse;
            std::hint::spin_loop();
        }
        assert!(last > first, "coarse clock never advanced");
    }
}
