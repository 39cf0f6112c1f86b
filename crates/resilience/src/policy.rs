//! The composed policy.
//!
//! # Layer order
//!
//! ```text
//! rate limit -> bulkhead -> [deadline] -> retry (budget) -> circuit breaker -> timeout -> call
//! ```
//!
//! * **Rate limit first**: refusing excess load must be the cheapest thing we
//!   do and must not consume a concurrency slot, a budget deposit or a
//!   breaker sample.
//! * **Bulkhead next**: it bounds *logical calls in flight*, including time
//!   spent in retry backoff, so a struggling dependency cannot soak up
//!   unbounded tasks through retries.
//! * **An overall deadline** (`timeout.total`, or the caller's
//!   [`Deadline::current`] if shorter) bounds the whole call; retries never
//!   start once it (or `retry.max_elapsed`) would be crossed.
//! * **Retry outside the breaker**: every attempt asks the breaker, so
//!   retries are counted as samples and stop immediately when the breaker
//!   opens (returning [`PolicyError::CircuitOpen`]); a retry loop inside the
//!   breaker would hide failures from it and keep hammering an open circuit.
//!   The retry budget caps retries at ~20 % of calls across all callers.
//! * **Timeout innermost**: each attempt gets its own limit
//!   (`min(timeout.per_attempt, remaining overall deadline)`), and a timed-out
//!   attempt is recorded by the breaker as a failure with its real duration
//!   (so it also counts as slow). The attempt's deadline is installed as
//!   [`Deadline::current`] for the called code to propagate further.
//!
//! # Allocation
//!
//! [`Policy::call`] is a plain `async fn`: no boxed futures, no per-call heap
//! allocation on the success path (verified by `tests/alloc_free.rs` with a
//! counting global allocator).

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::breaker::{BreakerConfig, CircuitBreaker, Listener, Permit, StateTransition};
use crate::budget::{BudgetConfig, RetryBudget};
use crate::bulkhead::{Bulkhead, BulkheadConfig};
use crate::clock::{duration_nanos, SharedClock, SystemClock};
use crate::deadline::{timeout_for, Deadline};
use crate::error::Error;
use crate::observer::{CallOutcome, NoopObserver, PolicyObserver, RejectReason};
use crate::rate_limit::{RateLimitConfig, RateLimiter};
use crate::retry::{ErrorClass, GiveUpReason, RetryConfig, RetryDecision, RetryState};

/// Time limits of a [`Policy`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    /// Overall deadline for a logical call, retries included. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub total: Duration,
    /// Limit for each attempt (further bounded by the overall deadline).
    /// Default `2s`.
    #[serde(with = "humantime_serde")]
    pub per_attempt: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            total: Duration::from_secs(10),
            per_attempt: Duration::from_secs(2),
        }
    }
}

/// Plain, serde-deserialisable configuration of a [`Policy`]. Every field has
/// a default, so an empty TOML table is a valid configuration.
///
/// ```
/// let cfg: resilience::PolicyConfig = toml::from_str(r#"
///     name = "store"
///     [timeout]
///     per_attempt = "250ms"
///     [retry]
///     max_attempts = 4
///     jitter = "decorrelated"
/// "#).expect("valid config");
/// assert_eq!(cfg.timeout.per_attempt, std::time::Duration::from_millis(250));
/// assert_eq!(cfg.breaker.window_size, 100); // default kept
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Policy / dependency name, carried by every observer event. Default
    /// `"default"`.
    pub name: String,
    /// Time limits.
    pub timeout: TimeoutConfig,
    /// Retries.
    pub retry: RetryConfig,
    /// Retry budget shared by all callers of this policy.
    pub retry_budget: BudgetConfig,
    /// Circuit breaker.
    pub breaker: BreakerConfig,
    /// Bulkhead.
    pub bulkhead: BulkheadConfig,
    /// Rate limiter (disabled by default).
    pub rate_limit: RateLimitConfig,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            name: "default".to_owned(),
            timeout: TimeoutConfig::default(),
            retry: RetryConfig::default(),
            retry_budget: BudgetConfig::default(),
            breaker: BreakerConfig::default(),
            bulkhead: BulkheadConfig::default(),
            rate_limit: RateLimitConfig::default(),
        }
    }
}

