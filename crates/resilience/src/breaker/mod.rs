//! A circuit breaker with count- or time-based sliding windows, failure-rate
//! and slow-call-rate thresholds, growing open durations and bounded
//! half-open probing.
//!
//! # Concurrency design
//!
//! * **Admission is lock-free.** The state lives in one `AtomicU64` word
//!   (`generation << 3 | state`). On the closed path
//!   [`try_acquire`](CircuitBreaker::try_acquire) is a single `Acquire` load
//!   and never reads the clock. The open path reads `open_until` and the
//!   clock's *coarse* time (see below); half-open probes are handed out by a
//!   CAS on a `generation << 32 | remaining` word, so no more than
//!   `half_open_probes` probes are ever outstanding per half-open period.
//! * **Open-state rejection uses the coarse clock.**
//!   [`Clock::now_nanos_coarse`](crate::Clock::now_nanos_coarse) is never
//!   ahead of the exact time and lags it by at most
//!   [`Clock::coarse_max_lag_nanos`](crate::Clock::coarse_max_lag_nanos)
//!   (`L`; for [`SystemClock`](crate::SystemClock) on Linux,
//!   `CLOCK_MONOTONIC_COARSE`, `L` = two jiffies, 8 ms with the usual 4 ms
//!   jiffy; for `ManualClock` / `TokioClock`, 0). A call is rejected on the
//!   coarse read alone only while `coarse + L < open_until`, i.e. while the
//!   breaker is certainly still open. In the last `L` of each open period
//!   the exact clock decides, and it always timestamps the half-open
//!   transition. So: **no call is ever admitted early**, transition times
//!   are exact, and a call arriving just after the open duration is admitted
//!   as before — unless the kernel's timer tick ran late by most of a tick
//!   (e.g. a descheduled vCPU), in which case a call up to that much after
//!   the open duration may be rejected once more. The `retry_after` of a
//!   coarse rejection may overstate the remaining time by up to `L`.
//! * **Rejections are counted without a locked RMW.** The `rejected` counter
//!   gives each thread its own cache-line slot that only it writes (plain
//!   load + store); [`metrics`](CircuitBreaker::metrics) sums the slots, and
//!   the count stays exact.
//! * **Recording takes a short mutex.** Outcomes (window slot and the
//!   success/failure/slow counters) are recorded under one
//!   `std::sync::Mutex` (uncontended lock ≈ one CAS). A window needs
//!   consistent counts across the evicted and inserted slot, and a
//!   trip decision must be made on a consistent snapshot, which atomics alone
//!   would make racy; the critical section is a few arithmetic operations.
//! * **Transitions** happen under the same mutex, bump the generation, and
//!   publish the new word with `Release`. Outcomes carrying a permit from an
//!   older generation are ignored (a late reply from before the breaker
//!   opened says nothing about the half-open probes).
//! * **Listeners** are called after the mutex is released, so they may call
//!   back into the breaker; concurrent transitions may therefore be
//!   delivered out of order (each carries its `at_nanos`).
//!
//! # Example
//!
//! ```
//! use resilience::{BreakerConfig, BreakerState, CircuitBreaker, ManualClock};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let cfg = BreakerConfig { window_size: 4, minimum_calls: 4, ..BreakerConfig::default() };
//! let breaker = CircuitBreaker::new("db", cfg, clock.shared());
//! for _ in 0..4 {
//!     let permit = breaker.try_acquire().expect("closed");
//!     permit.record_failure(Duration::from_millis(3));
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//! assert!(breaker.try_acquire().is_err());
//! clock.advance(Duration::from_secs(30)); // default open duration
//! assert!(breaker.try_acquire().is_ok());  // a half-open probe
//! assert_eq!(breaker.state(), BreakerState::HalfOpen);
//! ```

mod config;
mod state;
mod window;

