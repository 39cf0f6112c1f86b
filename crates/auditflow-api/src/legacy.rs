//! The earlier Python notification API, reproduced exactly:
//! `GET /alerts?limit=&offset=` and `GET /alerts/{alert_id}`.
//!
//! Rows have the columns of its `alerts` table, in the same order, with
//! timestamps rendered as `YYYY-MM-DD HH:MM:SS[.ffffff]+00:00` and a `client_ip`
//! of `N/A` as null. Defaults are `limit=100` and `offset=0` (the Flask
//! service's defaults); `limit` and `offset` are parsed like Python's `int()`
//! (surrounding whitespace, a sign and digit-separating underscores accepted),
//! and the legacy error messages are returned verbatim. A limit above the
//! store's page cap ([`MAX_PAGE`]) is clamped to it rather than rejected,
//! since the legacy API had no such error message. Unknown parameters are
//! ignored and, for a repeated parameter, the first value counts (as Flask's
//! `request.args.get`).

use auditflow_core::store::{StoredAlert, MAX_PAGE};
use auditflow_core::time::format_legacy_timestamp;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::params::ApiQuery;
use crate::{parse_id, AppState};

/// `limit` when the client sends none.
pub const LEGACY_DEFAULT_LIMIT: u32 = 100;

/// The row the legacy API returns for one alert, keys in the legacy order.
pub fn legacy_alert_row(stored: &StoredAlert) -> Value {
    let alert = &stored.alert;
    let mut row = Map::with_capacity(23);
    let mut put = |key: &str, value: Value| {
        row.insert(key.to_string(), value);
    };
    put("alert_id", alert.alert_id.hyphenated().to_string().into());
    put(
        "correlation_id",
        alert.correlation_id.hyphenated().to_string().into(),
    );
    put(
        "timestamp",
        format_legacy_timestamp(&alert.timestamp).into(),
    );
    put(
        "received_at",
        format_legacy_timestamp(&stored.received_at).into(),
    );
    put("alert_name", alert.alert_name.clone().into());
    put("alert_type", alert.alert_type.clone().into());
    put("severity", alert.severity.as_str().into());
    put("description", alert.description.clone().into());
    put(
        "source_service_name",
        alert.source_service_name.clone().into(),
    );
    put("rule_id", alert.analysis_rule.rule_id.clone().into());
    put("rule_name", alert.analysis_rule.rule_name.clone().into());
    put("actor_type", alert.triggered_by.actor_type.clone().into());
    put("actor_id", alert.triggered_by.actor_id.clone().into());
    put(
        "client_ip",
        alert.client_ip().map_or(Value::Null, |ip| ip.into()),
    );
    put(
        "resource_type",
        alert.impacted_resource.resource_type.clone().into(),
    );
    put(
        "resource_id",
        alert.impacted_resource.resource_id.clone().into(),
    );
    put(
        "server_hostname",
        alert.impacted_resource.server_hostname.clone().into(),
    );
    put("action_observed", alert.action_observed.clone().into());
    put("analysis_rule_details", to_json(&alert.analysis_rule));
    put("triggered_by_details", to_json(&alert.triggered_by));
    put(
        "impacted_resource_details",
        to_json(&alert.impacted_resource),
    );
    put("metadata", to_json(&alert.metadata));
    put("raw_event_data", alert.raw_event_data.clone());
    Value::Object(row)
}

fn to_json<T: Serialize>(value: &T) -> Value {
    // These are plain structs of strings: serialization cannot fail.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Parses like Python's `int(str)` for ASCII input: surrounding whitespace,
/// an optional sign, digits with single `_` between them. Values beyond
/// `i64` saturate (Python's ints are unbounded). `None` where Python raises
/// `ValueError`.
pub fn python_int(input: &str) -> Option<i64> {
    let trimmed = input.trim();
    let (negative, digits) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let bytes = digits.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.first().is_some_and(u8::is_ascii_digit)
        && bytes.last().is_some_and(u8::is_ascii_digit)
        && bytes.iter().all(|b| b.is_ascii_digit() || *b == b'_')
        && !digits.contains("__");
    if !valid {
        return None;
    }
    let magnitude = bytes
        .iter()
        .filter(|b| b.is_ascii_digit())
        .fold(0i64, |acc, b| {
            acc.saturating_mul(10).saturating_add(i64::from(b - b'0'))
        });
    Some(if negative { -magnitude } else { magnitude })
}

/// Validates the legacy `limit` and `offset` with the legacy messages.
/// Returns `(limit clamped to MAX_PAGE, offset)`.
pub fn legacy_page(limit: Option<&str>, offset: Option<&str>) -> Result<(u32, u64), ApiError> {
    let bad = |msg: &str| ApiError::BadRequest(msg.to_string());
    let limit = match limit {
        None => i64::from(LEGACY_DEFAULT_LIMIT),
        Some(raw) => python_int(raw).ok_or_else(|| bad("Limit must be an integer."))?,
    };
    if limit <= 0 {
        return Err(bad("Limit must be a positive integer."));
    }
    let offset = match offset {
        None => 0,
        Some(raw) => python_int(raw).ok_or_else(|| bad("Offset must be an integer."))?,
    };
    let offset = u64::try_from(offset).map_err(|_| bad("Offset cannot be negative."))?;
    let limit = u32::try_from(limit.min(i64::from(MAX_PAGE))).unwrap_or(MAX_PAGE);
    Ok((limit, offset))
}

/// `GET /alerts?limit=&offset=`: a JSON array of legacy rows, newest first.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let first = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let (limit, offset) = legacy_page(first("limit"), first("offset"))?;
    let alerts = state.store.alerts_by_offset(limit, offset).await?;
    Ok(Json(alerts.iter().map(legacy_alert_row).collect()))
}

