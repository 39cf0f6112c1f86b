//! Ends a breaker's open period as soon as its dependency answers again.
//!
//! A breaker that opened during an outage waits out its open duration, and
//! the duration grows with each failed probe (2 s, 3 s, 4.5 s ... for the
//! broker). So a dependency that came back just after a failed probe was
//! still refused for up to that long: in the chaos suite's
//! `rabbitmq-restart` run of 2026-12-07, analyze and notify reconnected at
//! once but their breakers, reopened for 4.5 s by a probe sent while the
//! node was still booting, held the alerts back 3.5 s more.
//!
//! [`RecoveryProbe`] closes that gap on demand: when a call is refused by
//! the open breaker, it runs the dependency's own health check directly (not
//! through the policy), at most once per interval, and when the check
//! passes it lets the breaker send its half-open probes now
//! ([`resilience::CircuitBreaker::probe_now`]). While the dependency is
//! down, callers still fail fast; the only extra load is one cheap check
//! per interval, and only while callers keep asking.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use resilience::Policy;

/// How often a refused caller may check whether the dependency is back.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// At most one health check per interval, shared by all callers.
#[derive(Debug)]
pub(crate) struct RecoveryProbe {
    started: Instant,
    interval: Duration,
    /// Nanoseconds after `started` when the next check may run.
    next_check: AtomicU64,
}

impl RecoveryProbe {
    pub(crate) fn new(interval: Duration) -> Self {
        RecoveryProbe {
            started: Instant::now(),
            interval,
            next_check: AtomicU64::new(0),
        }
    }

    /// Call after `policy` refused a call because its breaker is open. Runs
    /// `check` unless another caller did within the interval; returns true
    /// when the check passed and the breaker will now admit a probe.
    pub(crate) async fn after_refusal<E, Fut>(
        &self,
        policy: &Policy,
        check: impl FnOnce() -> Fut,
    ) -> bool
    where
        Fut: Future<Output = Result<(), E>>,
    {
        let Some(breaker) = policy.breaker() else {
            return false;
        };
        let now = self.elapsed_nanos();
        let next = self.next_check.load(Ordering::Acquire);
        let claimed = now >= next
            && self
                .next_check
                .compare_exchange(
                    next,
                    now.saturating_add(self.interval.as_nanos() as u64),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok();
        if !claimed {
            return false;
        }
        check().await.is_ok() && breaker.probe_now()
    }

    fn elapsed_nanos(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resilience::{BreakerState, PolicyConfig};
    use std::sync::atomic::AtomicU32;

    fn open_policy() -> Policy {
        let policy = Policy::new(PolicyConfig::default()).expect("valid");
        policy.breaker().expect("a breaker").trip();
        policy
    }

    #[tokio::test]
    async fn a_passing_check_lets_the_open_breaker_probe_now() {
        let policy = open_policy();
        let probe = RecoveryProbe::new(Duration::from_secs(60));
        assert!(
            policy.breaker().expect("breaker").try_acquire().is_err(),
            "open"
        );
        assert!(
            probe
                .after_refusal(&policy, || async { Ok::<(), ()>(()) })
                .await
        );
        let breaker = policy.breaker().expect("breaker");
        assert!(breaker.try_acquire().is_ok(), "a half-open probe, at once");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[tokio::test]
    async fn a_failing_check_leaves_it_open_and_checks_are_spaced() {
        let policy = open_policy();
        let probe = RecoveryProbe::new(Duration::from_secs(60));
        let checks = AtomicU32::new(0);
        for _ in 0..5 {
            let passed = probe
                .after_refusal(&policy, || async {
                    checks.fetch_add(1, Ordering::Relaxed);
                    Err::<(), ()>(())
                })
                .await;
            assert!(!passed);
        }
        assert_eq!(checks.load(Ordering::Relaxed), 1, "one check per interval");
        let breaker = policy.breaker().expect("breaker");
        assert!(breaker.try_acquire().is_err(), "still open");
        // Within the interval even a passing check is not run.
        assert!(
            !probe
                .after_refusal(&policy, || async { Ok::<(), ()>(()) })
                .await
        );
        assert!(breaker.try_acquire().is_err());
    }

    #[tokio::test]
    async fn the_next_interval_may_check_again() {
        let policy = open_policy();
        let probe = RecoveryProbe::new(Duration::from_millis(20));
        assert!(
            !probe
                .after_refusal(&policy, || async { Err::<(), ()>(()) })
                .await
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            probe
                .after_refusal(&policy, || async { Ok::<(), ()>(()) })
                .await
        );
    }
}
