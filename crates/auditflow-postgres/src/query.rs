//! SQL of the read API's listings: a WHERE clause from the present filters,
//! keyset pagination on `(time, id)` descending, one row more than the page
//! to know whether another page follows.
//!
//! Text search (`EventQuery::text`) is a case-insensitive substring match
//! (`ILIKE '%text%'`, wildcards escaped) over `user_id`, `server_hostname`,
//! `event_type`, the effective `resource` and the JSON text of `details`.
//! No index serves it: it filters rows while scanning in `(ts, event_id)`
//! order, which stops as soon as a page is full, so it is fast when matches
//! are common and slow when they are rare on a large table; combine it with
//! a time range or another filter there.

use auditflow_core::store::{AlertQuery, Cursor, EventQuery, MAX_PAGE};
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// Page size used when a query asks for 0.
pub const DEFAULT_PAGE: u32 = 100;

/// The effective page size of a requested limit.
pub(crate) fn page_size(limit: u32) -> u32 {
    if limit == 0 {
        DEFAULT_PAGE
    } else {
        limit.min(MAX_PAGE)
    }
}

/// A query parameter.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// A SELECT under construction.
#[derive(Default)]
pub(crate) struct Select {
    conditions: Vec<String>,
    params: Vec<Param>,
}

impl Select {
    fn param(&mut self, value: Param) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    fn eq<T: ToSql + Sync + Send + 'static>(&mut self, column: &str, value: Option<T>) {
        if let Some(value) = value {
            let p = self.param(Box::new(value));
            self.conditions.push(format!("{column} = {p}"));
        }
    }

    fn range(&mut self, column: &str, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) {
        if let Some(from) = from {
            let p = self.param(Box::new(from));
            self.conditions.push(format!("{column} >= {p}"));
        }
        if let Some(to) = to {
            let p = self.param(Box::new(to));
            self.conditions.push(format!("{column} < {p}"));
        }
    }

    fn before(&mut self, time: &str, id: &str, cursor: Option<Cursor>) {
        if let Some(c) = cursor {
            let at = DateTime::<Utc>::from_timestamp_micros(c.micros).unwrap_or_default();
            let t = self.param(Box::new(at));
            let i = self.param(Box::new(c.id));
            self.conditions.push(format!("({time}, {id}) < ({t}, {i})"));
        }
    }

    /// The finished SQL and its parameters.
    fn finish(mut self, columns: &str, table: &str, order: &str, page: u32) -> Listing {
        let limit = self.param(Box::new(i64::from(page) + 1));
        let filter = if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        };
        Listing {
            sql: format!("SELECT {columns} FROM {table}{filter} ORDER BY {order} LIMIT {limit}"),
            params: self.params,
            page,
        }
    }
}

/// A listing query.
pub(crate) struct Listing {
    /// The SQL.
    pub sql: String,
    /// Its parameters.
    pub params: Vec<Param>,
    /// The page size (the SQL fetches one more).
    pub page: u32,
}

impl Listing {
    /// The parameters as the client wants them.
    pub fn param_refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// `%needle%` with `%`, `_` and `\` escaped (ILIKE's default escape is `\`).
pub(crate) fn like_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Columns of a stored event: its JSON text and `stored_at`.
pub(crate) const EVENT_COLUMNS: &str = "event_json::text, stored_at";

/// Columns of a stored alert: its JSON text (rebuilt from the legacy columns
/// for rows the earlier service wrote) and `received_at`.
pub(crate) const ALERT_COLUMNS: &str = "COALESCE(alert_json, jsonb_build_object(
        'alert_id', alert_id,
        'timestamp', timestamp,
        'alert_name', COALESCE(alert_name, ''),
        'alert_type', COALESCE(alert_type, ''),
        'severity', severity,
        'description', COALESCE(description, ''),
        'source_service_name', COALESCE(source_service_name, ''),
        'analysis_rule', jsonb_build_object(
            'rule_id', COALESCE(rule_id, ''), 'rule_name', COALESCE(rule_name, ''),
            'rule_description', '') || COALESCE(analysis_rule_details, '{}'),
        'triggered_by', jsonb_build_object(
            'actor_type', COALESCE(actor_type, ''), 'actor_id', COALESCE(actor_id, ''),
            'client_ip', COALESCE(host(client_ip), 'N/A')) || COALESCE(triggered_by_details, '{}'),
        'impacted_resource', jsonb_build_object(
            'resource_type', COALESCE(resource_type, ''),
            'resource_id', COALESCE(resource_id, ''),
            'server_hostname', COALESCE(server_hostname, '')) || COALESCE(impacted_resource_details, '{}'),
        'action_observed', COALESCE(action_observed, ''),
        'correlation_id', correlation_id,
        'raw_event_data', COALESCE(raw_event_data, 'null'),
        'metadata', COALESCE(metadata, '{}')))::text,
    COALESCE(received_at, timestamp)";

