//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use auditflow_core::alert::{Alert, AlertMetadata, AnalysisRule, ImpactedResource, TriggeredBy};
use auditflow_core::broker::{Delivery, Message, Subscription};
use auditflow_core::event::{Event, Severity};
use auditflow_embedded::{Embedded, EmbeddedOptions, SyncMode};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{json, Map};
use uuid::Uuid;

/// Opens `dir` with test options (no fsync unless asked: tests that need
/// durability across a real crash use `SyncMode::Full` explicitly).
pub fn open(dir: &Path) -> Embedded {
    open_with(dir, EmbeddedOptions::default())
}

pub fn open_with(dir: &Path, opts: EmbeddedOptions) -> Embedded {
    Embedded::open(dir, opts).expect("open data directory")
}

pub fn fast() -> EmbeddedOptions {
    EmbeddedOptions {
        synchronous: SyncMode::Off,
        ..EmbeddedOptions::default()
    }
}

pub fn msg(id: &str) -> Message {
    let mut headers = auditflow_core::broker::Headers::new();
    headers.insert("x-correlation-id".to_string(), format!("corr-{id}"));
    Message {
        message_id: id.to_string(),
        payload: Bytes::from(format!("{{\"id\":\"{id}\"}}")),
        headers,
    }
}

pub fn ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| d.message.message_id.clone())
        .collect()
}

pub fn tags(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.tag).collect()
}

/// `next_batch` that must complete (a bound, not a sleep: fails the test
/// instead of hanging if nothing is delivered).
pub async fn next(sub: &mut Box<dyn Subscription>, max: usize) -> Vec<Delivery> {
    tokio::time::timeout(Duration::from_secs(10), sub.next_batch(max))
        .await
        .expect("a delivery within 10 s")
        .expect("next_batch")
}

/// Asserts that `next_batch` has nothing to deliver (it is still pending
/// after every already-committed message could have been handed out).
pub async fn assert_nothing(sub: &mut Box<dyn Subscription>) {
    let r = tokio::time::timeout(Duration::from_millis(100), sub.next_batch(100)).await;
    assert!(
        r.is_err(),
        "expected no delivery, got {:?}",
        r.map(|b| b.map(|d| ids(&d)))
    );
}

pub fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid time")
}

pub fn event(
    n: u128,
    secs: i64,
    event_type: &str,
    user: &str,
    host: &str,
    severity: Severity,
) -> Event {
    let mut details = Map::new();
    details.insert("reason".into(), json!(format!("detail-{n}")));
    Event {
        event_id: Uuid::from_u128(n + 1),
        timestamp: at(secs),
        source_service: "test".into(),
        server_hostname: host.into(),
        event_type: event_type.into(),
        severity,
        user_id: user.into(),
        action_result: "FAILURE".into(),
        details,
        resource: if n.is_multiple_of(2) {
            Some(format!("/srv/file-{n}"))
        } else {
            None
        },
        client_ip: None,
        extra: Map::new(),
    }
}

pub fn alert(n: u128, secs: i64, rule: &str, user: &str, client_ip: &str) -> Alert {
    Alert {
        alert_id: Uuid::from_u128(1000 + n),
        timestamp: at(secs),
        alert_name: format!("alert {n}"),
        alert_type: "SECURITY".into(),
        severity: Severity::Critical,
        description: "too many failures".into(),
        source_service_name: "auth".into(),
        analysis_rule: AnalysisRule {
            rule_id: rule.into(),
            rule_name: format!("rule {rule}"),
            rule_description: "desc".into(),
        },
        triggered_by: TriggeredBy {
            actor_type: "USER".into(),
            actor_id: user.into(),
            client_ip: client_ip.into(),
        },
        impacted_resource: ImpactedResource {
            resource_type: "SERVER".into(),
            resource_id: "prod-web-01".into(),
            server_hostname: "prod-web-01".into(),
        },
        action_observed: "LOGIN_FAILURE".into(),
        correlation_id: Uuid::from_u128(n + 1),
        raw_event_data: json!({"n": n as u64}),
        metadata: AlertMetadata::default(),
        extra: Map::new(),
    }
}
