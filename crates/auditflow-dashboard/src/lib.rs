//! AuditFlow's web dashboard: server-rendered HTML pages over the core
//! [`Store`](auditflow_core::Store) and [`Broker`](auditflow_core::Broker)
//! traits and a [`HealthSource`], with a few lines of JavaScript that
//! refresh panels in place. Assets (stylesheet, script, icon) are embedded in
//! the binary; charts are server-rendered SVG.
//!
//! | Path | Page |
//! |---|---|
//! | `/dashboard` | overview: throughput, alerts over time, by rule and severity, top users and hosts, recent alerts, queues, health, SLOs and error budgets; live |
//! | `/dashboard/alerts` | alerts with filters and cursor pagination; live on the first page |
//! | `/dashboard/alerts/{id}` | one alert: triggering event, related events, deliveries, remediation |
//! | `/dashboard/events` | event search; `/dashboard/events/{id}`: one event and the alerts it caused |
//! | `/dashboard/dead-letters` | dead letters with reasons, re-drive |
//! | `/dashboard/health` | every dependency and role: status, last error, breaker |
//! | `/dashboard/login` | sign-in form, when a token is configured |
//!
//! Degradation: each panel fetches through [`panel::fetch`] (a timeout on
//! top of the resilience policy the sources already carry); a failed panel
//! shows "data unavailable (reason, since when)" and its last good content
//! marked stale, and the page still answers 200. Failures of a whole page's
//! single source (an alert's detail, say) answer 503, never 500.
#![deny(missing_docs)]

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

pub mod assets;
pub mod auth;
pub mod chart;
pub mod pages;
pub mod panel;
pub mod sources;
pub mod throughput;
pub mod view;

pub use auth::Auth;
pub use sources::{ComponentKind, ComponentReport, HealthSource, SloSource, Sources, Status};

/// The dashboard's state, shared by its handlers.
pub struct Dashboard {
    /// Where data comes from.
    pub sources: Sources,
    /// Who may look.
    pub auth: Auth,
    /// Last good render of each overview panel.
    pub memory: panel::PanelMemory,
    /// Sampled store totals for the rate charts.
    pub throughput: throughput::Throughput,
}

impl Dashboard {
    /// A dashboard over `sources`, guarded by `auth`.
    pub fn new(sources: Sources, auth: Auth) -> Dashboard {
        Dashboard {
            sources,
            auth,
            memory: panel::PanelMemory::default(),
            throughput: throughput::Throughput::default(),
        }
    }

    /// True when a token is configured and the request carries it (shows
    /// the sign-out button).
    pub fn signed_in(&self, headers: &axum::http::HeaderMap) -> bool {
        self.auth.required() && self.auth.allows(headers)
    }
}

/// Every dashboard route under `/dashboard`, state and access control
/// applied. Sets no fallback, so it can be merged with other routers.
pub fn router(dashboard: Dashboard) -> Router {
    let state = Arc::new(dashboard);
    Router::new()
        .route("/dashboard", get(pages::overview::page))
        .route("/dashboard/", get(pages::overview::page))
        .route("/dashboard/panels/{name}", get(pages::overview::panel))
        .route("/dashboard/alerts", get(pages::alerts::list))
        .route("/dashboard/alerts/{id}", get(pages::alerts::detail))
        .route("/dashboard/events", get(pages::events::list))
        .route("/dashboard/events/{id}", get(pages::events::detail))
        .route("/dashboard/dead-letters", get(pages::dead_letters::list))
        .route(
            "/dashboard/dead-letters/{queue}/{id}/redrive",
            post(pages::dead_letters::redrive),
        )
        .route("/dashboard/health", get(pages::health::page))
        .route("/dashboard/login", get(auth::login_page).post(auth::login))
        .route("/dashboard/logout", post(auth::logout))
        .route("/dashboard/assets/{file}", get(assets::serve))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_login,
        ))
        .layer(middleware::map_response(security_headers))
        .with_state(state)
}

/// Defence in depth behind the escaping: no inline script or style can run,
/// nothing is framed, and pages with event data are not cached.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