pub use config::{BreakerConfig, WindowKind};
pub use state::{BreakerMetrics, BreakerState, StateTransition};
pub use window::WindowSnapshot;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::{duration_nanos, SharedClock};
use crate::counter::PerThreadCounter;
use crate::error::Error;
use window::Window;

const STATE_BITS: u64 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

#[inline]
fn code_of(word: u64) -> u64 {
    word & STATE_MASK
}

#[inline]
fn gen_of(word: u64) -> u64 {
    word >> STATE_BITS
}

/// A state-transition listener.
pub type Listener = Arc<dyn Fn(&StateTransition) + Send + Sync>;

/// The breaker refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker {state:?}: call rejected")]
pub struct Rejected {
    /// State that caused the rejection.
    pub state: BreakerState,
    /// Time until the breaker will admit probes, when it is open.
    pub retry_after: Option<Duration>,
}

impl From<Rejected> for Error {
    fn from(r: Rejected) -> Self {
        Error::CircuitOpen {
            retry_after: r.retry_after,
        }
    }
}

#[derive(Debug)]
struct Inner {
    window: Window,
    consecutive_opens: u32,
    probe_successes: u32,
    successes: u64,
    failures: u64,
    slow: u64,
}

impl Inner {
    fn count(&mut self, failed: bool, slow: bool) {
        self.successes += u64::from(!failed);
        self.failures += u64::from(failed);
        self.slow += u64::from(slow);
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// Bumped on every rejection, so kept off the locked-RMW path.
    rejected: PerThreadCounter,
    opened: AtomicU64,
}

/// A circuit breaker. See the [module docs](self) for the design.
pub struct CircuitBreaker {
    state: AtomicU64,
    open_until: AtomicU64,
    /// When the current (or last) open period began, in clock nanoseconds.
    opened_at: AtomicU64,
    probes: AtomicU64,
    inner: Mutex<Inner>,
    config: BreakerConfig,
    slow_nanos: u64,
    /// `clock.coarse_max_lag_nanos()`: the guard band before `open_until`
    /// within which the open check uses the precise clock.
    coarse_lag: u64,
    time_window: bool,
    clock: SharedClock,
    name: Arc<str>,
    listeners: Vec<Listener>,
    counters: Counters,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &self.state())
            .field("config", &self.config)
            .finish()
    }
}

impl CircuitBreaker {
    /// A new, closed breaker (or disabled, if `config.enabled` is false).
    pub fn new(name: impl Into<Arc<str>>, config: BreakerConfig, clock: SharedClock) -> Self {
        let mut config = config;
        config.half_open_probes = config.half_open_probes.max(1);
        config.half_open_successes = config.half_open_successes.clamp(1, config.half_open_probes);
        let initial = if config.enabled {
            BreakerState::CLOSED
        } else {
            BreakerState::DISABLED
        };
        CircuitBreaker {
            state: AtomicU64::new(initial),
            open_until: AtomicU64::new(0),
            opened_at: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                window: Window::new(&config),
                consecutive_opens: 0,
                probe_successes: 0,
                successes: 0,
                failures: 0,
                slow: 0,
            }),
            slow_nanos: duration_nanos(config.slow_call_duration),
            time_window: config.window == WindowKind::Time,
            coarse_lag: clock.coarse_max_lag_nanos(),
            config,
            clock,
            name: name.into(),
            listeners: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// Adds a listener called on every state transition.
    pub fn with_listener(
        mut self,
        listener: impl Fn(&StateTransition) + Send + Sync + 'static,
    ) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Adds an already shared listener.
    pub fn with_shared_listener(mut self, listener: Listener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The (normalised) configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Current state. An open breaker whose open duration has elapsed still
    /// reports `Open` until the next acquisition attempt moves it to half-open.
    pub fn state(&self) -> BreakerState {
        BreakerState::from_code(code_of(self.state.load(Ordering::Acquire)))
    }

    /// Asks to make a call. On the closed path this is one atomic load.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let word = self.state.load(Ordering::Acquire);
        let code = code_of(word);
        if code == BreakerState::CLOSED || code == BreakerState::DISABLED {
            return Ok(Permit {
                breaker: self,
                word,
                done: false,
            });
        }
        self.acquire_slow(word)
    }

