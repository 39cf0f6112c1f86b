//! Ends the grown part of a breaker's open period once its dependency is
//! back.
//!
//! A breaker that opened during an outage waits out its open duration, and
//! the duration grows with each failed probe (2 s, 3 s, 4.5 s ... for the
//! broker). So a dependency that came back just after a failed probe was
//! still refused for up to that long: in a `rabbitmq-restart` run of the
//! chaos suite (2026-12-07), every process's broker breaker sent a probe
//! while the node was still booting, reopened for 4.5 s, and held the
//! alerts back 3.5 s after the clients had reconnected.
//!
//! [`RecoveryProbe`] shortens only the growth: once a breaker has been open
//! for its base open duration, a call it refuses starts the dependency's own
//! health check in the background (bounded by a timeout, at most one at a
//! time and one per interval), and when the check passes the breaker lets
//! its half-open probes through at once
//! ([`resilience::CircuitBreaker::probe_now`]); the probes still decide. The
//! refused call itself still fails at once, and during the base open
//! duration nothing reaches the dependency, exactly as before.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use resilience::{Policy, PolicyError};
use tokio::task::JoinHandle;

/// Least time between the end of one check and the start of the next.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// A check that has not answered by then counts as failed (and is dropped).
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Background health checks for one policy's breaker.
#[derive(Debug)]
pub(crate) struct RecoveryProbe {
    started: Instant,
    interval: Duration,
    timeout: Duration,
    /// Nanoseconds after `started` before which no check starts.
    next_check: AtomicU64,
    running: AtomicBool,
}

impl RecoveryProbe {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Arc<Self> {
        Arc::new(RecoveryProbe {
            started: Instant::now(),
            interval,
            timeout,
            next_check: AtomicU64::new(0),
            running: AtomicBool::new(false),
        })
    }

    /// Call after `policy` refused a call because its breaker is open;
    /// returns at once. Starts `check` in the background if the breaker has
    /// been open for at least its base open duration and no check is running
    /// or ran within the interval. The task's result is true when the check
    /// passed in time and the breaker will now admit a probe.
    pub(crate) fn after_refusal<E, Fut>(
        self: &Arc<Self>,
        policy: &Policy,
        check: impl FnOnce() -> Fut,
    ) -> Option<JoinHandle<bool>>
    where
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Send + 'static,
    {
        let breaker = policy.breaker()?;
        if breaker.open_elapsed()? < breaker.config().open_duration {
            return None;
        }
        if self.elapsed_nanos() < self.next_check.load(Ordering::Acquire)
            || self.running.swap(true, Ordering::AcqRel)
        {
            return None;
        }
        let check = check();
        let this = Arc::clone(self);
        let policy = policy.clone();
        Some(tokio::spawn(async move {
            let passed = matches!(tokio::time::timeout(this.timeout, check).await, Ok(Ok(())));
            let hurried = passed && policy.breaker().is_some_and(|b| b.probe_now());
            let next = this
                .elapsed_nanos()
                .saturating_add(u64::try_from(this.interval.as_nanos()).unwrap_or(u64::MAX));
            this.next_check.store(next, Ordering::Release);
            this.running.store(false, Ordering::Release);
            hurried
        }))
    }

    /// For a decorator's failed call: if `error` is the open breaker's
    /// refusal, [`Self::after_refusal`] with `check`, detached (the refused
    /// call fails at once either way).
    pub(crate) fn on_error<E, CheckError, Fut>(
        self: &Arc<Self>,
        policy: &Policy,
        error: &PolicyError<E>,
        check: impl FnOnce() -> Fut,
    ) where
        Fut: Future<Output = Result<(), CheckError>> + Send + 'static,
        CheckError: Send + 'static,
    {
        if let PolicyError::CircuitOpen { .. } = error {
            let _ = self.after_refusal(policy, check);
        }
    }

