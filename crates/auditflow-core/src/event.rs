//! The audit event, in the flat JSON format of the earlier Python AuditFlow.
//!
//! Parsing goes through [`Event::from_slice`] (or [`EventSeed`], or
//! [`Event::from_value`]) rather than plain serde so that
//! a rejected event gets a reason a person can act on ("field `severity`: must
//! be one of INFO, WARNING, ERROR, CRITICAL"), and so that fields we do not
//! know are kept rather than dropped.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::time::{parse_timestamp, serde_ts};

mod parse;

pub use parse::EventSeed;
use parse::{Fields, Raw};
use serde::de::DeserializeSeed as _;

/// Longest accepted value of a top-level string field, in bytes.
pub const MAX_FIELD_LEN: usize = 1024;

/// Event severity. The wire form is upper case; parsing is case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// Routine activity.
    Info,
    /// Worth a look.
    Warning,
    /// Something failed.
    Error,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// All severities, lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

    /// The wire form (`INFO`, `WARNING`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Critical => "CRITICAL",
        }
    }

    /// Case-insensitive parse of the wire form.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id; assigned (UUIDv7) at ingest when the client sent none.
    pub event_id: Uuid,
    /// When the event happened, per its source (event time, not ingest time).
    #[serde(with = "serde_ts")]
    pub timestamp: DateTime<Utc>,
    /// The service that emitted the event.
    pub source_service: String,
    /// The host the event is about.
    pub server_hostname: String,
    /// `user_login`, `sudo_command`, `file_modified`, ...
    pub event_type: String,
    /// Severity as judged by the source.
    pub severity: Severity,
    /// The acting user.
    pub user_id: String,
    /// `SUCCESS`, `FAILURE`, `MODIFIED`, ...
    pub action_result: String,
    /// Type-specific details (free-form object).
    #[serde(default)]
    pub details: Map<String, Value>,
    /// Optional affected resource (events sent through the legacy HTTP API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Optional client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// Fields AuditFlow does not know, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why an event was rejected: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("field `{field}`: {reason}")]
pub struct EventError {
    /// The offending field (`$` for the whole item).
    pub field: String,
    /// What is wrong, in words.
    pub reason: String,
}

impl EventError {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        EventError {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// The result of parsing one item: the event, and whether its id was assigned here.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEvent {
    /// The validated event.
    pub event: Event,
    /// True when the input had no `event_id` and one was generated.
    pub id_assigned: bool,
}

impl Event {
    /// Validates a JSON value as an event. Missing `event_id` is assigned a UUIDv7.
    pub fn from_value(value: Value) -> Result<ParsedEvent, EventError> {
        let Value::Object(mut obj) = value else {
            return Err(EventError::new("$", "an event must be a JSON object"));
        };
        let mut fields = Fields::default();
        for name in KNOWN_FIELDS {
            if let (Some(value), Some(slot)) = (obj.shift_remove(name), fields.slot(name)) {
                *slot = Some(Raw::from(value));
            }
        }
        fields.validate(obj)
    }

    /// Parses and validates JSON bytes as one event, without building a
    /// `Value` for the whole object (see [`EventSeed`]).
    pub fn from_slice(bytes: &[u8]) -> Result<ParsedEvent, EventError> {
        let invalid = |e: serde_json::Error| EventError::new("$", format!("invalid JSON: {e}"));
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let parsed = EventSeed.deserialize(&mut de).map_err(invalid)?;
        de.end().map_err(invalid)?;
        parsed
    }

    /// Looks up a field by dotted path: top-level names (`user_id`, `severity`,
    /// unknown extras) or `details.a.b` for nested details. Non-string leaves
    /// are rendered as their JSON text (numbers, booleans).
    pub fn field(&self, path: &str) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        let direct = match path {
            "event_id" => return Some(Cow::Owned(self.event_id.to_string())),
            "timestamp" => return Some(Cow::Owned(crate::time::format_timestamp(&self.timestamp))),
            "severity" => Some(self.severity.as_str()),
            "source_service" => Some(self.source_service.as_str()),
            "server_hostname" => Some(self.server_hostname.as_str()),
            "event_type" => Some(self.event_type.as_str()),
            "user_id" => Some(self.user_id.as_str()),
            "action_result" => Some(self.action_result.as_str()),
            "resource" => self.resource.as_deref(),
            "client_ip" => self.client_ip.as_deref(),
            _ => None,
        };
        if let Some(s) = direct {
            return Some(Cow::Borrowed(s));
        }
        let mut parts = path.split('.');
        let first = parts.next()?;
        let mut current: &Value = if first == "details" {
            let key = parts.next()?;
            self.details.get(key)?
        } else {
            self.extra.get(first)?
        };
        for key in parts {
            current = current.get(key)?;
        }
        match current {
            Value::String(s) => Some(Cow::Borrowed(s.as_str())),
            Value::Null | Value::Object(_) | Value::Array(_) => None,
            other => Some(Cow::Owned(other.to_string())),
        }
    }

