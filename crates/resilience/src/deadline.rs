//! Absolute deadlines and deadline-bounded timeouts.
//!
//! A [`Deadline`] is an absolute instant on a [`Clock`]. It can be passed
//! explicitly into inner calls, or installed for the duration of a future with
//! [`Deadline::scope`] and read back anywhere inside it with
//! [`Deadline::current`] (a tokio task-local). A child deadline is never later
//! than its parent: [`Deadline::child`] returns `min(parent, now + max)`.
//!
//! [`timeout`] runs a future against a deadline (it also installs the deadline
//! as the current one for the inner future), [`timeout_after`] against a
//! relative duration, both returning [`Error::Timeout`] when time runs out.
//! The timer itself is a tokio timer, so the clock in use should agree with
//! tokio time: [`SystemClock`](crate::SystemClock) in production,
//! [`TokioClock`](crate::TokioClock) under `tokio::time::pause()`.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::clock::{duration_nanos, Clock, SharedClock};
use crate::error::Error;

tokio::task_local! {
    static CURRENT: Deadline;
}

/// An absolute point in time on a particular clock by which work must finish.
#[derive(Clone)]
pub struct Deadline {
    at_nanos: u64,
    clock: SharedClock,
}

impl fmt::Debug for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadline")
            .field("at_nanos", &self.at_nanos)
            .field("remaining", &self.remaining())
            .finish()
    }
}

impl Deadline {
    /// A deadline at absolute time `at_nanos` on `clock`.
    pub fn at(clock: SharedClock, at_nanos: u64) -> Self {
        Deadline { at_nanos, clock }
    }

    /// A deadline `within` from now on `clock`.
    pub fn after(clock: SharedClock, within: Duration) -> Self {
        let at_nanos = clock.now_nanos().saturating_add(duration_nanos(within));
        Deadline { at_nanos, clock }
    }

    /// The absolute instant (clock nanoseconds) of this deadline.
    pub fn at_nanos(&self) -> u64 {
        self.at_nanos
    }

    /// The clock this deadline is measured on.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Time left until the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        Duration::from_nanos(self.at_nanos.saturating_sub(self.clock.now_nanos()))
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.clock.now_nanos() >= self.at_nanos
    }

    /// A deadline for an inner call: `min(self, now + max)`.
    ///
    /// ```
    /// use resilience::{Deadline, ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let parent = Deadline::after(clock.shared(), Duration::from_secs(1));
    /// clock.advance(Duration::from_millis(800));
    /// // The inner call asks for 500 ms but only 200 ms remain.
    /// let child = parent.child(Duration::from_millis(500));
    /// assert_eq!(child.remaining(), Duration::from_millis(200));
    /// ```
    pub fn child(&self, max: Duration) -> Deadline {
        let cap = self.clock.now_nanos().saturating_add(duration_nanos(max));
        Deadline {
            at_nanos: self.at_nanos.min(cap),
            clock: self.clock.clone(),
        }
    }

    /// Like [`child`](Self::child) but with the current clock reading
    /// supplied by the caller (saves a clock read on hot paths).
    pub fn child_at(&self, now_nanos: u64, max: Duration) -> Deadline {
        Deadline {
            at_nanos: self
                .at_nanos
                .min(now_nanos.saturating_add(duration_nanos(max))),
            clock: self.clock.clone(),
        }
    }

    /// The earlier of two deadlines (assumed to share a clock).
    pub fn min(self, other: Deadline) -> Deadline {
        if other.at_nanos < self.at_nanos {
            other
        } else {
            self
        }
    }

    /// The deadline installed by an enclosing [`Deadline::scope`] (or by
    /// [`timeout`] / [`Policy::call`](crate::Policy::call)), if any.
    pub fn current() -> Option<Deadline> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with `self` installed as the [current](Deadline::current)
    /// deadline. Does not enforce it; see [`timeout`].
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, fut)
    }
}

/// Runs `fut` until `deadline`, failing with [`Error::Timeout`] if it passes
/// first. The deadline is installed as [`Deadline::current`] for `fut`, so
/// inner calls can derive [child](Deadline::child) deadlines from it.
///
/// An already-expired deadline fails immediately without polling `fut`.
pub async fn timeout<F: Future>(deadline: Deadline, fut: F) -> Result<F::Output, Error> {
    let after = deadline.remaining();
    timeout_for(deadline, after, fut).await
}

/// [`timeout`] with the remaining time already computed by the caller.
pub(crate) async fn timeout_for<F: Future>(
    deadline: Deadline,
    after: Duration,
    fut: F,
) -> Result<F::Output, Error> {
    if after.is_zero() {
        return Err(Error::Timeout { after });
    }
    match tokio::time::timeout(after, CURRENT.scope(deadline, fut)).await {
        Ok(v) => Ok(v),
        Err(_) => Err(Error::Timeout { after }),
    }
}

/// Runs `fut` for at most `within`, bounded also by the current deadline if
/// one is installed (the effective limit is the smaller of the two).
pub async fn timeout_after<F: Future>(
    clock: SharedClock,
    within: Duration,
    fut: F,
) -> Result<F::Output, Error> {
    let deadline = match Deadline::current() {
        Some(parent) => parent.child(within),
        None => Deadline::after(clock, within),
    };
    timeout(deadline, fut).await
}
