//! Query parameters of the `/v1` routes: deserialized with serde as raw
//! strings, then validated by hand so that every 400 names its parameter.
//!
//! Conventions shared by every `/v1` listing:
//! - an empty value (`?user_id=`) means "no filter", as HTML forms send it;
//! - an unknown parameter is a 400 (a mistyped filter must not silently
//!   return unfiltered audit data);
//! - `limit` defaults to [`DEFAULT_LIMIT`] and must be within `1..=MAX_PAGE`.

use auditflow_core::event::{Severity, MAX_FIELD_LEN};
use auditflow_core::store::{AlertQuery, Cursor, EventQuery, MAX_PAGE};
use auditflow_core::time::parse_timestamp;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::ApiError;

/// Page size when the client sends no `limit`.
pub const DEFAULT_LIMIT: u32 = 50;

/// Query-string extractor whose rejection is a JSON 400 (axum's own is plain text).
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match Query::<T>::try_from_uri(&parts.uri) {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => {
                let text = rejection.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                Err(ApiError::BadRequest(format!(
                    "invalid query string: {detail}"
                )))
            }
        }
    }
}

/// Raw parameters of `GET /v1/events`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Event time at or after (RFC 3339).
    pub from: Option<String>,
    /// Event time before (RFC 3339).
    pub to: Option<String>,
    /// Exact event type.
    pub event_type: Option<String>,
    /// Exact user id.
    pub user_id: Option<String>,
    /// Exact host name.
    pub server_hostname: Option<String>,
    /// Severity, case-insensitive.
    pub severity: Option<String>,
    /// Free text.
    pub q: Option<String>,
    /// Cursor from a previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<String>,
}

impl EventParams {
    /// Validates into a store query.
    pub fn into_query(self) -> Result<EventQuery, ApiError> {
        let (from, to) = time_range(self.from, self.to)?;
        Ok(EventQuery {
            from,
            to,
            event_type: text("event_type", self.event_type)?,
            user_id: text("user_id", self.user_id)?,
            server_hostname: text("server_hostname", self.server_hostname)?,
            severity: severity(self.severity)?,
            text: text("q", self.q)?,
            cursor: cursor(self.cursor)?,
            limit: limit(self.limit)?,
        })
    }
}

/// Raw parameters of `GET /v1/alerts`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertParams {
    /// Alert time at or after (RFC 3339).
    pub from: Option<String>,
    /// Alert time before (RFC 3339).
    pub to: Option<String>,
    /// Rule id.
    pub rule_id: Option<String>,
    /// Alert severity, case-insensitive.
    pub severity: Option<String>,
    /// Actor id.
    pub user_id: Option<String>,
    /// Host name.
    pub server_hostname: Option<String>,
    /// Cursor from a previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<String>,
}

impl AlertParams {
    /// Validates into a store query.
    pub fn into_query(self) -> Result<AlertQuery, ApiError> {
        let (from, to) = time_range(self.from, self.to)?;
        Ok(AlertQuery {
            from,
            to,
            rule_id: text("rule_id", self.rule_id)?,
            severity: severity(self.severity)?,
            user_id: text("user_id", self.user_id)?,
            server_hostname: text("server_hostname", self.server_hostname)?,
            correlation_id: None,
            cursor: cursor(self.cursor)?,
            limit: limit(self.limit)?,
        })
    }
}

/// Raw parameters of `GET /v1/dead-letters`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterParams {
    /// One configured queue; all of them when absent.
    pub queue: Option<String>,
    /// At most this many dead letters (over all queues listed).
    pub limit: Option<String>,
}

impl DeadLetterParams {
    /// The validated `limit`.
    pub fn limit(&self) -> Result<u32, ApiError> {
        limit(self.limit.clone())
    }
}

fn present(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn text(param: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match present(value) {
        Some(v) if v.len() > MAX_FIELD_LEN => Err(ApiError::param(
            param,
            format!("is {} bytes long; the limit is {MAX_FIELD_LEN}", v.len()),
        )),
        other => Ok(other),
    }
}

/// Parses a timestamp parameter. A `+` in an unencoded query string arrives
/// as a space (`...T21:46:29 00:00`), so a failed parse is retried with the
/// last space turned back into `+`.
pub fn timestamp(param: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(raw) = present(value) else {
        return Ok(None);
    };
    match parse_timestamp(&raw) {
        Ok(ts) => Ok(Some(ts)),
        Err(err) => {
            let repaired = raw
                .trim()
                .rsplit_once(' ')
                .map(|(head, offset)| format!("{head}+{offset}"));
            match repaired.map(|r| parse_timestamp(&r)) {
                Some(Ok(ts)) => Ok(Some(ts)),
                _ => Err(ApiError::param(param, err)),
            }
        }
    }
}

/// A validated `from`/`to` pair.
type TimeRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn time_range(from: Option<String>, to: Option<String>) -> Result<TimeRange, ApiError> {
    let from = timestamp("from", from)?;
    let to = timestamp("to", to)?;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(ApiError::param("from", "must not be after `to`"));
        }
    }
    Ok((from, to))
}