    #[cold]
    fn acquire_slow(&self, word: u64) -> Result<Permit<'_>, Rejected> {
        match code_of(word) {
            BreakerState::OPEN => {
                let until = self.open_until.load(Ordering::Acquire);
                // Cheap coarse read first. It is never ahead of the precise
                // clock and lags it by at most `coarse_lag`, so
                // `coarse + coarse_lag < until` means "certainly still open".
                // (`retry_after` then overstates by at most `coarse_lag`.)
                let coarse = self.clock.now_nanos_coarse();
                if coarse.saturating_add(self.coarse_lag) < until {
                    return Err(self.reject(
                        BreakerState::Open,
                        Some(Duration::from_nanos(until - coarse)),
                    ));
                }
                // Within `coarse_lag` of the end: decide (and timestamp the
                // transition) with the precise clock.
                let now = self.clock.now_nanos();
                if now < until {
                    return Err(
                        self.reject(BreakerState::Open, Some(Duration::from_nanos(until - now)))
                    );
                }
                let event = {
                    let mut inner = self.lock();
                    if self.state.load(Ordering::Acquire) == word {
                        Some(self.transition_locked(&mut inner, word, BreakerState::HALF_OPEN, now))
                    } else {
                        None
                    }
                };
                self.emit(event);
                let word = self.state.load(Ordering::Acquire);
                match code_of(word) {
                    BreakerState::CLOSED | BreakerState::DISABLED => Ok(Permit {
                        breaker: self,
                        word,
                        done: false,
                    }),
                    BreakerState::HALF_OPEN => self.acquire_probe(word),
                    code => Err(self.reject(BreakerState::from_code(code), None)),
                }
            }
            BreakerState::HALF_OPEN => self.acquire_probe(word),
            code => Err(self.reject(BreakerState::from_code(code), None)),
        }
    }

    fn acquire_probe(&self, word: u64) -> Result<Permit<'_>, Rejected> {
        let gen = gen_of(word) & 0xFFFF_FFFF;
        let mut p = self.probes.load(Ordering::Acquire);
        loop {
            if p >> 32 != gen || p & 0xFFFF_FFFF == 0 {
                return Err(self.reject(BreakerState::HalfOpen, None));
            }
            match self
                .probes
                .compare_exchange_weak(p, p - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Ok(Permit {
                        breaker: self,
                        word,
                        done: false,
                    })
                }
                Err(actual) => p = actual,
            }
        }
    }

    fn release_probe(&self, word: u64) {
        let gen = gen_of(word) & 0xFFFF_FFFF;
        let mut p = self.probes.load(Ordering::Acquire);
        while p >> 32 == gen && self.state.load(Ordering::Acquire) == word {
            match self
                .probes
                .compare_exchange_weak(p, p + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => p = actual,
            }
        }
    }

    #[inline]
    fn reject(&self, state: BreakerState, retry_after: Option<Duration>) -> Rejected {
        self.counters.rejected.incr();
        Rejected { state, retry_after }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn open_duration_for(&self, consecutive_opens: u32) -> u64 {
        let base = duration_nanos(self.config.open_duration);
        let max = duration_nanos(self.config.max_open_duration).max(base);
        let m = self.config.open_duration_multiplier;
        if !(m.is_finite() && m > 1.0) || consecutive_opens <= 1 {
            return base.min(max);
        }
        let grown = base as f64 * m.powi(consecutive_opens.saturating_sub(1).min(1024) as i32);
        if grown >= max as f64 {
            max
        } else {
            grown as u64
        }
    }

    /// Performs a transition; caller holds the lock and has verified that the
    /// current word is `from_word`.
    fn transition_locked(
        &self,
        inner: &mut Inner,
        from_word: u64,
        to: u64,
        now: u64,
    ) -> StateTransition {
        let new_gen = gen_of(from_word).wrapping_add(1) & (u64::MAX >> STATE_BITS);
        let mut open_for = None;
        match to {
            BreakerState::OPEN => {
                inner.consecutive_opens = inner.consecutive_opens.saturating_add(1);
                let dur = self.open_duration_for(inner.consecutive_opens);
                self.open_until
                    .store(now.saturating_add(dur), Ordering::Release);
                self.opened_at.store(now, Ordering::Release);
                self.counters.opened.fetch_add(1, Ordering::Relaxed);
                open_for = Some(Duration::from_nanos(dur));
            }
            BreakerState::HALF_OPEN => {
                inner.probe_successes = 0;
                let probes =
                    ((new_gen & 0xFFFF_FFFF) << 32) | u64::from(self.config.half_open_probes);
                self.probes.store(probes, Ordering::Release);
            }
            BreakerState::CLOSED => inner.consecutive_opens = 0,
            _ => {}
        }
        inner.window.reset();
        self.state
            .store((new_gen << STATE_BITS) | to, Ordering::Release);
        StateTransition {
            name: self.name.clone(),
            from: BreakerState::from_code(code_of(from_word)),
            to: BreakerState::from_code(to),
            at_nanos: now,
            open_for,
        }
    }

    fn emit(&self, event: Option<StateTransition>) {
        if let Some(t) = event {
            if t.from != t.to {
                for l in &self.listeners {
                    l(&t);
                }
            }
        }
    }

    fn on_outcome(&self, word: u64, failed: bool, duration: Duration) {
        let slow = duration_nanos(duration) >= self.slow_nanos;
        match code_of(word) {
            BreakerState::CLOSED => {
                let now = if self.time_window {
                    self.clock.now_nanos()
                } else {
                    0
                };
                let event = {
                    let mut inner = self.lock();
                    inner.count(failed, slow);
                    if self.state.load(Ordering::Acquire) != word {
                        return;
                    }
                    inner.window.record(now, failed, slow);
                    let snap = inner.window.snapshot(now);
                    let trip = snap.calls >= u64::from(self.config.minimum_calls.max(1))
                        && (snap.failure_rate() >= self.config.failure_rate_threshold
                            || snap.slow_rate() >= self.config.slow_call_rate_threshold);
                    if trip {
                        let now = if self.time_window {
                            now
                        } else {
                            self.clock.now_nanos()
                        };
                        Some(self.transition_locked(&mut inner, word, BreakerState::OPEN, now))
                    } else {
                        None
                    }
                };
                self.emit(event);
            }
            BreakerState::HALF_OPEN => {
                let now = self.clock.now_nanos();
                let event = {
                    let mut inner = self.lock();
                    inner.count(failed, slow);
                    if self.state.load(Ordering::Acquire) != word {
                        return;
                    }
                    if failed || slow {
                        Some(self.transition_locked(&mut inner, word, BreakerState::OPEN, now))
                    } else {
                        inner.probe_successes += 1;
                        if inner.probe_successes >= self.config.half_open_successes {
                            Some(self.transition_locked(
                                &mut inner,
                                word,
                                BreakerState::CLOSED,
                                now,
                            ))
                        } else {
                            None
                        }
                    }
                };
                self.emit(event);
            }
            _ => self.lock().count(failed, slow),
        }
    }

    fn manual(&self, to: u64) {
        let now = self.clock.now_nanos();
        let event = {
            let mut inner = self.lock();
            let word = self.state.load(Ordering::Acquire);
            Some(self.transition_locked(&mut inner, word, to, now))
        };
        self.emit(event);
    }

    /// Forces the breaker open until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.manual(BreakerState::FORCED_OPEN);
    }

    /// Disables the breaker (admit everything, record nothing) until reset.
    pub fn disable(&self) {
        self.manual(BreakerState::DISABLED);
    }

    /// Opens the breaker now, as if the thresholds had been crossed.
    pub fn trip(&self) {
        self.manual(BreakerState::OPEN);
    }

    /// How long the breaker has been open, if it is open (not forced open).
    pub fn open_elapsed(&self) -> Option<Duration> {
        if code_of(self.state.load(Ordering::Acquire)) != BreakerState::OPEN {
            return None;
        }
        let since = self.opened_at.load(Ordering::Acquire);
        Some(Duration::from_nanos(
            self.clock.now_nanos().saturating_sub(since),
        ))
    }

    /// Ends the current open period now, because something other than the
    /// calls (a health check, a reconnected client) says the dependency is
    /// back: the next call becomes a half-open probe instead of waiting out
    /// the rest of the open duration. The probes still decide; a failed one
    /// reopens the breaker for the next, longer period, as usual. Returns
    /// true if the breaker was open (a forced-open breaker is left alone).
    pub fn probe_now(&self) -> bool {
        // Under the lock, so no transition runs between the state check and
        // the store: `open_until` belongs to the open period checked here.
        let _inner = self.lock();
        if code_of(self.state.load(Ordering::Acquire)) != BreakerState::OPEN {
            return false;
        }
        self.open_until
            .fetch_min(self.clock.now_nanos(), Ordering::AcqRel);
        true
    }

    /// Returns to closed with an empty window and no open-duration growth.
    pub fn reset(&self) {
        self.manual(BreakerState::CLOSED);
    }

    /// Counters and window contents.
    pub fn metrics(&self) -> BreakerMetrics {
        let now = self.clock.now_nanos();
        let inner = self.lock();
        BreakerMetrics {
            state: self.state(),
            successes: inner.successes,
            failures: inner.failures,
            slow_calls: inner.slow,
            rejected: self.counters.rejected.get(),
            opened: self.counters.opened.load(Ordering::Relaxed),
            window: inner.window.snapshot(now),
        }
    }

    /// Runs `fut` through the breaker, timing it with the breaker's clock;
    /// every `Err` counts as a failure.
    pub async fn call<T, E, Fut>(&self, fut: Fut) -> Result<Result<T, E>, Rejected>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire()?;
        let start = self.clock.now_nanos();
        let result = fut.await;
        let took = Duration::from_nanos(self.clock.now_nanos().saturating_sub(start));
        match &result {
            Ok(_) => permit.record_success(took),
            Err(_) => permit.record_failure(took),
        }
        Ok(result)
    }
}

