//! The store behind its policy.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use resilience::{ErrorClass, Policy, PolicyError};
use uuid::Uuid;

use auditflow_core::alert::Alert;
use auditflow_core::event::Event;
use auditflow_core::store::{
    AlertQuery, DeliveryRecord, EventQuery, Page, PendingDelivery, Store, StoreCounts, StoreError,
    StoredAlert, StoredEvent,
};

use super::recovery::{RecoveryProbe, CHECK_INTERVAL, CHECK_TIMEOUT};

/// A [`Store`] whose every call goes through the `store` policy.
///
/// Once its breaker has been open for its base open time, a refused call
/// starts a background check of the store, and the breaker probes as soon as
/// one passes (see [`super::recovery`]).
pub struct ResilientStore {
    inner: Arc<dyn Store>,
    policy: Policy,
    durations: Option<QueryDurations>,
    recovery: Arc<RecoveryProbe>,
}

/// `auditflow_store_query_duration_seconds`, by operation.
pub type QueryDurations = prometheus_client::metrics::family::Family<
    crate::metrics::OperationLabel,
    prometheus_client::metrics::histogram::Histogram,
    fn() -> prometheus_client::metrics::histogram::Histogram,
>;

impl ResilientStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, policy: Policy) -> Self {
        ResilientStore {
            inner,
            policy,
            durations: None,
            recovery: RecoveryProbe::new(CHECK_INTERVAL, CHECK_TIMEOUT),
        }
    }

    /// Also records each call's duration (retries included) by operation.
    pub fn with_durations(mut self, durations: QueryDurations) -> Self {
        self.durations = Some(durations);
        self
    }

    /// The policy (for breaker state in health reports).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn run<T, F, Fut>(&self, operation: &'static str, op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let started = std::time::Instant::now();
        let result = self
            .policy
            .call_classified(op, classify)
            .await
            .inspect_err(|e| {
                let inner = Arc::clone(&self.inner);
                self.recovery
                    .on_error(&self.policy, e, || async move { inner.check().await });
            })
            .map_err(fold);
        if let Some(durations) = &self.durations {
            durations
                .get_or_create(&crate::metrics::OperationLabel { operation })
                .observe(started.elapsed().as_secs_f64());
        }
        result
    }
}

/// Outages are retried and trip the breaker; a refused request (bad data)
/// is the caller's problem, not the store's, so it does neither.
fn classify(error: &StoreError) -> ErrorClass {
    match error {
        StoreError::Unavailable(_) => ErrorClass::Transient,
        StoreError::Rejected(_) | StoreError::Refused(_) => ErrorClass::Ignored,
    }
}

fn fold(error: PolicyError<StoreError>) -> StoreError {
    match super::describe("store", &error) {
        Some(message) => StoreError::Unavailable(message),
        None => error
            .into_inner()
            .unwrap_or_else(|| StoreError::Unavailable("store: call failed".into())),
    }
}

#[async_trait]
impl Store for ResilientStore {
    async fn insert_events(&self, events: &[Event]) -> Result<u64, StoreError> {
        self.run("insert_events", || self.inner.insert_events(events))
            .await
    }

    async fn insert_alerts(&self, alerts: &[Alert]) -> Result<Vec<Uuid>, StoreError> {
        self.run("insert_alerts", || self.inner.insert_alerts(alerts))
            .await
    }

    async fn record_delivery(&self, record: &DeliveryRecord) -> Result<(), StoreError> {
        self.run("record_delivery", || self.inner.record_delivery(record))
            .await
    }

    async fn record_deliveries(&self, records: &[DeliveryRecord]) -> Result<(), StoreError> {
        self.run("record_deliveries", || {
            self.inner.record_deliveries(records)
        })
        .await
    }

    async fn deliveries(&self, alert_id: Uuid) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.run("deliveries", || self.inner.deliveries(alert_id))
            .await
    }

    // A claim is a write whose retry could claim a second batch while the
    // first one's leases run out unused; both are harmless (leased rows come
    // due again), so it goes through the same policy as other calls.
    async fn claim_retries(
        &self,
        channel: &str,
        due_before: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        self.run("claim_retries", || {
            self.inner
                .claim_retries(channel, due_before, lease_until, limit)
        })
        .await
    }

    async fn retry_backlog(&self, channel: &str) -> Result<u64, StoreError> {
        self.run("retry_backlog", || self.inner.retry_backlog(channel))
            .await
    }

    async fn event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.run("event", || self.inner.event(event_id)).await
    }

    async fn events(&self, query: &EventQuery) -> Result<Page<StoredEvent>, StoreError> {
        self.run("events", || self.inner.events(query)).await
    }

    async fn alert(&self, alert_id: Uuid) -> Result<Option<StoredAlert>, StoreError> {
        self.run("alert", || self.inner.alert(alert_id)).await
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Page<StoredAlert>, StoreError> {
        self.run("alerts", || self.inner.alerts(query)).await
    }

    async fn alerts_by_offset(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<StoredAlert>, StoreError> {
        self.run("alerts_by_offset", || {
            self.inner.alerts_by_offset(limit, offset)
        })
        .await
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.run("counts", || self.inner.counts()).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.run("check", || self.inner.check()).await
    }
}
