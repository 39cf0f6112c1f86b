//! The alerts list (filters, cursor pagination, live first page) and an
//! alert's detail (triggering event, related events, deliveries, remediation).

use std::sync::Arc;

use auditflow_api::params::AlertParams;
use auditflow_core::store::{DeliveryRecord, EventQuery, StoredAlert};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use super::{not_found_page, unavailable_page, ListFilters};
use crate::panel::{fetch, PANEL_TIMEOUT};
use crate::view::{self, Nav, BASE};
use crate::Dashboard;

/// Rows per page of the list.
const PAGE_SIZE: &str = "50";
/// The window of related events around an alert: before and after it.
const RELATED_BEFORE: Duration = Duration::minutes(5);
const RELATED_AFTER: Duration = Duration::minutes(1);
/// Most related events shown.
const RELATED_MAX: u32 = 50;

/// Query of `GET /dashboard/alerts`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filters {
    rule_id: Option<String>,
    severity: Option<String>,
    user_id: Option<String>,
    server_hostname: Option<String>,
    /// A quick range (`15m`, `1h`, `24h`, `7d`) used when `from` is empty.
    last: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
    /// Set by the live refresh: answer the results only.
    partial: Option<String>,
}

impl Filters {
    fn params(&self) -> AlertParams {
        AlertParams {
            from: super::events::from_or_last(self.from.as_deref(), self.last.as_deref()),
            to: self.to.clone(),
            rule_id: self.rule_id.clone(),
            severity: self.severity.clone(),
            user_id: self.user_id.clone(),
            server_hostname: self.server_hostname.clone(),
            cursor: self.cursor.clone(),
            limit: Some(PAGE_SIZE.into()),
        }
    }
}

impl ListFilters for Filters {
    type Query = auditflow_core::store::AlertQuery;

