//! The store behind its policy.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use resilience::{ErrorClass, Policy, PolicyError};
use uuid::Uuid;

use auditflow_core::alert::Alert;
use auditflow_core::event::Event;
use auditflow_core::store::{
    AlertQuery, DeliveryRecord, EventQuery, Page, Store, StoreCounts, StoreError, StoredAlert,
    StoredEvent,
};

/// A [`Store`] whose every call goes through the `store` policy.
pub struct ResilientStore {
    inner: Arc<dyn Store>,
    policy: Policy,
}

impl ResilientStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, policy: Policy) -> Self {
        ResilientStore { inner, policy }
    }

    /// The policy (for breaker state in health reports).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        self.policy
            .call_classified(op, classify)
            .await
            .map_err(fold)
    }
}

/// Outages are retried and trip the breaker; a refused request (bad data)
/// is the caller's problem, not the store's, so it does neither.
fn classify(error: &StoreError) -> ErrorClass {
    match error {
        StoreError::Unavailable(_) => ErrorClass::Transient,
        StoreError::Rejected(_) => ErrorClass::Ignored,
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
        self.run(|| self.inner.insert_events(events)).await
    }

    async fn insert_alerts(&self, alerts: &[Alert]) -> Result<Vec<Uuid>, StoreError> {
        self.run(|| self.inner.insert_alerts(alerts)).await
    }

    async fn record_delivery(&self, record: &DeliveryRecord) -> Result<(), StoreError> {
        self.run(|| self.inner.record_delivery(record)).await
    }

    async fn deliveries(&self, alert_id: Uuid) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.run(|| self.inner.deliveries(alert_id)).await
    }

    async fn event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.run(|| self.inner.event(event_id)).await
    }

    async fn events(&self, query: &EventQuery) -> Result<Page<StoredEvent>, StoreError> {
        self.run(|| self.inner.events(query)).await
    }

    async fn alert(&self, alert_id: Uuid) -> Result<Option<StoredAlert>, StoreError> {
        self.run(|| self.inner.alert(alert_id)).await
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Page<StoredAlert>, StoreError> {
        self.run(|| self.inner.alerts(query)).await
    }

    async fn alerts_by_offset(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<StoredAlert>, StoreError> {
        self.run(|| self.inner.alerts_by_offset(limit, offset))
            .await
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.run(|| self.inner.counts()).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.run(|| self.inner.check()).await
    }
}