/// `GET /alerts/{alert_id}`: one legacy row; 404 `{"message": "Alert not found"}`
/// when unknown or when the id is not a UUID.
pub async fn get(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let alert_id = parse_id(path).ok_or(ApiError::LegacyAlertNotFound)?;
    let stored = state
        .store
        .alert(alert_id)
        .await?
        .ok_or(ApiError::LegacyAlertNotFound)?;
    Ok(Json(legacy_alert_row(&stored)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditflow_core::time::parse_timestamp;
    use auditflow_core::Alert;

    /// Verbatim copies of the legacy samples in `/work/shared/compat`.
    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    fn compat(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).expect("compat fixture present")
    }

    #[test]
    fn row_matches_the_legacy_sample_key_for_key_in_order() {
        let alert = Alert::from_slice(&compat("alert-failed-login-burst.json")).unwrap();
        let stored = StoredAlert {
            alert,
            received_at: parse_timestamp("2026-11-22T21:46:29.412233Z").unwrap(),
        };
        let expected: Value =
            serde_json::from_slice(&compat("notification-api-alert-row.json")).unwrap();
        let row = legacy_alert_row(&stored);
        let (row, expected) = (row.as_object().unwrap(), expected.as_object().unwrap());
        assert_eq!(
            row.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "same keys in the same order"
        );
        for (key, value) in expected {
            assert_eq!(&row[key], value, "column {key}");
        }
        // Nested JSON columns keep the sample's key order too.
        assert_eq!(
            serde_json::to_string(&row["raw_event_data"]).unwrap(),
            serde_json::to_string(&expected["raw_event_data"]).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&row["metadata"]).unwrap(),
            serde_json::to_string(&expected["metadata"]).unwrap()
        );
    }

    #[test]
    fn a_real_client_ip_is_kept_and_fractional_seconds_rendered() {
        let mut alert = Alert::from_slice(&compat("alert-failed-login-burst.json")).unwrap();
        alert.triggered_by.client_ip = "192.168.1.150".into();
        alert.timestamp = parse_timestamp("2026-11-22T21:46:29.5Z").unwrap();
        let row = legacy_alert_row(&StoredAlert {
            alert,
            received_at: parse_timestamp("2026-11-22T21:46:30Z").unwrap(),
        });
        assert_eq!(row["client_ip"], "192.168.1.150");
        assert_eq!(row["triggered_by_details"]["client_ip"], "192.168.1.150");
        assert_eq!(row["timestamp"], "2026-11-22 21:46:29.500000+00:00");
        assert_eq!(row["received_at"], "2026-11-22 21:46:30+00:00");
    }

    #[test]
    fn python_int_semantics() {
        for (input, expected) in [
            ("5", Some(5)),
            (" 7 ", Some(7)),
            ("+3", Some(3)),
            ("-2", Some(-2)),
            ("007", Some(7)),
            ("1_000", Some(1000)),
            ("99999999999999999999999", Some(i64::MAX)),
            ("", None),
            ("  ", None),
            ("abc", None),
            ("2.5", None),
            ("1e3", None),
            ("_1", None),
            ("1_", None),
            ("1__0", None),
            ("+", None),
            ("- 1", None),
            ("0x10", None),
        ] {
            assert_eq!(python_int(input), expected, "{input:?}");
        }
    }

    #[test]
    fn legacy_page_messages_are_verbatim() {
        let msg = |limit, offset| match legacy_page(limit, offset) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected 400, got {other:?}"),
        };
        assert_eq!(legacy_page(None, None).unwrap(), (100, 0));
        assert_eq!(legacy_page(Some("5"), Some("10")).unwrap(), (5, 10));
        assert_eq!(legacy_page(Some("100000"), None).unwrap(), (MAX_PAGE, 0));
        assert_eq!(msg(Some("0"), None), "Limit must be a positive integer.");
        assert_eq!(msg(Some("-4"), None), "Limit must be a positive integer.");
        assert_eq!(msg(Some("x"), None), "Limit must be an integer.");
        assert_eq!(msg(Some(""), None), "Limit must be an integer.");
        assert_eq!(msg(None, Some("-1")), "Offset cannot be negative.");
        assert_eq!(msg(None, Some("1.5")), "Offset must be an integer.");
        // Limit is validated first, as the legacy service did.
        assert_eq!(msg(Some("x"), Some("y")), "Limit must be an integer.");
    }
}
