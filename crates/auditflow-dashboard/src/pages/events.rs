//! Event search (time range, type, user, host, severity, free text) and an
//! event's detail with the alerts it caused.

use std::sync::Arc;

use auditflow_api::params::EventParams;
use auditflow_core::store::{AlertQuery, StoredEvent, MAX_PAGE};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{Duration, SecondsFormat, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use super::{not_found_page, unavailable_page, ListFilters};
use crate::panel::{fetch, PANEL_TIMEOUT};
use crate::view::{self, Nav, BASE};
use crate::Dashboard;

/// Rows per page.
const PAGE_SIZE: &str = "50";

/// Quick ranges offered by the `last` select: value, label, length.
const RANGES: [(&str, &str, Duration); 4] = [
    ("15m", "15 minutes", Duration::minutes(15)),
    ("1h", "hour", Duration::hours(1)),
    ("24h", "24 hours", Duration::hours(24)),
    ("7d", "7 days", Duration::days(7)),
];

/// `from` as given, else the start of the quick range `last` (RFC 3339),
/// else nothing. An unknown `last` is ignored (the select only offers known ones).
pub fn from_or_last(from: Option<&str>, last: Option<&str>) -> Option<String> {
    if let Some(from) = from.filter(|f| !f.trim().is_empty()) {
        return Some(from.to_string());
    }
    let (_, _, length) = RANGES.iter().find(|(value, _, _)| Some(*value) == last)?;
    Some((Utc::now() - *length).to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// The `last` select with `selected` chosen (or "any time").
pub fn last_select(selected: Option<&str>) -> Markup {
    html! {
        select name="last" id="f-last" {
            option value="" { "any time" }
            @for (value, label, _) in RANGES {
                option value=(value) selected[selected == Some(value)] { (label) }
            }
        }
    }
}

/// Query of `GET /dashboard/events`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filters {
    q: Option<String>,
    event_type: Option<String>,
    user_id: Option<String>,
    server_hostname: Option<String>,
    severity: Option<String>,
    last: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

impl Filters {
    fn params(&self) -> EventParams {
        EventParams {
            from: from_or_last(self.from.as_deref(), self.last.as_deref()),
            to: self.to.clone(),
            event_type: self.event_type.clone(),
            user_id: self.user_id.clone(),
            server_hostname: self.server_hostname.clone(),
            severity: self.severity.clone(),
            q: self.q.clone(),
            cursor: self.cursor.clone(),
            limit: Some(PAGE_SIZE.into()),
        }
    }
}

impl ListFilters for Filters {
    type Query = auditflow_core::store::EventQuery;

    fn query(&self) -> Result<auditflow_core::store::EventQuery, auditflow_api::ApiError> {
        self.params().into_query()
    }

    fn form(&self) -> Markup {
        let field = |id: &str, label: &str, name: &str, value: &Option<String>| {
            html! {
                label for=(id) { (label) }
                input type="text" id=(id) name=(name) value=[value.as_deref()];
            }
        };
        html! {
            form.filters method="get" action={ (BASE) "/events" } {
                div.wide { (field("f-q", "text (user, host, type, resource, details)", "q", &self.q)) }
                div { (field("f-type", "type", "event_type", &self.event_type)) }
                div { (field("f-user", "user", "user_id", &self.user_id)) }
                div { (field("f-host", "host", "server_hostname", &self.server_hostname)) }
                div { label for="f-severity" { "severity" } (view::severity_select(self.severity.as_deref())) }
                div { label for="f-last" { "last" } (last_select(self.last.as_deref())) }
                div { (field("f-from", "from (RFC 3339)", "from", &self.from)) }
                div { (field("f-to", "to", "to", &self.to)) }
                div.actions { button type="submit" { "Search" } a href={ (BASE) "/events" } { "clear" } }
            }
        }
    }

    fn pairs<'a>(&'a self, cursor: Option<&'a str>) -> Vec<(&'a str, Option<&'a str>)> {
        vec![
            ("q", self.q.as_deref()),
            ("event_type", self.event_type.as_deref()),
            ("user_id", self.user_id.as_deref()),
            ("server_hostname", self.server_hostname.as_deref()),
            ("severity", self.severity.as_deref()),
            ("last", self.last.as_deref()),
            ("from", self.from.as_deref()),
            ("to", self.to.as_deref()),
            ("cursor", cursor),
        ]
    }

    fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }
}

/// Events as a table, newest first.
pub fn table(events: &[StoredEvent]) -> Markup {
    html! {
        @if events.is_empty() {
            p.muted { "No events." }
        } @else {
            div.scroll {
                table.events {
                    thead { tr { th { "time" } th { "severity" } th { "type" } th { "user" } th { "host" } th { "result" } th { "" } } }
                    tbody {
                        @for stored in events {
                            @let e = &stored.event;
                            tr data-event-id=(e.event_id) {
                                td { (view::time(&e.timestamp)) }
                                td { (view::severity(e.severity)) }
                                td { (e.event_type) }
                                td.user { (e.user_id) }
                                td.host { (e.server_hostname) }
                                td { (e.action_result) }
                                td { a href={ (BASE) "/events/" (e.event_id) } { "details" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One event's fields and details.
pub fn summary(stored: &StoredEvent) -> Markup {
    let e = &stored.event;
    html! {
        dl {
            dt { "event id" } dd { a href={ (BASE) "/events/" (e.event_id) } { code { (e.event_id) } } }
            dt { "time" } dd { (view::time(&e.timestamp)) }
            dt { "stored" } dd { (view::time(&stored.stored_at)) }
            dt { "type" } dd { (e.event_type) }
            dt { "severity" } dd { (view::severity(e.severity)) }
            dt { "user" } dd.user { (e.user_id) }
            dt { "host" } dd.host { (e.server_hostname) }
            dt { "result" } dd { (e.action_result) }
            dt { "source" } dd { (e.source_service) }
            @if let Some(resource) = &e.resource { dt { "resource" } dd { (resource) } }
            @if let Some(ip) = &e.client_ip { dt { "client address" } dd { (ip) } }
        }
        h3 { "details" }
        (view::json_block(&serde_json::Value::Object(e.details.clone())))
        @if !e.extra.is_empty() {
            h3 { "other fields" }
            (view::json_block(&serde_json::Value::Object(e.extra.clone())))
        }
    }
}

/// `GET /dashboard/events`.
pub async fn list(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    filters: Result<Query<Filters>, QueryRejection>,
) -> Response {
    let signed_in = dashboard.signed_in(&headers);
    let (filters, query) = match super::list_query("Events", Nav::Events, signed_in, filters) {
        Ok(parsed) => parsed,
        Err(bad) => return *bad,
    };
    let page = fetch(PANEL_TIMEOUT, dashboard.sources.store.events(&query)).await;
    let results = dashboard.memory.render_fresh(
        "events-list",
        page.map(|page| {
            let older = page.next_cursor.map(|c| c.to_string());
            html! {
                (table(&page.items))
                (super::pager("/events", &filters, older.as_deref()))
            }
        }),
    );
    let body = html! {
        h1 { "Events" }
        (filters.form())
        section.panel.wide #results { (results) }
    };
    view::page("Events", Nav::Events, signed_in, body).into_response()
}

/// `GET /dashboard/events/{id}`.
pub async fn detail(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let signed_in = dashboard.signed_in(&headers);
    let Ok(event_id) = Uuid::try_parse(id.trim()) else {
        return not_found_page("Event", Nav::Events, signed_in, "Event");
    };
    let store = &dashboard.sources.store;
    let caused = AlertQuery {
        correlation_id: Some(event_id),
        limit: MAX_PAGE,
        ..AlertQuery::default()
    };
    let (event, alerts) = tokio::join!(
        fetch(PANEL_TIMEOUT, store.event(event_id)),
        fetch(PANEL_TIMEOUT, store.alerts(&caused)),
    );
    let event = match event {
        Ok(Some(event)) => event,
        Ok(None) => return not_found_page("Event", Nav::Events, signed_in, "Event"),
        Err(reason) => return unavailable_page("Event", Nav::Events, signed_in, &reason),
    };
    let alerts = dashboard.memory.render_fresh(
        "event-alerts",
        alerts.map(|page| super::alerts::table(&page.items)),
    );
    let body = html! {
        h1 { (event.event.event_type) " by " span.user { (event.event.user_id) } }
        div.grid {
            section.panel.wide #event-summary { h2 { "Event" } (summary(&event)) }
            section.panel.wide #event-alerts { h2 { "Alerts it caused" } (alerts) }
        }
    };
    view::page("Event", Nav::Events, signed_in, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_from_wins_over_a_quick_range() {
        assert_eq!(
            from_or_last(Some("2026-01-01T00:00:00Z"), Some("1h")).as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        let from = from_or_last(Some(" "), Some("15m")).expect("a range start");
        let parsed = chrono::DateTime::parse_from_rfc3339(&from).expect("RFC 3339");
        let age = Utc::now() - parsed.with_timezone(&Utc);
        assert!(
            age >= Duration::minutes(15) && age < Duration::minutes(16),
            "{age}"
        );
        assert_eq!(from_or_last(None, Some("3w")), None);
        assert_eq!(from_or_last(None, None), None);
    }
}