/// An invalid [`PolicyConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid resilience policy config: {field}: {reason}")]
pub struct ConfigError {
    /// Offending field, e.g. `breaker.failure_rate_threshold`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl PolicyConfig {
    /// Checks value ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason| Err(ConfigError { field, reason });
        if self.timeout.total.is_zero() || self.timeout.per_attempt.is_zero() {
            return err("timeout", "durations must be positive");
        }
        if self.retry.max_attempts == 0 {
            return err("retry.max_attempts", "must be at least 1");
        }
        if !(self.retry.multiplier.is_finite() && self.retry.multiplier >= 1.0) {
            return err("retry.multiplier", "must be finite and >= 1");
        }
        if !(self.retry_budget.ratio.is_finite() && self.retry_budget.ratio >= 0.0) {
            return err("retry_budget.ratio", "must be finite and >= 0");
        }
        let b = &self.breaker;
        if !(b.failure_rate_threshold > 0.0 && b.failure_rate_threshold <= 1.0) {
            return err("breaker.failure_rate_threshold", "must be in (0, 1]");
        }
        if b.slow_call_rate_threshold.is_nan() || b.slow_call_rate_threshold <= 0.0 {
            return err(
                "breaker.slow_call_rate_threshold",
                "must be > 0 (above 1 disables)",
            );
        }
        if b.window_size == 0 || b.window_duration.is_zero() {
            return err("breaker.window_size", "window must be non-empty");
        }
        if b.half_open_probes == 0 {
            return err("breaker.half_open_probes", "must be at least 1");
        }
        if self.bulkhead.max_concurrent == 0 {
            return err("bulkhead.max_concurrent", "must be at least 1");
        }
        if self.rate_limit.enabled && (self.rate_limit.rate == 0 || self.rate_limit.per.is_zero()) {
            return err("rate_limit.rate", "must be positive");
        }
        Ok(())
    }
}

/// Error of a [`Policy`] call. The dependency's own error, when there is one,
/// is kept and exposed as [`source()`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError<E> {
    /// The last attempt (or the overall deadline) timed out.
    #[error("timed out after {after:?}")]
    Timeout {
        /// The limit that applied to the attempt.
        after: Duration,
    },
    /// The circuit breaker rejected the (first or a retried) attempt.
    #[error("circuit breaker open")]
    CircuitOpen {
        /// When the breaker will next admit probes, if known.
        retry_after: Option<Duration>,
    },
    /// No bulkhead slot within `bulkhead.max_wait`.
    #[error("bulkhead full")]
    BulkheadFull,
    /// Refused by the rate limiter.
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited {
        /// How long until a call would be admitted (for `Retry-After`).
        retry_after: Duration,
    },
    /// A retry was needed but the retry budget was exhausted; carries the
    /// last error.
    #[error("retry budget exhausted")]
    BudgetExhausted(#[source] E),
    /// The dependency failed (non-retryable, or retries used up).
    #[error("call failed")]
    Inner(#[source] E),
}

impl<E> PolicyError<E> {
    /// The dependency's error, if this error carries one.
    pub fn inner(&self) -> Option<&E> {
        match self {
            PolicyError::Inner(e) | PolicyError::BudgetExhausted(e) => Some(e),
            _ => None,
        }
    }

    /// Consumes self, returning the dependency's error if any.
    pub fn into_inner(self) -> Option<E> {
        match self {
            PolicyError::Inner(e) | PolicyError::BudgetExhausted(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the call was refused without reaching the dependency.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            PolicyError::CircuitOpen { .. }
                | PolicyError::BulkheadFull
                | PolicyError::RateLimited { .. }
        )
    }

    /// Suggested `Retry-After`, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PolicyError::RateLimited { retry_after } => Some(*retry_after),
            PolicyError::CircuitOpen { retry_after } => *retry_after,
            _ => None,
        }
    }
}

struct Inner {
    name: Arc<str>,
    clock: SharedClock,
    observer: Arc<dyn PolicyObserver>,
    rate_limiter: Option<RateLimiter>,
    bulkhead: Option<Bulkhead>,
    breaker: Option<Arc<CircuitBreaker>>,
    budget: Option<Arc<RetryBudget>>,
    retry: RetryConfig,
    total: Duration,
    per_attempt: Duration,
    seed: AtomicU64,
}

