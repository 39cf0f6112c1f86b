//! Timestamps in the formats AuditFlow accepts and the one it writes.
//!
//! The earlier Python AuditFlow wrote `datetime.isoformat() + "Z"`, which for
//! an aware datetime gives `2026-11-22T21:46:29+00:00Z`: an offset *and* a `Z`.
//! We accept that quirk (and naive timestamps, read as UTC) so that events and
//! alerts from mixed deployments parse, but we always write RFC 3339 in UTC.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Why a timestamp string was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{input}' is not an RFC 3339 timestamp (e.g. 2026-11-22T21:46:29Z)")]
pub struct TimestampError {
    /// The rejected input, truncated to 64 characters.
    pub input: String,
}

/// Parses RFC 3339, the legacy `+00:00Z` form, or a naive ISO 8601 date-time (taken as UTC).
pub fn parse_timestamp(input: &str) -> Result<DateTime<Utc>, TimestampError> {
    let trimmed = input.trim();
    if let Ok(ts) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(ts.with_timezone(&Utc));
    }
    // Legacy `...+00:00Z`: drop the redundant trailing Z and try again.
    if let Some(without_z) = trimmed
        .strip_suffix('Z')
        .or_else(|| trimmed.strip_suffix('z'))
    {
        if let Ok(ts) = DateTime::parse_from_rfc3339(without_z) {
            return Ok(ts.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(trimmed, format) {
            return Ok(naive.and_utc());
        }
    }
    // The legacy notification API renders `YYYY-MM-DD HH:MM:SS+00:00`.
    if let Ok(ts) = DateTime::parse_from_str(trimmed, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Ok(ts.with_timezone(&Utc));
    }
    Err(TimestampError {
        input: input.chars().take(64).collect(),
    })
}

/// Formats as RFC 3339 in UTC with microsecond precision and a `Z` suffix.
pub fn format_timestamp(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Formats as the legacy notification API did: `YYYY-MM-DD HH:MM:SS[.ffffff]+00:00`.
pub fn format_legacy_timestamp(ts: &DateTime<Utc>) -> String {
    let micros = ts.timestamp_subsec_micros();
    if micros == 0 {
        ts.format("%Y-%m-%d %H:%M:%S+00:00").to_string()
    } else {
        format!("{}.{:06}+00:00", ts.format("%Y-%m-%d %H:%M:%S"), micros)
    }
}

/// Serde adapter: deserialize with [`parse_timestamp`], serialize with [`format_timestamp`].
pub mod serde_ts {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes with [`format_timestamp`].
    pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_timestamp(ts))
    }

    /// Deserializes with [`parse_timestamp`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        parse_timestamp(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc3339_legacy_and_naive_forms() {
        let expected = parse_timestamp("2026-11-22T21:46:29Z").unwrap();
        for input in [
            "2026-11-22T21:46:29+00:00",
            "2026-11-22T21:46:29+00:00Z",
            "2026-11-22T22:46:29+01:00",
            "2026-11-22T21:46:29",
            "2026-11-22 21:46:29",
            "2026-11-22 21:46:29+00:00",
        ] {
            assert_eq!(parse_timestamp(input).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn rejects_garbage_with_the_input_in_the_message() {
        let err = parse_timestamp("yesterday").unwrap_err();
        assert!(err.to_string().contains("yesterday"));
        assert!(parse_timestamp("2026-13-40T00:00:00Z").is_err());
    }

    #[test]
    fn formats_round_trip_with_microseconds() {
        let ts = parse_timestamp("2026-11-22T21:46:30.165174Z").unwrap();
        assert_eq!(format_timestamp(&ts), "2026-11-22T21:46:30.165174Z");
        assert_eq!(
            format_legacy_timestamp(&ts),
            "2026-11-22 21:46:30.165174+00:00"
        );
        let whole = parse_timestamp("2026-11-22T21:46:29Z").unwrap();
        assert_eq!(format_legacy_timestamp(&whole), "2026-11-22 21:46:29+00:00");
    }
}