    fn elapsed_nanos(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resilience::{BreakerState, ManualClock, PolicyConfig};
    use std::sync::atomic::AtomicU32;

    /// A policy on a manual clock whose breaker (base open time 2 s, then
    /// 1.5 times longer after each failed probe) has just reopened after a
    /// failed probe: open for 3 s, of which the last 1 s is growth.
    fn open_policy(clock: &ManualClock) -> Policy {
        let mut config = PolicyConfig::default();
        config.breaker.open_duration = Duration::from_secs(2);
        config.breaker.open_duration_multiplier = 1.5;
        config.breaker.max_open_duration = Duration::from_secs(10);
        let policy = Policy::builder(config)
            .clock(clock.shared())
            .build()
            .expect("valid");
        let breaker = policy.breaker().expect("a breaker");
        breaker.trip();
        clock.advance(Duration::from_secs(2));
        breaker
            .try_acquire()
            .expect("a probe")
            .record_failure(Duration::ZERO);
        assert_eq!(breaker.state(), BreakerState::Open);
        policy
    }

    async fn passing() -> Result<(), ()> {
        Ok(())
    }

    #[tokio::test]
    async fn nothing_is_checked_during_the_base_open_time() {
        let clock = ManualClock::new();
        let policy = open_policy(&clock);
        let probe = RecoveryProbe::new(Duration::ZERO, CHECK_TIMEOUT);
        clock.advance(Duration::from_millis(1_999));
        let called = AtomicU32::new(0);
        let started = probe.after_refusal(&policy, || {
            called.fetch_add(1, Ordering::Relaxed);
            passing()
        });
        assert!(started.is_none());
        assert_eq!(called.load(Ordering::Relaxed), 0, "the store is shielded");
        let breaker = policy.breaker().expect("breaker");
        assert!(breaker.try_acquire().is_err(), "still open");
    }

    #[tokio::test]
    async fn after_it_a_passing_check_lets_the_breaker_probe_at_once() {
        let clock = ManualClock::new();
        let policy = open_policy(&clock);
        let probe = RecoveryProbe::new(Duration::ZERO, CHECK_TIMEOUT);
        clock.advance(Duration::from_secs(2));
        let task = probe.after_refusal(&policy, passing).expect("a check");
        assert!(task.await.expect("task"));
        let breaker = policy.breaker().expect("breaker");
        assert!(breaker.try_acquire().is_ok(), "a half-open probe");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[tokio::test]
    async fn a_hanging_check_times_out_and_only_one_runs_at_a_time() {
        let clock = ManualClock::new();
        let policy = open_policy(&clock);
        let probe = RecoveryProbe::new(Duration::ZERO, Duration::from_millis(50));
        clock.advance(Duration::from_secs(2));
        let hanging = probe
            .after_refusal(&policy, std::future::pending::<Result<(), ()>>)
            .expect("a check");
        assert!(
            probe.after_refusal(&policy, passing).is_none(),
            "one check at a time"
        );
        assert!(!hanging.await.expect("task"), "timed out: failed");
        let breaker = policy.breaker().expect("breaker");
        assert!(breaker.try_acquire().is_err(), "still open");
        let failing = probe
            .after_refusal(&policy, || async { Err::<(), ()>(()) })
            .expect("the next check");
        assert!(!failing.await.expect("task"));
        assert!(breaker.try_acquire().is_err(), "still open");
    }

    #[tokio::test]
    async fn checks_are_spaced_by_the_interval() {
        let clock = ManualClock::new();
        let policy = open_policy(&clock);
        let probe = RecoveryProbe::new(Duration::from_secs(60), CHECK_TIMEOUT);
        clock.advance(Duration::from_secs(2));
        let first = probe
            .after_refusal(&policy, || async { Err::<(), ()>(()) })
            .expect("a check");
        assert!(!first.await.expect("task"));
        assert!(
            probe.after_refusal(&policy, passing).is_none(),
            "not again within the interval"
        );
    }
}
