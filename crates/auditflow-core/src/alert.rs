//! The alert, in the JSON format the earlier Python analysis service published.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::Severity;
use crate::time::serde_ts;

/// Namespace of deterministic alert ids (UUIDv5). Never change it: alert ids
/// computed by every version and every replica must agree.
pub const ALERT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_2b8e_4c3a_5e7f_9a0b_1c2d_3e4f_5a6b);

/// The deterministic id of the alert that `rule_id` raises for `event_id`.
///
/// A redelivered event therefore yields the same alert id, which every
/// downstream store and channel uses to drop the duplicate.
pub fn alert_id_for(rule_id: &str, event_id: Uuid) -> Uuid {
    let mut name = Vec::with_capacity(rule_id.len() + 37);
    name.extend_from_slice(rule_id.as_bytes());
    name.push(b'/');
    name.extend_from_slice(event_id.hyphenated().to_string().as_bytes());
    Uuid::new_v5(&ALERT_ID_NAMESPACE, &name)
}

/// Which rule raised the alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisRule {
    /// Stable rule id, e.g. `ANLY-SEC-001`.
    pub rule_id: String,
    /// Human name of the rule.
    pub rule_name: String,
    /// What the rule detects.
    pub rule_description: String,
}

/// Who triggered the alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggeredBy {
    /// `USER`, `SERVICE`, ...
    pub actor_type: String,
    /// The actor's id (the event's `user_id`).
    pub actor_id: String,
    /// Client address, or `N/A` when unknown (legacy convention).
    #[serde(default = "not_available")]
    pub client_ip: String,
}

fn not_available() -> String {
    "N/A".to_string()
}

/// What the alert is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpactedResource {
    /// `SERVER`, `FILE`, ...
    pub resource_type: String,
    /// The resource's id (host name, file path, ...).
    pub resource_id: String,
    /// The host the resource lives on.
    pub server_hostname: String,
}

/// Operator-facing context.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AlertMetadata {
    /// Free-form tags such as `brute-force`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Deployment environment name.
    #[serde(default)]
    pub environment: String,
    /// What to do about it.
    #[serde(default)]
    pub remediation_guidance: String,
    /// Link to the playbook.
    #[serde(default)]
    pub playbook_url: String,
}