    /// The affected resource: `details.resource` (generator form) or top-level `resource` (HTTP form).
    pub fn effective_resource(&self) -> Option<&str> {
        self.details
            .get("resource")
            .and_then(Value::as_str)
            .or(self.resource.as_deref())
    }

    /// The client address: top-level `client_ip`, else `details.ip_address`.
    pub fn effective_client_ip(&self) -> Option<&str> {
        self.client_ip
            .as_deref()
            .or_else(|| self.details.get("ip_address").and_then(Value::as_str))
    }

    /// Serializes to JSON bytes (never fails for this type).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialization of an Event cannot fail: all keys are strings and all
        // values are plain JSON; fall back to an empty object just in case.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// Top-level fields with a meaning of their own; every other one is kept in
/// [`Event::extra`].
const KNOWN_FIELDS: [&str; 11] = [
    "event_id",
    "timestamp",
    "severity",
    "source_service",
    "server_hostname",
    "event_type",
    "user_id",
    "action_result",
    "details",
    "resource",
    "client_ip",
];

impl Fields {
    /// Checks the fields, in a fixed order so that the first problem
    /// reported does not depend on the order of the input.
    fn validate(self, extra: Map<String, Value>) -> Result<ParsedEvent, EventError> {
        let (event_id, id_assigned) = match self.event_id {
            None | Some(Raw::Null) => (Uuid::now_v7(), true),
            Some(Raw::Str(s)) => (
                Uuid::try_parse(s.trim()).map_err(|_| {
                    EventError::new("event_id", format!("'{}' is not a UUID", truncate(&s)))
                })?,
                false,
            ),
            Some(_) => return Err(EventError::new("event_id", "must be a UUID string")),
        };
        let timestamp = match self.timestamp {
            Some(Raw::Str(s)) => {
                parse_timestamp(&s).map_err(|e| EventError::new("timestamp", e.to_string()))?
            }
            None | Some(Raw::Null) => return Err(EventError::new("timestamp", "is required")),
            Some(_) => return Err(EventError::new("timestamp", "must be an RFC 3339 string")),
        };
        let severity = match self.severity {
            Some(Raw::Str(s)) => Severity::parse(&s).ok_or_else(|| {
                EventError::new(
                    "severity",
                    format!(
                        "'{}' is not one of INFO, WARNING, ERROR, CRITICAL",
                        truncate(&s)
                    ),
                )
            })?,
            None | Some(Raw::Null) => return Err(EventError::new("severity", "is required")),
            Some(_) => return Err(EventError::new("severity", "must be a string")),
        };
        let required = [
            (self.source_service, "source_service"),
            (self.server_hostname, "server_hostname"),
            (self.event_type, "event_type"),
            (self.user_id, "user_id"),
            (self.action_result, "action_result"),
        ];
        let mut strings: [String; 5] = Default::default();
        for (slot, (raw, field)) in strings.iter_mut().zip(required) {
            *slot =
                take_string(raw, field)?.ok_or_else(|| EventError::new(field, "is required"))?;
            if slot.is_empty() {
                return Err(EventError::new(field, "must not be empty"));
            }
        }
        let [source_service, server_hostname, event_type, user_id, action_result] = strings;
        let details = match self.details {
            None | Some(Raw::Null) => Map::new(),
            Some(Raw::Object(map)) => map,
            Some(_) => return Err(EventError::new("details", "must be a JSON object")),
        };
        let resource = take_string(self.resource, "resource")?;
        let client_ip = take_string(self.client_ip, "client_ip")?;
        let nul = crate::nul::nul_path(&details, Some("details"))
            .or_else(|| crate::nul::nul_path(&extra, None));
        if let Some(path) = nul {
            return Err(EventError::new(&path, crate::nul::NUL_REASON));
        }
        Ok(ParsedEvent {
            event: Event {
                event_id,
                timestamp,
                source_service,
                server_hostname,
                event_type,
                severity,
                user_id,
                action_result,
                details,
                resource,
                client_ip,
                extra,
            },
            id_assigned,
        })
    }
}

fn take_string(raw: Option<Raw>, field: &str) -> Result<Option<String>, EventError> {
    match raw {
        None | Some(Raw::Null) => Ok(None),
        Some(Raw::Str(s)) if s.len() > MAX_FIELD_LEN => Err(EventError::new(
            field,
            format!("is {} bytes long; the limit is {MAX_FIELD_LEN}", s.len()),
        )),
        Some(Raw::Str(s)) if s.contains('\0') => {
            Err(EventError::new(field, crate::nul::NUL_REASON))
        }
        Some(Raw::Str(s)) => Ok(Some(s)),
        Some(_) => Err(EventError::new(field, "must be a string")),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn login_failure() -> Value {
        json!({
            "event_id": "0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c11",
            "timestamp": "2026-11-22T21:46:30.165174Z",
            "source_service": "audit-event-generator",
            "server_hostname": "prod-web-01",
            "event_type": "user_login",
            "severity": "WARNING",
            "user_id": "attacker_bob",
            "action_result": "FAILURE",
            "details": {"reason": "Incorrect password", "ip_address": "192.168.1.150", "protocol": "ssh"}
        })
    }

    #[test]
    fn parses_the_legacy_event_and_round_trips() {
        let parsed = Event::from_value(login_failure()).unwrap();
        assert!(!parsed.id_assigned);
        let event = parsed.event;
        assert_eq!(event.severity, Severity::Warning);
        assert_eq!(event.field("details.protocol").as_deref(), Some("ssh"));
        assert_eq!(event.effective_client_ip(), Some("192.168.1.150"));
        let back: Value = serde_json::to_value(&event).unwrap();
        assert_eq!(back, login_failure());
    }

    #[test]
    fn keeps_unknown_fields_and_assigns_missing_ids() {
        let mut value = login_failure();
        let obj = value.as_object_mut().unwrap();
        obj.remove("event_id");
        obj.insert("tenant".into(), json!({"name": "acme"}));
        let parsed = Event::from_value(value).unwrap();
        assert!(parsed.id_assigned);
        assert_eq!(parsed.event.event_id.get_version_num(), 7);
        assert_eq!(parsed.event.field("tenant.name").as_deref(), Some("acme"));
        let back = serde_json::to_value(&parsed.event).unwrap();
        assert_eq!(back["tenant"], json!({"name": "acme"}));
    }

    #[test]
    fn rejections_name_the_field() {
        let cases = [
            ("event_id", json!("not-a-uuid")),
            ("timestamp", json!("soon")),
            ("severity", json!("LOUD")),
            ("user_id", json!(42)),
            ("details", json!("text")),
        ];
        for (field, bad) in cases {
            let mut value = login_failure();
            value[field] = bad;
            let err = Event::from_value(value).unwrap_err();
            assert_eq!(err.field, field);
        }
        let mut missing = login_failure();
        missing.as_object_mut().unwrap().remove("event_type");
        assert_eq!(Event::from_value(missing).unwrap_err().field, "event_type");
        assert_eq!(Event::from_value(json!([1])).unwrap_err().field, "$");
        assert_eq!(Event::from_slice(b"{oops").unwrap_err().field, "$");
    }

    #[test]
    fn a_nul_anywhere_is_refused_with_its_path() {
        let cases = [
            ("user_id", json!("alice\u{0}"), "user_id"),
            ("resource", json!("/etc/\u{0}passwd"), "resource"),
            ("client_ip", json!("\u{0}"), "client_ip"),
            ("details", json!({"reason": "bad\u{0}"}), "details.reason"),
            (
                "details",
                json!({"a": [1, {"b\u{0}": 2}]}),
                "details.a[1].b\\u0000",
            ),
            ("custom", json!({"inner": "\u{0}"}), "custom.inner"),
        ];
        for (field, bad, path) in cases {
            let mut value = login_failure();
            value[field] = bad;
            for err in [
                Event::from_slice(&serde_json::to_vec(&value).unwrap()).unwrap_err(),
                Event::from_value(value).unwrap_err(),
            ] {
                assert_eq!(err.field, path);
                assert_eq!(err.reason, crate::nul::NUL_REASON);
            }
        }
        // A backslash followed by `u0000` is text, and kept.
        let mut literal = login_failure();
        literal["details"] = json!({"path": "C:\\u0000"});
        let parsed = Event::from_slice(&serde_json::to_vec(&literal).unwrap()).unwrap();
        assert_eq!(parsed.event.details["path"], "C:\\u0000");
    }

    /// Parses `value` both ways; they must agree exactly (ids assigned
    /// here are random, so only compare events that carry one).
    fn both_ways(value: &Value) -> Result<ParsedEvent, EventError> {
        let from_value = Event::from_value(value.clone());
        let from_slice = Event::from_slice(&serde_json::to_vec(value).unwrap());
        match (&from_value, &from_slice) {
            (Ok(a), Ok(b)) if a.id_assigned => assert_eq!(
                (&a.event.user_id, &a.event.extra, &a.event.details),
                (&b.event.user_id, &b.event.extra, &b.event.details)
            ),
            _ => assert_eq!(from_value, from_slice, "for {value}"),
        }
        from_slice
    }

    #[test]
    fn parsing_from_text_and_from_a_value_agree() {
        let mut cases = vec![
            login_failure(),
            json!(null),
            json!("text"),
            json!([{}]),
            json!({}),
        ];
        for (field, bad) in [
            ("event_id", json!("not-a-uuid")),
            ("event_id", json!(7)),
            ("event_id", json!(null)),
            ("timestamp", json!("soon")),
            ("timestamp", json!({"at": 1})),
            ("severity", json!("LOUD")),
            ("severity", json!(["INFO"])),
            ("user_id", json!(42)),
            ("user_id", json!("")),
            ("user_id", json!("u".repeat(MAX_FIELD_LEN + 1))),
            ("details", json!("text")),
            ("details", json!(null)),
            ("resource", json!(true)),
            ("client_ip", json!("10.0.0.9")),
            ("custom", json!({"nested": [1, 2, {"x": null}]})),
            ("custom_\u{e9}", json!("v")),
            ("user_id", json!("u\u{0}")),
            ("details", json!({"reason": ["x", "\u{0}"]})),
            ("custom", json!("\u{0}")),
        ] {
            let mut value = login_failure();
            value[field] = bad;
            cases.push(value);
        }
        // Two problems at once: the same one wins both ways.
        let mut two = login_failure();
        two["severity"] = json!(1);
        two["event_id"] = json!("x");
        cases.push(two);
        let mut missing = login_failure();
        missing.as_object_mut().unwrap().remove("event_id");
        missing.as_object_mut().unwrap().remove("source_service");
        cases.push(missing);
        for case in &cases {
            both_ways(case).ok();
        }
        let mut unknown = login_failure();
        unknown["z_first"] = json!(1);
        unknown["a_second"] = json!(2);
        let parsed = both_ways(&unknown).unwrap();
        let keys: Vec<&str> = parsed.event.extra.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["z_first", "a_second"],
            "unknown fields keep their order"
        );
    }

    #[test]
    fn text_parsing_keeps_the_last_of_a_repeated_field_and_refuses_trailing_text() {
        let text = br#"{"event_id":"0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c11","timestamp":"2026-11-22T21:46:30Z",
            "source_service":"s","server_hostname":"h","event_type":"user_login","severity":"INFO",
            "user_id":"first","user_id":"second","action_result":"SUCCESS"}"#;
        assert_eq!(Event::from_slice(text).unwrap().event.user_id, "second");
        let mut trailing = text.to_vec();
        trailing.extend_from_slice(b" {}");
        assert_eq!(Event::from_slice(&trailing).unwrap_err().field, "$");
    }

    #[test]
    fn resource_comes_from_details_or_top_level() {
        let mut value = login_failure();
        value["details"] = json!({"resource": "/etc/passwd"});
        assert_eq!(
            Event::from_value(value).unwrap().event.effective_resource(),
            Some("/etc/passwd")
        );
        let mut value = login_failure();
        value["resource"] = json!("/etc/shadow");
        assert_eq!(
            Event::from_value(value).unwrap().event.effective_resource(),
            Some("/etc/shadow")
        );
    }
}