fn severity(value: Option<String>) -> Result<Option<Severity>, ApiError> {
    present(value)
        .map(|raw| {
            Severity::parse(raw.trim()).ok_or_else(|| {
                let shown: String = raw.chars().take(64).collect();
                ApiError::param(
                    "severity",
                    format!("'{shown}' is not one of INFO, WARNING, ERROR, CRITICAL"),
                )
            })
        })
        .transpose()
}

fn cursor(value: Option<String>) -> Result<Option<Cursor>, ApiError> {
    present(value)
        .map(|raw| {
            raw.trim().parse::<Cursor>().map_err(|_| {
                ApiError::param(
                    "cursor",
                    "malformed cursor (pass back a `next_cursor` unchanged)",
                )
            })
        })
        .transpose()
}

/// Parses `limit`: [`DEFAULT_LIMIT`] when absent, else an integer in `1..=MAX_PAGE`.
pub fn limit(value: Option<String>) -> Result<u32, ApiError> {
    let Some(raw) = present(value) else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        _ => Err(ApiError::param(
            "limit",
            format!("must be an integer from 1 to {MAX_PAGE}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_request_names(err: ApiError, param: &str) {
        match err {
            ApiError::BadRequest(msg) => assert!(msg.contains(&format!("`{param}`")), "{msg}"),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn event_params_map_onto_the_query() {
        let params = EventParams {
            from: Some("2026-11-22T21:00:00Z".into()),
            to: Some("2026-11-22T22:00:00+00:00Z".into()),
            event_type: Some("user_login".into()),
            user_id: Some("bob".into()),
            server_hostname: Some("web-01".into()),
            severity: Some("warning".into()),
            q: Some("passwd".into()),
            cursor: Some("1700000000000000_0e9c7f9f5b1d4d0e9a512f1f9d6f4c11".into()),
            limit: Some("10".into()),
        };
        let q = params.into_query().unwrap();
        assert_eq!(
            q.from,
            Some(parse_timestamp("2026-11-22T21:00:00Z").unwrap())
        );
        assert_eq!(q.to, Some(parse_timestamp("2026-11-22T22:00:00Z").unwrap()));
        assert_eq!(q.severity, Some(Severity::Warning));
        assert_eq!(q.text.as_deref(), Some("passwd"));
        assert_eq!(q.cursor.unwrap().micros, 1_700_000_000_000_000);
        assert_eq!(q.limit, 10);
    }

    #[test]
    fn empty_values_mean_no_filter_and_limit_defaults() {
        let q = EventParams {
            user_id: Some(String::new()),
            severity: Some(String::new()),
            ..Default::default()
        }
        .into_query()
        .unwrap();
        assert_eq!(
            q,
            EventQuery {
                limit: DEFAULT_LIMIT,
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_plus_decoded_as_space_is_repaired() {
        let ts = timestamp("from", Some("2026-11-22T22:46:29 01:00".into())).unwrap();
        assert_eq!(ts, Some(parse_timestamp("2026-11-22T21:46:29Z").unwrap()));
        // The legacy naive form with a space still parses as itself.
        let ts = timestamp("from", Some("2026-11-22 21:46:29".into())).unwrap();
        assert_eq!(ts, Some(parse_timestamp("2026-11-22T21:46:29Z").unwrap()));
    }

    #[test]
    fn errors_name_the_parameter() {
        type Build = fn(String) -> EventParams;
        let cases: [(&str, Build); 6] = [
            ("from", |v| EventParams {
                from: Some(v),
                ..Default::default()
            }),
            ("to", |v| EventParams {
                to: Some(v),
                ..Default::default()
            }),
            ("severity", |v| EventParams {
                severity: Some(v),
                ..Default::default()
            }),
            ("cursor", |v| EventParams {
                cursor: Some(v),
                ..Default::default()
            }),
            ("limit", |v| EventParams {
                limit: Some(v),
                ..Default::default()
            }),
            ("q", |_| EventParams {
                q: Some("x".repeat(MAX_FIELD_LEN + 1)),
                ..Default::default()
            }),
        ];
        for (param, build) in cases {
            bad_request_names(build("nonsense".into()).into_query().unwrap_err(), param);
        }
        for bad_limit in ["0", "-1", "1001", "2.5", "ten"] {
            bad_request_names(limit(Some(bad_limit.into())).unwrap_err(), "limit");
        }
        assert_eq!(limit(Some(" 1000 ".into())).unwrap(), MAX_PAGE);
        let reversed = AlertParams {
            from: Some("2026-11-23T00:00:00Z".into()),
            to: Some("2026-11-22T00:00:00Z".into()),
            ..Default::default()
        };
        bad_request_names(reversed.into_query().unwrap_err(), "from");
    }

    #[test]
    fn alert_params_map_onto_the_query() {
        let q = AlertParams {
            rule_id: Some("ANLY-SEC-001".into()),
            severity: Some("Critical".into()),
            user_id: Some("bob".into()),
            server_hostname: Some("web-01".into()),
            ..Default::default()
        }
        .into_query()
        .unwrap();
        assert_eq!(q.rule_id.as_deref(), Some("ANLY-SEC-001"));
        assert_eq!(q.severity, Some(Severity::Critical));
        assert_eq!(q.user_id.as_deref(), Some("bob"));
        assert_eq!(q.server_hostname.as_deref(), Some("web-01"));
        assert_eq!(q.limit, DEFAULT_LIMIT);
    }
}
