//! Helpers shared by the integration tests.
#![allow(dead_code)]

use auditflow_core::Event;
use auditflow_rules::AlertContext;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

/// Base event time used by the tests: 2027-01-15T08:00:00Z.
pub fn base_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid time")
}

/// `base_time() + micros`.
pub fn at_micros(micros: i64) -> DateTime<Utc> {
    base_time() + chrono::Duration::microseconds(micros)
}

pub fn ctx() -> AlertContext {
    AlertContext {
        environment: "TEST".into(),
        raised_at: base_time(),
    }
}

pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x1000_0000_0000_0000_0000_0000_0000_0000 + n)
}

/// Parses an event from JSON (panics on invalid test input).
pub fn event(value: Value) -> Event {
    Event::from_value(value).expect("valid test event").event
}

/// A failed login of `user` on `host` at `base_time() + micros`.
pub fn failed_login(n: u128, user: &str, host: &str, micros: i64) -> Event {
    let mut e = event(json!({
        "event_id": id(n).to_string(),
        "timestamp": "2027-01-15T08:00:00Z",
        "source_service": "audit-event-generator",
        "server_hostname": host,
        "event_type": "user_login",
        "severity": "WARNING",
        "user_id": user,
        "action_result": "FAILURE",
        "details": {"reason": "Incorrect password", "ip_address": "192.168.1.150", "protocol": "ssh"}
    }));
    e.timestamp = at_micros(micros);
    e
}

/// A `file_modified` event; `resource` goes in `details.resource` when
/// `in_details`, else top-level.
pub fn file_modified(n: u128, path: &str, in_details: bool) -> Event {
    let mut v = json!({
        "event_id": id(n).to_string(),
        "timestamp": "2027-01-15T08:00:00Z",
        "source_service": "audit-event-generator",
        "server_hostname": "prod-db-02",
        "event_type": "file_modified",
        "severity": "CRITICAL",
        "user_id": "devops_admin",
        "action_result": "MODIFIED",
        "details": {"old_checksum": "a1b2c3d4", "new_checksum": "e5f6a7b8"}
    });
    if in_details {
        v["details"]["resource"] = json!(path);
    } else {
        v["resource"] = json!(path);
    }
    event(v)
}