/// Permission to make one call. Report how it went with
/// [`record_success`](Permit::record_success) /
/// [`record_failure`](Permit::record_failure), or [`release`](Permit::release)
/// it when the outcome says nothing about the dependency. Dropping a permit
/// unrecorded is the same as releasing it (a half-open probe slot is returned).
#[must_use = "record the outcome of the call"]
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    word: u64,
    done: bool,
}

impl Permit<'_> {
    /// The call succeeded after `duration` (slow if over the limit).
    #[inline]
    pub fn record_success(mut self, duration: Duration) {
        self.done = true;
        self.breaker.on_outcome(self.word, false, duration);
    }

    /// The call failed after `duration`.
    #[inline]
    pub fn record_failure(mut self, duration: Duration) {
        self.done = true;
        self.breaker.on_outcome(self.word, true, duration);
    }

    /// The call is not to be counted (e.g. an ignored error class).
    pub fn release(self) {
        drop(self)
    }

    /// Whether this permit is a half-open probe.
    pub fn is_probe(&self) -> bool {
        code_of(self.word) == BreakerState::HALF_OPEN
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && code_of(self.word) == BreakerState::HALF_OPEN {
            self.breaker.release_probe(self.word);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use std::sync::Mutex as StdMutex;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            window_size: 10,
            minimum_calls: 5,
            failure_rate_threshold: 0.5,
            open_duration: Duration::from_secs(10),
            open_duration_multiplier: 2.0,
            max_open_duration: Duration::from_secs(25),
            half_open_probes: 2,
            half_open_successes: 2,
            slow_call_duration: Duration::from_secs(1),
            slow_call_rate_threshold: 0.6,
            ..BreakerConfig::default()
        }
    }

    #[test]
    fn open_duration_grows_and_is_capped() {
        let clock = ManualClock::new();
        let events = Arc::new(StdMutex::new(Vec::new()));
        let ev = events.clone();
        let b = CircuitBreaker::new("t", cfg(), clock.shared()).with_listener(move |t| {
            ev.lock()
                .map(|mut v| v.push((t.to, t.open_for)))
                .unwrap_or(())
        });
        for _ in 0..5 {
            b.try_acquire()
                .map(|p| p.record_failure(Duration::ZERO))
                .ok();
        }
        assert_eq!(b.state(), BreakerState::Open);
        for expected in [20, 25, 25] {
            clock.advance(Duration::from_secs(30));
            let p = b.try_acquire().expect("probe");
            p.record_failure(Duration::ZERO);
            let last = events
                .lock()
                .map(|v| *v.last().expect("event"))
                .expect("lock");
            assert_eq!(
                last,
                (BreakerState::Open, Some(Duration::from_secs(expected)))
            );
        }
        clock.advance(Duration::from_secs(30));
        b.try_acquire()
            .expect("probe")
            .record_success(Duration::ZERO);
        b.try_acquire()
            .expect("probe")
            .record_success(Duration::ZERO);
        assert_eq!(b.state(), BreakerState::Closed);
        b.trip();
        let last = events
            .lock()
            .map(|v| *v.last().expect("event"))
            .expect("lock");
        assert_eq!(last, (BreakerState::Open, Some(Duration::from_secs(10))));
    }

    #[test]
    fn probe_now_ends_the_open_period_but_the_probes_still_decide() {
        let clock = ManualClock::new();
        let b = CircuitBreaker::new("t", cfg(), clock.shared());
        assert!(!b.probe_now(), "a closed breaker is left alone");
        assert_eq!(b.open_elapsed(), None);
        b.trip();
        assert!(b.try_acquire().is_err(), "open for 10 s");
        clock.advance(Duration::from_secs(3));
        assert_eq!(b.open_elapsed(), Some(Duration::from_secs(3)));
        assert!(b.probe_now());
        // At once, without the clock moving: a probe is admitted.
        let probe = b.try_acquire().expect("a half-open probe");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.probe_now(), "only an open breaker is hurried");
        assert_eq!(b.open_elapsed(), None);
        // A failed probe reopens for the next, longer period (20 s).
        probe.record_failure(Duration::ZERO);
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(19));
        assert!(b.try_acquire().is_err());
        assert_eq!(b.open_elapsed(), Some(Duration::from_secs(19)));
        assert!(b.probe_now());
        for _ in 0..2 {
            b.try_acquire()
                .expect("probe")
                .record_success(Duration::ZERO);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        // Forced open stays forced open.
        b.force_open();
        assert!(!b.probe_now());
        assert!(b.try_acquire().is_err());
    }

    #[test]
    fn slow_calls_trip() {
        let clock = ManualClock::new();
        let b = CircuitBreaker::new("t", cfg(), clock.shared());
        for _ in 0..3 {
            b.try_acquire()
                .expect("closed")
                .record_success(Duration::from_secs(2));
        }
        for _ in 0..2 {
            b.try_acquire()
                .expect("closed")
                .record_success(Duration::ZERO);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.metrics().slow_calls, 3);
    }

    #[test]
    fn dropped_probe_is_returned_and_forced_states_work() {
        let clock = ManualClock::new();
        let b = CircuitBreaker::new("t", cfg(), clock.shared());
        b.trip();
        clock.advance(Duration::from_secs(10));
        let p1 = b.try_acquire().expect("probe 1");
        let p2 = b.try_acquire().expect("probe 2");
        assert!(p1.is_probe());
        assert!(b.try_acquire().is_err());
        drop(p2);
        let p3 = b.try_acquire().expect("slot returned");
        drop((p1, p3));
        b.force_open();
        clock.advance(Duration::from_secs(1000));
        assert_eq!(
            b.try_acquire().map(|_| ()).unwrap_err().state,
            BreakerState::ForcedOpen
        );
        b.disable();
        for _ in 0..100 {
            b.try_acquire()
                .expect("disabled")
                .record_failure(Duration::ZERO);
        }
        assert_eq!(b.state(), BreakerState::Disabled);
        b.reset();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    /// With the real (coarse-reading) clock: rejected while open, never
    /// admitted before the open duration has elapsed, not rejected after it
    /// (beyond the allowance for a late kernel tick, see `clock` tests), and
    /// the half-open transition carries the precise time.
    #[test]
    fn open_rejects_until_elapsed_with_system_clock() {
        use crate::{Clock, SystemClock};
        let clock = SystemClock;
        let max_lag = clock.coarse_max_lag_nanos();
        // Rejecting after `until` needs the coarse clock to lag by more than
        // `max_lag`, which only a late timer tick causes; allow one tick.
        let tolerance = max_lag / 2;
        let open_for = Duration::from_millis(20);
        let events = Arc::new(StdMutex::new(Vec::new()));
        let ev = events.clone();
        let b = CircuitBreaker::new(
            "t",
            BreakerConfig {
                open_duration: open_for,
                ..cfg()
            },
            SystemClock::shared(),
        )
        .with_listener(move |t| ev.lock().map(|mut v| v.push(t.clone())).unwrap_or(()));
        b.trip();
        let opened = events.lock().expect("lock")[0].clone();
        assert_eq!(opened.to, BreakerState::Open);
        let until = opened.at_nanos + duration_nanos(open_for);

        let mut rejections = 0u32;
        let give_up = clock.now_nanos() + 2_000_000_000;
        let admitted_at = loop {
            let before = clock.now_nanos();
            assert!(before < give_up, "still open 2 s after tripping");
            match b.try_acquire() {
                Ok(permit) => {
                    let after = clock.now_nanos();
                    assert!(after >= until, "admitted {} ns early", until - after);
                    assert!(permit.is_probe());
                    drop(permit);
                    break after;
                }
                Err(r) => {
                    rejections += 1;
                    assert_eq!(r.state, BreakerState::Open);
                    assert!(
                        before < until + tolerance,
                        "rejected {} ns after the open duration (max lag {max_lag})",
                        before - until
                    );
                    let retry_after = r.retry_after.expect("open rejection has retry_after");
                    assert!(
                        duration_nanos(retry_after)
                            <= duration_nanos(open_for) + max_lag + tolerance
                    );
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        assert!(rejections > 0);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.metrics().rejected, u64::from(rejections));
        let half_open = events.lock().expect("lock")[1].clone();
        assert_eq!(half_open.to, BreakerState::HalfOpen);
        assert!(half_open.at_nanos >= until && half_open.at_nanos <= admitted_at);
    }

    #[test]
    fn time_window_expires_old_buckets() {
        let clock = ManualClock::new();
        let b = CircuitBreaker::new(
            "t",
            BreakerConfig {
                window: WindowKind::Time,
                window_duration: Duration::from_secs(10),
                ..cfg()
            },
            clock.shared(),
        );
        for _ in 0..4 {
            b.try_acquire()
                .expect("closed")
                .record_failure(Duration::ZERO);
        }
        clock.advance(Duration::from_secs(11));
        assert_eq!(b.metrics().window.calls, 0);
        b.try_acquire()
            .expect("closed")
            .record_failure(Duration::ZERO);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