/// The SELECT of an event listing (columns: [`EVENT_COLUMNS`]).
pub(crate) fn events(q: &EventQuery) -> Listing {
    let mut s = Select::default();
    s.range("ts", q.from, q.to);
    s.eq("event_type", q.event_type.clone());
    s.eq("user_id", q.user_id.clone());
    s.eq("server_hostname", q.server_hostname.clone());
    s.eq("severity", q.severity.map(|sev| sev.as_str().to_string()));
    if let Some(needle) = q.text.as_deref().filter(|t| !t.is_empty()) {
        let p = s.param(Box::new(like_pattern(needle)));
        s.conditions.push(format!(
            "(user_id ILIKE {p} OR server_hostname ILIKE {p} OR event_type ILIKE {p} \
             OR resource ILIKE {p} OR (event_json -> 'details')::text ILIKE {p})"
        ));
    }
    s.before("ts", "event_id", q.cursor);
    s.finish(
        EVENT_COLUMNS,
        "events",
        "ts DESC, event_id DESC",
        page_size(q.limit),
    )
}

/// The SELECT of an alert listing (columns: [`ALERT_COLUMNS`]).
pub(crate) fn alerts(q: &AlertQuery) -> Listing {
    let mut s = Select::default();
    s.range("timestamp", q.from, q.to);
    s.eq("rule_id", q.rule_id.clone());
    s.eq("severity", q.severity.map(|sev| sev.as_str().to_string()));
    s.eq("actor_id", q.user_id.clone());
    s.eq("server_hostname", q.server_hostname.clone());
    s.eq::<Uuid>("correlation_id", q.correlation_id);
    s.before("timestamp", "alert_id", q.cursor);
    s.finish(
        ALERT_COLUMNS,
        "alerts",
        "timestamp DESC, alert_id DESC",
        page_size(q.limit),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditflow_core::event::Severity;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size(0), DEFAULT_PAGE);
        assert_eq!(page_size(5), 5);
        assert_eq!(page_size(MAX_PAGE + 1), MAX_PAGE);
    }

    #[test]
    fn only_present_filters_become_conditions() {
        let all = events(&EventQuery::default());
        assert!(!all.sql.contains("WHERE"), "{}", all.sql);
        assert_eq!(all.params.len(), 1, "just the limit");
        let q = EventQuery {
            user_id: Some("bob".into()),
            severity: Some(Severity::Error),
            cursor: Some(Cursor {
                micros: 1,
                id: Uuid::nil(),
            }),
            limit: 10,
            ..EventQuery::default()
        };
        let l = events(&q);
        assert!(l.sql.contains("user_id = $1"), "{}", l.sql);
        assert!(l.sql.contains("severity = $2"), "{}", l.sql);
        assert!(l.sql.contains("(ts, event_id) < ($3, $4)"), "{}", l.sql);
        assert!(l.sql.ends_with("LIMIT $5"), "{}", l.sql);
        assert_eq!(l.page, 10);
    }
}
