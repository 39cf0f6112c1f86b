//! A failing store or broker turns into 503 + `Retry-After` on every route,
//! never a 500 or a panic.
//!
//! `DownStore` and `DownBroker` are test doubles of a failing dependency:
//! every method returns the configured error. That is the only way to make a
//! real backend fail on demand on every call, and it is what this test is
//! about: the API's reaction to a dependency failure, not the dependency.

use std::sync::Arc;

use async_trait::async_trait;
use auditflow_api::{router, ReadApi};
use auditflow_core::broker::{BrokerError, DeadLetter, QueueStats, Subscription};
use auditflow_core::store::{
    AlertQuery, DeliveryRecord, EventQuery, Page, StoreCounts, StoreError, StoredAlert, StoredEvent,
};
use auditflow_core::{Alert, Broker, Event, Message, Store};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use uuid::Uuid;

/// Test double: a store whose every call fails with `StoreError::Unavailable`
/// (or `Rejected` when `permanent`).
struct DownStore {
    permanent: bool,
}

impl DownStore {
    fn err(&self) -> StoreError {
        if self.permanent {
            StoreError::Rejected("database is corrupt".into())
        } else {
            StoreError::Unavailable("database is locked".into())
        }
    }
}

#[async_trait]
impl Store for DownStore {
    async fn insert_events(&self, _: &[Event]) -> Result<u64, StoreError> {
        Err(self.err())
    }
    async fn insert_alerts(&self, _: &[Alert]) -> Result<Vec<Uuid>, StoreError> {
        Err(self.err())
    }
    async fn record_delivery(&self, _: &DeliveryRecord) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn deliveries(&self, _: Uuid) -> Result<Vec<DeliveryRecord>, StoreError> {
        Err(self.err())
    }
    async fn claim_retries(
        &self,
        _: &str,
        _: chrono::DateTime<chrono::Utc>,
        _: chrono::DateTime<chrono::Utc>,
        _: usize,
    ) -> Result<Vec<auditflow_core::store::PendingDelivery>, StoreError> {
        Err(self.err())
    }
    async fn retry_backlog(&self, _: &str) -> Result<u64, StoreError> {
        Err(self.err())
    }
    async fn event(&self, _: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        Err(self.err())
    }
    async fn events(&self, _: &EventQuery) -> Result<Page<StoredEvent>, StoreError> {
        Err(self.err())
    }
    async fn alert(&self, _: Uuid) -> Result<Option<StoredAlert>, StoreError> {
        Err(self.err())
    }
    async fn alerts(&self, _: &AlertQuery) -> Result<Page<StoredAlert>, StoreError> {
        Err(self.err())
    }
    async fn alerts_by_offset(&self, _: u32, _: u64) -> Result<Vec<StoredAlert>, StoreError> {
        Err(self.err())
    }
    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        Err(self.err())
    }
    async fn check(&self) -> Result<(), StoreError> {
        Err(self.err())
    }
}

/// Test double: a broker whose every call fails with `BrokerError::Unavailable`
/// (or `Closed` when `permanent`).
struct DownBroker {
    permanent: bool,
}

impl DownBroker {
    fn err(&self) -> BrokerError {
        if self.permanent {
            BrokerError::Closed
        } else {
            BrokerError::Unavailable("connection refused".into())
        }
    }
}

#[async_trait]
impl Broker for DownBroker {
    async fn publish(&self, _: &str, _: &[Message]) -> Result<(), BrokerError> {
        Err(self.err())
    }
    async fn subscribe(&self, _: &str, _: usize) -> Result<Box<dyn Subscription>, BrokerError> {
        Err(self.err())
    }
    async fn stats(&self, _: &str) -> Result<QueueStats, BrokerError> {
        Err(self.err())
    }
    async fn dead_letters(&self, _: &str, _: usize) -> Result<Vec<DeadLetter>, BrokerError> {
        Err(self.err())
    }
    async fn redrive(&self, _: &str, _: &str) -> Result<bool, BrokerError> {
        Err(self.err())
    }
    async fn check(&self) -> Result<(), BrokerError> {
        Err(self.err())
    }
}

fn app(permanent: bool) -> Router {
    router(ReadApi {
        store: Arc::new(DownStore { permanent }),
        broker: Arc::new(DownBroker { permanent }),
        queues: vec!["audit_events".into(), "audit_alerts".into()],
    })
}

async fn call(app: &Router, method: Method, uri: &str) -> (StatusCode, Option<String>, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, retry_after, serde_json::from_slice(&bytes).unwrap())
}

const ID: &str = "0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c11";

fn store_routes() -> Vec<(Method, String)> {
    vec![
        (Method::GET, "/v1/events".into()),
        (Method::GET, "/v1/events?severity=info&limit=5".into()),
        (Method::GET, format!("/v1/events/{ID}")),
        (Method::GET, "/v1/alerts".into()),
        (Method::GET, format!("/v1/alerts/{ID}")),
        (Method::GET, "/alerts".into()),
        (Method::GET, "/alerts?limit=5&offset=5".into()),
        (Method::GET, format!("/alerts/{ID}")),
    ]
}

fn broker_routes() -> Vec<(Method, String)> {
    vec![
        (Method::GET, "/v1/dead-letters".into()),
        (Method::GET, "/v1/dead-letters?queue=audit_alerts".into()),
        (
            Method::POST,
            "/v1/dead-letters/audit_events/17/redrive".into(),
        ),
        (Method::GET, "/v1/queues".into()),
    ]
}

#[tokio::test]
async fn transient_failures_are_503_with_a_short_retry_after() {
    let app = app(false);
    for (routes, what) in [
        (store_routes(), "store unavailable"),
        (broker_routes(), "broker unavailable"),
    ] {
        for (method, uri) in routes {
            let (status, retry_after, body) = call(&app, method, &uri).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
            assert_eq!(retry_after.as_deref(), Some("5"), "{uri}");
            assert_eq!(body["error"], what, "{uri}");
            assert_eq!(body["transient"], true, "{uri}");
            // Internal details (paths, hosts) stay in the logs.
            assert!(!body.to_string().contains("locked"), "{uri}");
        }
    }
}

#[tokio::test]
async fn permanent_failures_are_503_with_a_long_retry_after() {
    let app = app(true);
    for (method, uri) in store_routes().into_iter().chain(broker_routes()) {
        let (status, retry_after, body) = call(&app, method, &uri).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(retry_after.as_deref(), Some("60"), "{uri}");
        assert_eq!(body["transient"], false, "{uri}");
    }
}

#[tokio::test]
async fn requests_rejected_before_reaching_the_store_do_not_503() {
    let app = app(false);
    let (status, _, body) = call(&app, Method::GET, "/v1/events/not-a-uuid").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "event not found");
    let (status, _, body) = call(&app, Method::GET, "/alerts/not-a-uuid").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "Alert not found");
    let (status, _, body) = call(&app, Method::GET, "/alerts?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "Limit must be a positive integer.");
    let (status, _, _) = call(&app, Method::GET, "/v1/alerts?limit=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, body) = call(&app, Method::POST, "/v1/dead-letters/other/1/redrive").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "unknown queue");
}
