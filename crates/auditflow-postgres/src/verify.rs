//! When a pooled connection is verified with a round trip before it is
//! handed out: `Verifier`, deadpool's `post_recycle` hook.
//!
//! deadpool's `RecyclingMethod::Verified` sent an empty query at every
//! checkout: a second statement for PostgreSQL and a wait on every call (at
//! 1,000 events/s, about 650 of each per second in analyze alone). A
//! connection in steady use has just been proven by its last call, so only
//! two kinds are verified now: one idle for longer than [`VERIFY_AFTER`],
//! and one handed out before a call of the pool failed transiently (a
//! restarted server or terminated backends usually kill every connection at
//! once; each is then verified rather than handed to the next caller to
//! fail on). Closed connections never get here: `RecyclingMethod::Fast`
//! refuses them first.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{ClientWrapper, HookError, Metrics};

/// How long after its last checkout a connection is verified before it is
/// handed out again. One whose last call timed out was checked out at least
/// a call timeout ago, so it is always verified.
pub const VERIFY_AFTER: Duration = Duration::from_secs(1);

/// Decides and runs the verification. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub(crate) struct Verifier {
    /// Bound on the verification round trip.
    limit: Duration,
    /// When a call of this pool last failed transiently.
    failed_at: Arc<Mutex<Option<Instant>>>,
}

impl Verifier {
    pub(crate) fn new(limit: Duration) -> Verifier {
        Verifier {
            limit,
            failed_at: Arc::new(Mutex::new(None)),
        }
    }

    /// Records that a call failed transiently: every connection handed out
    /// before now is verified at its next checkout.
    pub(crate) fn note_failure(&self) {
        if let Ok(mut failed_at) = self.failed_at.lock() {
            *failed_at = Some(Instant::now());
        }
    }

    /// Whether a connection last handed out `since_checkout` ago needs a
    /// round trip first.
    fn needs_round_trip(&self, since_checkout: Duration) -> bool {
        if since_checkout >= VERIFY_AFTER {
            return true;
        }
        match self.failed_at.lock() {
            Ok(failed_at) => failed_at.is_some_and(|at| at.elapsed() <= since_checkout),
            // Poisoned: nothing is known, so verify.
            Err(_) => true,
        }
    }

    /// The hook: verifies `client` when [`Self::needs_round_trip`]; an
    /// error, or no answer within the limit, makes deadpool drop it and
    /// open another.
    pub(crate) async fn check(
        &self,
        client: &mut ClientWrapper,
        metrics: &Metrics,
    ) -> Result<(), HookError> {
        if !self.needs_round_trip(metrics.last_used()) {
            return Ok(());
        }
        match tokio::time::timeout(self.limit, client.simple_query("")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(HookError::Backend(e)),
            Err(_) => Err(HookError::message("connection verification timed out")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_used_just_now_is_not_verified() {
        let v = Verifier::new(Duration::from_secs(1));
        assert!(!v.needs_round_trip(Duration::from_millis(5)));
    }

    #[test]
    fn an_idle_connection_is_verified() {
        let v = Verifier::new(Duration::from_secs(1));
        assert!(v.needs_round_trip(VERIFY_AFTER));
        assert!(v.needs_round_trip(Duration::from_secs(60)));
    }

    #[test]
    fn connections_handed_out_before_a_failure_are_verified_later_ones_not() {
        let v = Verifier::new(Duration::from_secs(1));
        // Handed out 500 ms ago; the failure is newer.
        v.note_failure();
        assert!(v.needs_round_trip(Duration::from_millis(500)));
        // Handed out after the failure: the failure is older than its
        // checkout.
        std::thread::sleep(Duration::from_millis(20));
        assert!(!v.needs_round_trip(Duration::from_millis(5)));
    }
}
