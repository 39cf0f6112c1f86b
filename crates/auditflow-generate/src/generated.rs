//! [`GeneratedEvent`]: one valid generated event, typed.
//!
//! The factory used to build each event as a `serde_json::Value`: a map of
//! nine hashed keys plus one for `details`, about a dozen allocations, all
//! serialized and freed again a moment later. Profiled at full speed
//! (`perf record` on `auditflow generate --rate 0`, 2026-12-07), building,
//! serializing and dropping those maps was well over half of the
//! generator's CPU, on the same two cores as the system it loads. A typed
//! event serializes straight from its fields, to the same JSON text (field
//! order included) as the earlier Python generator sends.

use std::fmt;
use std::net::Ipv4Addr;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

use crate::factory::EventKind;

/// A valid event in the generator's flat format (see
/// `/work/shared/compat/event-*.json`); [`serde::Serialize`] gives its
/// wire JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GeneratedEvent {
    /// A random (version 4) UUID, drawn from the factory's seeded RNG.
    #[serde(serialize_with = "display")]
    pub event_id: Uuid,
    /// Event time, written as [`crate::factory::format_timestamp`] does.
    #[serde(serialize_with = "timestamp")]
    pub timestamp: DateTime<Utc>,
    /// Always [`crate::factory::SOURCE_SERVICE`].
    pub source_service: &'static str,
    /// One of [`crate::factory::HOSTNAMES`].
    pub server_hostname: &'static str,
    /// The event type.
    pub event_type: EventKind,
    /// `INFO`, `WARNING`, `ERROR` or `CRITICAL`.
    pub severity: &'static str,
    /// One of [`crate::factory::USERS`].
    pub user_id: &'static str,
    /// `SUCCESS`, `FAILURE`, `MODIFIED`, `STARTED`, `STOPPED` or `CREATED`.
    pub action_result: &'static str,
    /// Type-specific details.
    pub details: Details,
}

impl GeneratedEvent {
    /// The event as a JSON value (for tests and for the malformed items
    /// derived from valid ones).
    pub fn to_value(&self) -> Value {
        // Only strings, integers, arrays and maps with string keys: this
        // cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Appends the event's JSON text to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail, and neither can serializing the
        // fields (see `to_value`).
        let _ = serde_json::to_writer(out, self);
    }
}

/// The `details` object of a [`GeneratedEvent`], one shape per kind of
/// event; fields serialize in the order listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Details {
    /// A failed `user_login`.
    LoginFailure {
        /// Why it failed.
        reason: &'static str,
        /// Client address.
        ip_address: Ipv4Addr,
        /// `ssh`, `sftp` or `https`.
        protocol: &'static str,
    },
    /// A successful `user_login`.
    LoginSuccess {
        /// Client address.
        ip_address: Ipv4Addr,
        /// `ssh`, `sftp` or `https`.
        protocol: &'static str,
    },
    /// A refused `sudo_command`.
    SudoRefused {
        /// The command line.
        command: &'static str,
        /// Always `root`.
        run_as: &'static str,
        /// Why sudo refused.
        reason: &'static str,
    },
    /// A `sudo_command` that ran.
    Sudo {
        /// The command line.
        command: &'static str,
        /// Always `root`.
        run_as: &'static str,
    },
    /// A `file_modified`.
    FileModified {
        /// The file's path.
        resource: &'static str,
        /// Checksum before, 8 hex digits.
        #[serde(serialize_with = "hex8")]
        old_checksum: u32,
        /// Checksum after, 8 hex digits.
        #[serde(serialize_with = "hex8")]
        new_checksum: u32,
        /// Size difference in bytes.
        size_change_bytes: i64,
    },
    /// A `service_status_change`.
    ServiceStatus {
        /// The service.
        service_name: &'static str,
    },
    /// A `user_account_management` creation.
    AccountCreated {
        /// The new account.
        target_user: &'static str,
        /// Its groups.
        groups: &'static [&'static str],
    },
}

/// Writes a timestamp as `2026-11-22T21:46:30.165174Z`: RFC 3339, always
/// six fractional digits, `Z`. Formats without parsing a pattern each time
/// (chrono's `format` re-parses its `strftime` string on every call).
pub(crate) struct Rfc3339Micros<'a>(pub &'a DateTime<Utc>);

impl fmt::Display for Rfc3339Micros<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ts = self.0;
        // chrono keeps a leap second as nanoseconds >= 1e9 of second 59.
        let nanos = ts.nanosecond();
        let (second, micros) = if nanos >= 1_000_000_000 {
            (ts.second() + 1, (nanos - 1_000_000_000) / 1_000)
        } else {
            (ts.second(), nanos / 1_000)
        };
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            ts.year(),
            ts.month(),
            ts.day(),
            ts.hour(),
            ts.minute(),
            second,
            micros
        )
    }
}

fn timestamp<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Rfc3339Micros(ts))
}

fn display<S: Serializer, T: fmt::Display>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn hex8<S: Serializer>(value: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{value:08x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_chronos_strftime_form() {
        let times = [
            "2026-11-22T21:46:30.165174Z",
            "2026-11-22T21:46:30Z",
            "1999-01-02T03:04:05.000001Z",
            "2026-12-31T23:59:59.999999Z",
        ];
        for text in times {
            let ts = DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .expect("valid");
            assert_eq!(
                Rfc3339Micros(&ts).to_string(),
                ts.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
            );
        }
    }

    #[test]
    fn serializes_in_the_generators_field_order_and_forms() {
        let event = GeneratedEvent {
            event_id: Uuid::from_u128(0x6a1f0c55_1c1e_4c1b_8f55_0d1f3b7c9e02),
            timestamp: DateTime::parse_from_rfc3339("2026-11-22T21:46:31Z")
                .map(|t| t.with_timezone(&Utc))
                .expect("valid"),
            source_service: "audit-event-generator",
            server_hostname: "prod-db-02",
            event_type: EventKind::FileModified,
            severity: "CRITICAL",
            user_id: "devops_admin",
            action_result: "MODIFIED",
            details: Details::FileModified {
                resource: "/etc/passwd",
                old_checksum: 0xa1b2c3d4,
                new_checksum: 0x0000f6a7,
                size_change_bytes: -120,
            },
        };
        let mut text = Vec::new();
        event.write_json(&mut text);
        assert_eq!(
            String::from_utf8(text).expect("utf-8"),
            concat!(
                r#"{"event_id":"6a1f0c55-1c1e-4c1b-8f55-0d1f3b7c9e02","#,
                r#""timestamp":"2026-11-22T21:46:31.000000Z","#,
                r#""source_service":"audit-event-generator","server_hostname":"prod-db-02","#,
                r#""event_type":"file_modified","severity":"CRITICAL","user_id":"devops_admin","#,
                r#""action_result":"MODIFIED","details":{"resource":"/etc/passwd","#,
                r#""old_checksum":"a1b2c3d4","new_checksum":"0000f6a7","size_change_bytes":-120}}"#
            )
        );
        assert_eq!(event.to_value()["details"]["new_checksum"], "0000f6a7");
        let login = Details::LoginSuccess {
            ip_address: Ipv4Addr::new(10, 0, 3, 7),
            protocol: "ssh",
        };
        assert_eq!(
            serde_json::to_string(&login).expect("serializes"),
            r#"{"ip_address":"10.0.3.7","protocol":"ssh"}"#
        );
    }
}
