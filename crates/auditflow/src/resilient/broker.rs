//! The broker behind its policy.
//!
//! Publishing, statistics, dead-letter management and health checks go
//! through the `broker` policy. Consuming does not: a subscription is a
//! long-lived stream whose acks belong to it, and its failures surface as
//! errors of `next_batch`/`ack` that the roles already pause on.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use resilience::{ErrorClass, Policy, PolicyError};

use auditflow_core::broker::{Broker, BrokerError, DeadLetter, Message, QueueStats, Subscription};

use super::recovery::{RecoveryProbe, CHECK_INTERVAL, CHECK_TIMEOUT};

/// A [`Broker`] whose calls go through the `broker` policy. Once its breaker
/// has been open for its base open time, a refused call starts a background
/// check of the broker, and the breaker probes as soon as one passes (see
/// [`super::recovery`]).
pub struct ResilientBroker {
    inner: Arc<dyn Broker>,
    policy: Policy,
    recovery: Arc<RecoveryProbe>,
}

impl ResilientBroker {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Broker>, policy: Policy) -> Self {
        ResilientBroker {
            inner,
            policy,
            recovery: RecoveryProbe::new(CHECK_INTERVAL, CHECK_TIMEOUT),
        }
    }

    async fn run<T, F, Fut>(&self, op: F) -> Result<T, BrokerError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BrokerError>>,
    {
        self.policy
            .call_classified(op, classify)
            .await
            .inspect_err(|e| {
                let inner = Arc::clone(&self.inner);
                self.recovery
                    .on_error(&self.policy, e, || async move { inner.check().await });
            })
            .map_err(fold)
    }
}

/// A full queue is back-pressure, not a broker failure: it is neither retried
/// here (ingest answers 429 at once) nor counted against the breaker.
fn classify(error: &BrokerError) -> ErrorClass {
    match error {
        BrokerError::Unavailable(_) => ErrorClass::Transient,
        BrokerError::Full { .. } | BrokerError::Rejected(_) => ErrorClass::Ignored,
        BrokerError::Closed => ErrorClass::Permanent,
    }
}

fn fold(error: PolicyError<BrokerError>) -> BrokerError {
    match super::describe("broker", &error) {
        Some(message) => BrokerError::Unavailable(message),
        None => error
            .into_inner()
            .unwrap_or_else(|| BrokerError::Unavailable("broker: call failed".into())),
    }
}

#[async_trait]
impl Broker for ResilientBroker {
    async fn publish(&self, queue: &str, messages: &[Message]) -> Result<(), BrokerError> {
        self.run(|| self.inner.publish(queue, messages)).await
    }

    async fn subscribe(
        &self,
        queue: &str,
        prefetch: usize,
    ) -> Result<Box<dyn Subscription>, BrokerError> {
        self.run(|| self.inner.subscribe(queue, prefetch)).await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, BrokerError> {
        self.run(|| self.inner.stats(queue)).await
    }

    async fn dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        self.run(|| self.inner.dead_letters(queue, limit)).await
    }

    async fn redrive(&self, queue: &str, dead_letter_id: &str) -> Result<bool, BrokerError> {
        self.run(|| self.inner.redrive(queue, dead_letter_id)).await
    }

    async fn check(&self) -> Result<(), BrokerError> {
        self.run(|| self.inner.check()).await
    }

    // A local wait on the broker's own counters: no call to protect.
    async fn wait_for_room(&self, queue: &str, n: usize, timeout: std::time::Duration) -> bool {
        self.inner.wait_for_room(queue, n, timeout).await
    }
}
