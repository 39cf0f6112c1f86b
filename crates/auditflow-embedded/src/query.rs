//! SQL for the read API's filters: a WHERE clause built from the present
//! filters, keyset pagination on `(time, id)` descending.
//!
//! Text search (`EventQuery::text`) is a case-insensitive (ASCII) substring
//! match, SQL `LIKE '%text%'` with wildcards escaped, over `user_id`,
//! `server_hostname`, `event_type`, the effective `resource` and the JSON
//! text of `details`. It scans (in index order), so combine it with other
//! filters or a time range on large stores.

use auditflow_core::store::{AlertQuery, Cursor, EventQuery, MAX_PAGE};
use rusqlite::types::Value;

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

/// A SELECT under construction.
#[derive(Debug, Default)]
pub(crate) struct Select {
    conditions: Vec<String>,
    params: Vec<Value>,
}

impl Select {
    fn param(&mut self, value: Value) -> String {
        self.params.push(value);
        format!("?{}", self.params.len())
    }

    fn eq(&mut self, column: &str, value: Option<Value>) {
        if let Some(value) = value {
            let p = self.param(value);
            self.conditions.push(format!("{column} = {p}"));
        }
    }

    fn range(&mut self, column: &str, from: Option<i64>, to: Option<i64>) {
        if let Some(from) = from {
            let p = self.param(Value::Integer(from));
            self.conditions.push(format!("{column} >= {p}"));
        }
        if let Some(to) = to {
            let p = self.param(Value::Integer(to));
            self.conditions.push(format!("{column} < {p}"));
        }
    }

    fn before(&mut self, time: &str, id: &str, cursor: Option<(i64, Value)>) {
        if let Some((micros, cursor_id)) = cursor {
            let t = self.param(Value::Integer(micros));
            let i = self.param(cursor_id);
            self.conditions.push(format!("({time}, {id}) < ({t}, {i})"));
        }
    }

    /// The finished SQL and its parameters; fetches one row more than the
    /// page to know whether another page follows.
    pub(crate) fn finish(
        mut self,
        columns: &str,
        table: &str,
        order: &str,
        page: u32,
    ) -> (String, Vec<Value>) {
        let limit = self.param(Value::Integer(i64::from(page) + 1));
        let filter = if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        };
        (
            format!("SELECT {columns} FROM {table}{filter} ORDER BY {order} LIMIT {limit}"),
            self.params,
        )
    }
}

fn text(s: &Option<String>) -> Option<Value> {
    s.as_ref().map(|s| Value::Text(s.clone()))
}

fn like_pattern(needle: &str) -> String {
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

/// The SELECT of an event listing (columns: `body, stored_at`).
pub(crate) fn events(q: &EventQuery) -> (String, Vec<Value>, u32) {
    let mut s = Select::default();
    s.range(
        "ts",
        q.from.map(|t| t.timestamp_micros()),
        q.to.map(|t| t.timestamp_micros()),
    );
    s.eq("event_type", text(&q.event_type));
    s.eq("user_id", text(&q.user_id));
    s.eq("server_hostname", text(&q.server_hostname));
    s.eq(
        "severity",
        q.severity.map(|sev| Value::Text(sev.as_str().to_string())),
    );
    if let Some(needle) = q.text.as_deref().filter(|t| !t.is_empty()) {
        let p = s.param(Value::Text(like_pattern(needle)));
        s.conditions.push(format!(
            "(user_id LIKE {p} ESCAPE '\\' OR server_hostname LIKE {p} ESCAPE '\\' \
             OR event_type LIKE {p} ESCAPE '\\' OR resource LIKE {p} ESCAPE '\\' \
             OR json_extract(body, '$.details') LIKE {p} ESCAPE '\\')"
        ));
    }
    s.before(
        "ts",
        "event_id",
        q.cursor
            .map(|c: Cursor| (c.micros, Value::Blob(c.id.as_bytes().to_vec()))),
    );
    let page = page_size(q.limit);
    let (sql, params) = s.finish("body, stored_at", "events", "ts DESC, event_id DESC", page);
    (sql, params, page)
}

/// The SELECT of an alert listing (columns: `body, received_at`).
pub(crate) fn alerts(q: &AlertQuery) -> (String, Vec<Value>, u32) {
    let mut s = Select::default();
    s.range(
        "timestamp",
        q.from.map(|t| t.timestamp_micros()),
        q.to.map(|t| t.timestamp_micros()),
    );
    s.eq("rule_id", text(&q.rule_id));
    s.eq(
        "severity",
        q.severity.map(|sev| Value::Text(sev.as_str().to_string())),
    );
    s.eq("actor_id", text(&q.user_id));
    s.eq("server_hostname", text(&q.server_hostname));
    s.eq(
        "correlation_id",
        q.correlation_id
            .map(|id| Value::Text(id.hyphenated().to_string())),
    );
    s.before(
        "timestamp",
        "alert_id",
        q.cursor
            .map(|c| (c.micros, Value::Text(c.id.hyphenated().to_string()))),
    );
    let page = page_size(q.limit);
    let (sql, params) = s.finish(
        "body, received_at",
        "alerts",
        "timestamp DESC, alert_id DESC",
        page,
    );
    (sql, params, page)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
