//! The health page and panel: every dependency and role, up / degraded /
//! down, since when, the last error and the circuit breaker's state.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use crate::panel::{fetch, PANEL_TIMEOUT};
use crate::sources::{ComponentKind, ComponentReport};
use crate::view::{self, Nav, BASE};
use crate::Dashboard;

/// `GET /dashboard/health`.
pub async fn page(State(dashboard): State<Arc<Dashboard>>, headers: HeaderMap) -> Response {
    let body = html! {
        h1 { "Health" }
        section.panel.wide #panel-health-detail data-refresh={ (BASE) "/panels/health" } data-every=(super::overview::REFRESH_MS) {
            (panel(&dashboard, true).await)
        }
    };
    view::page("Health", Nav::Health, dashboard.signed_in(&headers), body).into_response()
}

/// The health table, `detailed` with last errors and breaker states.
pub async fn panel(dashboard: &Dashboard, detailed: bool) -> Markup {
    let report = fetch(PANEL_TIMEOUT, async {
        Ok::<_, Infallible>(dashboard.sources.health.report().await)
    })
    .await;
    let key = if detailed { "health-detail" } else { "health" };
    dashboard
        .memory
        .render(key, report.map(|components| table(&components, detailed)))
}

fn kind(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Dependency => "dependency",
        ComponentKind::Role => "role",
    }
}

fn table(components: &[ComponentReport], detailed: bool) -> Markup {
    html! {
        div.scroll {
            table.health {
                thead {
                    tr {
                        th { "component" } th { "status" }
                        @if detailed { th { "kind" } th { "since" } th { "breaker" } th { "detail" } th { "last error" } }
                        @else { th { "breaker" } }
                    }
                }
                tbody {
                    @for c in components {
                        tr data-component=(c.name) data-status=(c.status.as_str()) {
                            th scope="row" { (c.name) }
                            td { (view::status(c.status)) }
                            @if detailed {
                                td { (kind(c.kind)) }
                                td { @if let Some(since) = &c.since { (view::time(since)) } @else { (view::empty()) } }
                            }
                            td { @if let Some(b) = &c.breaker { span class={ "breaker breaker-" (b) } { (b) } } @else { (view::empty()) } }
                            @if detailed {
                                td.detail { @if let Some(d) = &c.detail { (d) } @else { (view::empty()) } }
                                td.detail { @if let Some(e) = &c.last_error { (e) } @else { (view::empty()) } }
                            }
                        }
                    }
                }
            }
        }
    }
}