/// A composed resilience policy; cheap to clone (shared state).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use resilience::{Policy, PolicyConfig, PolicyError};
///
/// let policy = Policy::new(PolicyConfig { name: "store".into(), ..Default::default() })
///     .expect("valid config");
/// let v: Result<u32, PolicyError<std::io::Error>> = policy.call(|| async { Ok(7) }).await;
/// assert_eq!(v.ok(), Some(7));
/// # }
/// ```
#[derive(Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.inner.name)
            .field("breaker", &self.inner.breaker)
            .finish_non_exhaustive()
    }
}

/// Builder for a [`Policy`] with injected clock, observer and shared parts.
pub struct PolicyBuilder {
    config: PolicyConfig,
    clock: SharedClock,
    observer: Arc<dyn PolicyObserver>,
    budget: Option<Arc<RetryBudget>>,
    listeners: Vec<Listener>,
}

impl fmt::Debug for PolicyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PolicyBuilder {
    /// Uses `clock` for every component (default [`SystemClock`]).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Sends events to `observer` (default [`NoopObserver`]).
    pub fn observer(mut self, observer: Arc<dyn PolicyObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Shares an existing retry budget (e.g. between policies for the same
    /// dependency) instead of creating one from `retry_budget`.
    pub fn budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Adds a breaker state-transition listener.
    pub fn breaker_listener(
        mut self,
        l: impl Fn(&StateTransition) + Send + Sync + 'static,
    ) -> Self {
        self.listeners.push(Arc::new(l));
        self
    }

    /// Validates the configuration and builds the policy.
    pub fn build(self) -> Result<Policy, ConfigError> {
        let PolicyBuilder {
            config,
            clock,
            observer,
            budget,
            listeners,
        } = self;
        config.validate()?;
        let name: Arc<str> = Arc::from(config.name.as_str());
        let breaker = config.breaker.enabled.then(|| {
            let obs = observer.clone();
            let mut b = CircuitBreaker::new(name.clone(), config.breaker.clone(), clock.clone())
                .with_listener(move |t| obs.on_breaker_transition(&t.name, t));
            for l in listeners {
                b = b.with_shared_listener(l);
            }
            Arc::new(b)
        });
        let budget = match budget {
            Some(b) => Some(b),
            None => config
                .retry_budget
                .enabled
                .then(|| Arc::new(RetryBudget::new(config.retry_budget.clone(), clock.clone()))),
        };
        Ok(Policy {
            inner: Arc::new(Inner {
                rate_limiter: config
                    .rate_limit
                    .enabled
                    .then(|| RateLimiter::new(&config.rate_limit, clock.clone())),
                bulkhead: config
                    .bulkhead
                    .enabled
                    .then(|| Bulkhead::new(config.bulkhead.clone())),
                breaker,
                budget,
                retry: config.retry.clone(),
                total: config.timeout.total,
                per_attempt: config.timeout.per_attempt,
                seed: AtomicU64::new(duration_nanos(clock.now()) ^ 0xA076_1D64_78BD_642F),
                name,
                clock,
                observer,
            }),
        })
    }
}

enum LastFailure<E> {
    Inner(E),
    Timeout(Duration),
}

fn record(permit: Option<Permit<'_>>, class: ErrorClass, took: Duration) {
    if let Some(p) = permit {
        match class {
            ErrorClass::Ignored => p.release(),
            _ => p.record_failure(took),
        }
    }
}

impl Policy {
    /// A policy with the system clock and no observer.
    pub fn new(config: PolicyConfig) -> Result<Policy, ConfigError> {
        Self::builder(config).build()
    }

    /// A builder for injecting a clock, observer, shared budget or listeners.
    pub fn builder(config: PolicyConfig) -> PolicyBuilder {
        PolicyBuilder {
            config,
            clock: SystemClock::shared(),
            observer: Arc::new(NoopObserver),
            budget: None,
            listeners: Vec::new(),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The circuit breaker, if enabled (for manual control and metrics).
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.inner.breaker.as_deref()
    }

    /// The bulkhead, if enabled.
    pub fn bulkhead(&self) -> Option<&Bulkhead> {
        self.inner.bulkhead.as_ref()
    }

    /// The retry budget, if enabled.
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.inner.budget.as_ref()
    }

    /// Runs `op` through the full stack; every error is
    /// [`ErrorClass::Transient`].
    pub async fn call<T, E, F, Fut>(&self, op: F) -> Result<T, PolicyError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_classified(op, |_| ErrorClass::Transient).await
    }

    /// Runs `op` through the full stack, classifying errors with `classify`
    /// (permanent and ignored errors are never retried).
    pub async fn call_classified<T, E, F, Fut, C>(
        &self,
        mut op: F,
        classify: C,
    ) -> Result<T, PolicyError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Fn(&E) -> ErrorClass,
    {
        let p = &*self.inner;
        let start = p.clock.now_nanos();
        let elapsed = || Duration::from_nanos(p.clock.now_nanos().saturating_sub(start));
        let reject = |reason: RejectReason| {
            p.observer.on_rejected(&p.name, reason);
            p.observer
                .on_call(&p.name, CallOutcome::Rejected(reason), elapsed());
        };

        if let Some(rl) = &p.rate_limiter {
            if let Err(retry_after) = rl.check() {
                reject(RejectReason::RateLimited);
                return Err(PolicyError::RateLimited { retry_after });
            }
        }
        let _slot = match &p.bulkhead {
            Some(b) => match b.acquire().await {
                Ok(slot) => Some(slot),
                Err(_) => {
                    reject(RejectReason::BulkheadFull);
                    return Err(PolicyError::BulkheadFull);
                }
            },
            None => None,
        };
        // The overall deadline, re-based onto this policy's clock so that
        // attempt deadlines can be derived from one clock reading.
        let total = match Deadline::current() {
            Some(parent) => parent.remaining().min(p.total),
            None => p.total,
        };
        let deadline = Deadline::at(p.clock.clone(), start.saturating_add(duration_nanos(total)));
        if let Some(b) = &p.budget {
            b.deposit();
        }

        let mut retry: Option<RetryState> = None;
        loop {
            let permit = match &p.breaker {
                Some(b) => match b.try_acquire() {
                    Ok(permit) => Some(permit),
                    Err(rejected) => {
                        reject(RejectReason::CircuitOpen);
                        return Err(PolicyError::CircuitOpen {
                            retry_after: rejected.retry_after,
                        });
                    }
                },
                None => None,
            };
            let t0 = if retry.is_none() {
                start
            } else {
                p.clock.now_nanos()
            };
            let attempt_deadline = deadline.child_at(t0, p.per_attempt);
            let after = Duration::from_nanos(attempt_deadline.at_nanos().saturating_sub(t0));
            let result = timeout_for(attempt_deadline, after, op()).await;
            let t1 = p.clock.now_nanos();
            let took = Duration::from_nanos(t1.saturating_sub(t0));
            let failure = match result {
                Ok(Ok(v)) => {
                    if let Some(permit) = permit {
                        permit.record_success(took);
                    }
                    let total_elapsed = Duration::from_nanos(t1.saturating_sub(start));
                    p.observer
                        .on_call(&p.name, CallOutcome::Success, total_elapsed);
                    return Ok(v);
                }
                Ok(Err(e)) => {
                    let class = classify(&e);
                    record(permit, class, took);
                    if !class.is_retryable() {
                        p.observer.on_call(&p.name, CallOutcome::Failure, elapsed());
                        return Err(PolicyError::Inner(e));
                    }
                    LastFailure::Inner(e)
                }
                Err(err) => {
                    record(permit, ErrorClass::Transient, took);
                    LastFailure::Timeout(match err {
                        Error::Timeout { after } => after,
                        _ => took,
                    })
                }
            };

            let now = t1;
            let st = retry.get_or_insert_with(|| {
                let seed = p.seed.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
                RetryState::new(&p.retry, start, seed).with_deadline(deadline.at_nanos())
            });
            match st.on_failure(now, true, p.budget.as_deref()) {
                RetryDecision::Retry { delay, attempt } => {
                    p.observer.on_retry(&p.name, attempt, delay);
                    tokio::time::sleep(delay).await;
                }
                RetryDecision::GiveUp(reason) => {
                    let exhausted = reason == GiveUpReason::BudgetExhausted;
                    if exhausted {
                        p.observer.on_budget_exhausted(&p.name);
                    }
                    return Err(match failure {
                        LastFailure::Inner(e) => {
                            p.observer.on_call(&p.name, CallOutcome::Failure, elapsed());
                            if exhausted {
                                PolicyError::BudgetExhausted(e)
                            } else {
                                PolicyError::Inner(e)
                            }
                        }
                        LastFailure::Timeout(after) => {
                            p.observer.on_call(&p.name, CallOutcome::Timeout, elapsed());
                            PolicyError::Timeout { after }
                        }
                    });
                }
            }
        }
    }
}