/// A security alert raised by a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic id, see [`alert_id_for`].
    pub alert_id: Uuid,
    /// When the alert was raised (for replays: the triggering event's time).
    #[serde(with = "serde_ts")]
    pub timestamp: DateTime<Utc>,
    /// Short title.
    pub alert_name: String,
    /// Always `SECURITY` today.
    pub alert_type: String,
    /// Severity of the alert (not of the event).
    pub severity: Severity,
    /// One sentence on what happened.
    pub description: String,
    /// The service whose event triggered the alert.
    pub source_service_name: String,
    /// The rule that fired.
    pub analysis_rule: AnalysisRule,
    /// Who did it.
    pub triggered_by: TriggeredBy,
    /// What it was done to.
    pub impacted_resource: ImpactedResource,
    /// The triggering event's action (e.g. `LOGIN_FAILURE`).
    pub action_observed: String,
    /// The triggering event's id.
    pub correlation_id: Uuid,
    /// The whole triggering event as received.
    pub raw_event_data: Value,
    /// Operator-facing context.
    #[serde(default)]
    pub metadata: AlertMetadata,
    /// Fields AuditFlow does not know, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why alert JSON was rejected.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// Not JSON, or not the shape of an alert.
    #[error("invalid alert: {0}")]
    Json(#[from] serde_json::Error),
    /// A key or string at this path holds U+0000 (see [`crate::nul`]).
    #[error("invalid alert: field `{0}` {reason}", reason = crate::nul::NUL_REASON)]
    Nul(String),
    /// An indexed text field is longer than [`MAX_INDEXED_LEN`].
    #[error("invalid alert: field `{field}` is {len} bytes long; the limit is {MAX_INDEXED_LEN} (the stores index it)")]
    TooLong {
        /// The field's path.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}

/// Longest value of the alert fields the stores index (`rule_id`,
/// `actor_id`, `server_hostname`): the same limit as an event's text fields,
/// from which our own alerts take them. A B-tree entry of PostgreSQL holds
/// at most about 2.7 kB, and a longer value made every insert of its batch
/// fail (SQLSTATE 54000), so notify stopped on it; alerts from other
/// publishers are checked here instead and dead-lettered with the reason.
pub const MAX_INDEXED_LEN: usize = crate::event::MAX_FIELD_LEN;

impl Alert {
    /// Parses alert JSON (ours or the legacy analysis service's).
    pub fn from_slice(bytes: &[u8]) -> Result<Alert, AlertError> {
        let alert: Alert = serde_json::from_slice(bytes)?;
        for (field, value) in [
            ("analysis_rule.rule_id", &alert.analysis_rule.rule_id),
            ("triggered_by.actor_id", &alert.triggered_by.actor_id),
            (
                "impacted_resource.server_hostname",
                &alert.impacted_resource.server_hostname,
            ),
        ] {
            if value.len() > MAX_INDEXED_LEN {
                return Err(AlertError::TooLong {
                    field,
                    len: value.len(),
                });
            }
        }
        if crate::nul::may_hold_nul(bytes) {
            let whole: Map<String, Value> = serde_json::from_slice(bytes)?;
            if let Some(path) = crate::nul::nul_path(&whole, None) {
                return Err(AlertError::Nul(path));
            }
        }
        Ok(alert)
    }

    /// Serializes to JSON bytes.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// The client address as the legacy alerts table stores it: `N/A` becomes `None`.
    pub fn client_ip(&self) -> Option<&str> {
        match self.triggered_by.client_ip.as_str() {
            "" | "N/A" => None,
            ip => Some(ip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_ids_are_deterministic_and_rule_specific() {
        let event = Uuid::parse_str("0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c11").unwrap();
        assert_eq!(
            alert_id_for("ANLY-SEC-001", event),
            alert_id_for("ANLY-SEC-001", event)
        );
        assert_ne!(
            alert_id_for("ANLY-SEC-001", event),
            alert_id_for("ANLY-SEC-002", event)
        );
        assert_eq!(alert_id_for("ANLY-SEC-001", event).get_version_num(), 5);
    }

    const FIXTURE: &[u8] =
        include_bytes!("../../auditflow-api/tests/fixtures/alert-failed-login-burst.json");

    #[test]
    fn an_indexed_field_over_the_limit_is_refused() {
        let mut value: Value = serde_json::from_slice(FIXTURE).unwrap();
        value["triggered_by"]["actor_id"] = Value::from("a".repeat(MAX_INDEXED_LEN));
        Alert::from_slice(&serde_json::to_vec(&value).unwrap()).expect("at the limit");
        value["triggered_by"]["actor_id"] = Value::from("a".repeat(MAX_INDEXED_LEN + 1));
        let err = Alert::from_slice(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(
            matches!(err, AlertError::TooLong { field: "triggered_by.actor_id", len } if len == MAX_INDEXED_LEN + 1),
            "{err}"
        );
    }

    #[test]
    fn an_alert_holding_a_nul_is_refused_with_its_path() {
        let mut value: Value = serde_json::from_slice(FIXTURE).unwrap();
        Alert::from_slice(&serde_json::to_vec(&value).unwrap()).expect("the fixture parses");
        value["raw_event_data"]["details"]["reason"] = Value::from("bad\u{0}");
        let err = Alert::from_slice(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        match &err {
            AlertError::Nul(path) => assert_eq!(path, "raw_event_data.details.reason"),
            other => panic!("expected a NUL refusal, got {other}"),
        }
        assert!(err.to_string().contains("U+0000"), "{err}");
        // A backslash followed by `u0000` is text.
        value["raw_event_data"]["details"]["reason"] = Value::from("C:\\u0000");
        Alert::from_slice(&serde_json::to_vec(&value).unwrap()).expect("literal text parses");
    }
}