    fn query(&self) -> Result<auditflow_core::store::AlertQuery, auditflow_api::ApiError> {
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
            form.filters method="get" action={ (BASE) "/alerts" } {
                div { (field("f-rule", "rule", "rule_id", &self.rule_id)) }
                div { label for="f-severity" { "severity" } (view::severity_select(self.severity.as_deref())) }
                div { (field("f-user", "user", "user_id", &self.user_id)) }
                div { (field("f-host", "host", "server_hostname", &self.server_hostname)) }
                div { label for="f-last" { "last" } (super::events::last_select(self.last.as_deref())) }
                div { (field("f-from", "from (RFC 3339)", "from", &self.from)) }
                div { (field("f-to", "to", "to", &self.to)) }
                div.actions { button type="submit" { "Filter" } a href={ (BASE) "/alerts" } { "clear" } }
            }
        }
    }

    fn pairs<'a>(&'a self, cursor: Option<&'a str>) -> Vec<(&'a str, Option<&'a str>)> {
        vec![
            ("rule_id", self.rule_id.as_deref()),
            ("severity", self.severity.as_deref()),
            ("user_id", self.user_id.as_deref()),
            ("server_hostname", self.server_hostname.as_deref()),
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

/// The alerts as a table, newest first; used by the list and the overview.
pub fn table(alerts: &[StoredAlert]) -> Markup {
    html! {
        @if alerts.is_empty() {
            p.muted { "No alerts." }
        } @else {
            div.scroll {
                table.alerts {
                    thead { tr { th { "time" } th { "severity" } th { "rule" } th { "user" } th { "host" } th { "alert" } } }
                    tbody {
                        @for stored in alerts {
                            @let a = &stored.alert;
                            tr data-alert-id=(a.alert_id) {
                                td { (view::time(&a.timestamp)) }
                                td { (view::severity(a.severity)) }
                                td { code { (a.analysis_rule.rule_id) } }
                                td.user { (a.triggered_by.actor_id) }
                                td.host { (a.impacted_resource.server_hostname) }
                                td { a href={ (BASE) "/alerts/" (a.alert_id) } { (a.alert_name) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /dashboard/alerts`.
pub async fn list(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    filters: Result<Query<Filters>, QueryRejection>,
) -> Response {
    let signed_in = dashboard.signed_in(&headers);
    let (filters, query) = match super::list_query("Alerts", Nav::Alerts, signed_in, filters) {
        Ok(parsed) => parsed,
        Err(bad) => return *bad,
    };
    let page = fetch(PANEL_TIMEOUT, dashboard.sources.store.alerts(&query)).await;
    let results = dashboard.memory.render_fresh(
        "alerts-list",
        page.map(|page| {
            let older = page.next_cursor.map(|c| c.to_string());
            html! {
                (table(&page.items))
                (super::pager("/alerts", &filters, older.as_deref()))
            }
        }),
    );
    if filters.partial.is_some() {
        return results.into_response();
    }
    // Only the first page follows new alerts; an older page stays put.
    let live = filters.cursor.is_none().then(|| {
        let mut pairs = filters.pairs(None);
        pairs.push(("partial", Some("1")));
        format!("{BASE}/alerts{}", view::query_string(&pairs))
    });
    let body = html! {
        h1 { "Alerts" }
        (filters.form())
        section.panel.wide #results data-refresh=[live] data-every=(super::overview::REFRESH_MS) aria-live="polite" {
            (results)
        }
    };
    view::page("Alerts", Nav::Alerts, signed_in, body).into_response()
}

/// `GET /dashboard/alerts/{id}`.
pub async fn detail(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let signed_in = dashboard.signed_in(&headers);
    let Ok(alert_id) = Uuid::try_parse(id.trim()) else {
        return not_found_page("Alert", Nav::Alerts, signed_in, "Alert");
    };
    let store = &dashboard.sources.store;
    let stored = match fetch(PANEL_TIMEOUT, store.alert(alert_id)).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return not_found_page("Alert", Nav::Alerts, signed_in, "Alert"),
        Err(reason) => return unavailable_page("Alert", Nav::Alerts, signed_in, &reason),
    };
    let alert = &stored.alert;
    let related_query = EventQuery {
        from: Some(alert.timestamp - RELATED_BEFORE),
        to: Some(alert.timestamp + RELATED_AFTER),
        user_id: Some(alert.triggered_by.actor_id.clone()),
        server_hostname: Some(alert.impacted_resource.server_hostname.clone()),
        limit: RELATED_MAX,
        ..EventQuery::default()
    };
    let (trigger, related, deliveries) = tokio::join!(
        fetch(PANEL_TIMEOUT, store.event(alert.correlation_id)),
        fetch(PANEL_TIMEOUT, store.events(&related_query)),
        fetch(PANEL_TIMEOUT, store.deliveries(alert_id)),
    );
    let memory = &dashboard.memory;
    let trigger = memory.render_fresh(
        "alert-trigger",
        trigger.map(|event| match event {
            Some(event) => super::events::summary(&event),
            None => html! {
                p.muted { "Not in the store; as carried by the alert:" }
                (view::json_block(&alert.raw_event_data))
            },
        }),
    );
    let related = memory.render_fresh(
        "alert-related",
        related.map(|page| super::events::table(&page.items)),
    );
    let deliveries =
        memory.render_fresh("alert-deliveries", deliveries.map(|d| deliveries_table(&d)));
    let body = html! {
        h1 { (alert.alert_name) " " (view::severity(alert.severity)) }
        div.grid {
            section.panel #alert-summary {
                h2 { "What happened" }
                p.description { (alert.description) }
                dl {
                    dt { "rule" } dd { code { (alert.analysis_rule.rule_id) } " " (alert.analysis_rule.rule_name) }
                    dt { "rule detects" } dd { (alert.analysis_rule.rule_description) }
                    dt { "time" } dd { (view::time(&alert.timestamp)) }
                    dt { "stored" } dd { (view::time(&stored.received_at)) }
                    dt { "user" } dd.user { (alert.triggered_by.actor_id) " (" (alert.triggered_by.actor_type) ")" }
                    dt { "client address" } dd { (alert.triggered_by.client_ip) }
                    dt { "resource" } dd { (alert.impacted_resource.resource_type) " " (alert.impacted_resource.resource_id) }
                    dt { "host" } dd.host { (alert.impacted_resource.server_hostname) }
                    dt { "action" } dd { (alert.action_observed) }
                    dt { "source" } dd { (alert.source_service_name) }
                    dt { "environment" } dd { (alert.metadata.environment) }
                    dt { "tags" } dd { @for tag in &alert.metadata.tags { span.tag { (tag) } " " } }
                    dt { "alert id" } dd { code { (alert.alert_id) } }
                }
            }
            section.panel #alert-remediation {
                h2 { "What to do" }
                @if alert.metadata.remediation_guidance.is_empty() {
                    p.muted { "No guidance for this rule." }
                } @else {
                    p.guidance { (alert.metadata.remediation_guidance) }
                }
                p { "Playbook: " (view::external_link(&alert.metadata.playbook_url)) }
            }
            section.panel.wide #alert-deliveries { h2 { "Delivery per channel" } (deliveries) }
            section.panel.wide #alert-trigger { h2 { "Triggering event" } (trigger) }
            section.panel.wide #alert-related {
                h2 { "Related events (same user and host, 5 min before to 1 min after)" }
                (related)
            }
        }
    };
    view::page(&alert.alert_name, Nav::Alerts, signed_in, body).into_response()
}

fn deliveries_table(records: &[DeliveryRecord]) -> Markup {
    html! {
        @if records.is_empty() {
            p.muted { "No delivery recorded yet." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th { "channel" } th { "status" } th.num { "attempts" } th { "recorded" } th { "last error" } } }
                    tbody {
                        @for r in records {
                            tr data-channel=(r.channel) {
                                th scope="row" { (r.channel) }
                                td { span class={ "badge delivery-" (r.status.as_str()) } { (r.status.as_str()) } }
                                td.num { (r.attempts) }
                                td { (view::time(&r.recorded_at)) }
                                td.detail {
                                    @if let Some(e) = &r.last_error { (e) } @else { (view::empty()) }
                                    // A retrying delivery says when notify tries again.
                                    @if let Some(next) = &r.next_attempt_at { " · next attempt " (view::time(next)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
