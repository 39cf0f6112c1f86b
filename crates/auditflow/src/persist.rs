//! Keep trying a transient failure until it succeeds or the process stops.
//!
//! The consuming roles must never ack a message whose effect is not durable,
//! and must not spin when a dependency is down. So a transient failure pauses
//! the role (capped exponential backoff with full jitter; the deliveries stay
//! unacked in the broker, which is the buffer) and marks its dependency
//! degraded; a permanent failure is returned to the caller at once.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use auditflow_core::store::StoreError;
use rand::Rng;

use crate::context::Context;
use crate::health::Status;

/// Why [`persist`] stopped trying.
#[derive(Debug, thiserror::Error)]
pub enum Stopped<E> {
    /// The process is shutting down; the work stays unacked and is redelivered.
    #[error("shutting down")]
    Shutdown,
    /// The error is permanent; retrying cannot help.
    #[error(transparent)]
    Permanent(E),
}

const FIRST_DELAY: Duration = Duration::from_millis(20);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Capped exponential backoff with full jitter, for hand-written retry loops
/// (where the operation borrows something mutably and cannot be a closure).
#[derive(Debug)]
pub struct Backoff {
    ceiling: Duration,
    failed: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            ceiling: FIRST_DELAY,
            failed: false,
        }
    }
}

impl Backoff {
    /// Records a transient failure of `dependency` and waits before the next
    /// try. Returns `Err(Shutdown)` if shutdown begins meanwhile.
    pub async fn wait<E>(
        &mut self,
        ctx: &Context,
        dependency: &str,
        error: String,
    ) -> Result<(), Stopped<E>> {
        self.failed = true;
        ctx.health.set(dependency, Status::Degraded, Some(error));
        let delay = rand::rng().random_range(Duration::ZERO..=self.ceiling);
        self.ceiling = (self.ceiling * 2).min(MAX_DELAY);
        tokio::select! {
            _ = ctx.shutdown.cancelled() => Err(Stopped::Shutdown),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }

    /// Records that the operation succeeded (marks the dependency up again).
    pub fn succeeded(&self, ctx: &Context, dependency: &str) {
        if self.failed {
            ctx.health.up(dependency);
        }
    }
}

/// After the store refused a whole batch for its data
/// ([`StoreError::Refused`]): `store(i)` writes item `i` of `count` on its
/// own, so that only the items refused again are left out, not the batch or
/// the role. Per item, what `store` returned or the store's reason; any other
/// failure stops at once. A commit per item: slow, and only ever run for a
/// batch that holds such an item.
pub async fn each_alone<O, F, Fut>(
    count: usize,
    mut store: F,
) -> Result<Vec<Result<O, String>>, Stopped<StoreError>>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<O, Stopped<StoreError>>>,
{
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        out.push(match store(i).await {
            Ok(stored) => Ok(stored),
            Err(Stopped::Permanent(StoreError::Refused(reason))) => Err(reason),
            Err(other) => return Err(other),
        });
    }
    Ok(out)
}

/// Runs `op` until it succeeds, a permanent error occurs, or shutdown begins.
pub async fn persist<T, E, F, Fut>(
    ctx: &Context,
    dependency: &str,
    is_transient: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, Stopped<E>>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::default();
    loop {
        match op().await {
            Ok(value) => {
                backoff.succeeded(ctx, dependency);
                return Ok(value);
            }
            Err(e) if is_transient(&e) => backoff.wait(ctx, dependency, e.to_string()).await?,
            Err(e) => return Err(Stopped::Permanent(e)),
        }
    }
}

/// Retries a broker operation on a subscription (which is borrowed mutably,
/// so it cannot live in a closure) until it succeeds.
#[macro_export]
macro_rules! persist_sub {
    ($ctx:expr, $op:expr, $doing:literal) => {{
        let mut backoff = $crate::persist::Backoff::default();
        loop {
            match $op.await {
                Ok(value) => {
                    backoff.succeeded($ctx, "broker");
                    break Ok(value);
                }
                Err(e) if e.is_transient() => {
                    if let Err(stopped) = backoff
                        .wait::<anyhow::Error>($ctx, "broker", e.to_string())
                        .await
                    {
                        break Err(stopped);
                    }
                }
                Err(e) => {
                    break Err($crate::persist::Stopped::Permanent(
                        anyhow::Error::new(e).context($doing),
                    ))
                }
            }
        }
    }};
}
