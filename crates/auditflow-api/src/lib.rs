//! AuditFlow's read API: axum routers over the core [`Store`] and [`Broker`]
//! traits, with no knowledge of the backends behind them.
//!
//! | Method | Path | Answer |
//! |---|---|---|
//! | GET | `/v1/events` | `{"items": [event + stored_at], "next_cursor": str \| null}` |
//! | GET | `/v1/events/{event_id}` | event + `stored_at` + `alerts` it caused; 404 |
//! | GET | `/v1/alerts` | `{"items": [alert + received_at], "next_cursor": str \| null}` |
//! | GET | `/v1/alerts/{alert_id}` | `{"alert", "received_at", "deliveries"}`; 404 |
//! | GET | `/alerts?limit=&offset=` | legacy notification API: array of rows |
//! | GET | `/alerts/{alert_id}` | legacy notification API: one row; 404 `{"message"}` |
//! | GET | `/v1/dead-letters?queue=&limit=` | `{"items": [dead letter with reason]}` |
//! | POST | `/v1/dead-letters/{queue}/{id}/redrive` | `{"redriven": true}`; 404 |
//! | GET | `/v1/queues` | `{"queues": [{"queue", "ready", "unacked", "dead_lettered"}]}` |
//!
//! Errors are JSON: 400 `{"error": ...}` naming the parameter, 404, and 503
//! `{"error": "store unavailable" | "broker unavailable", "transient": bool}`
//! with `Retry-After` whenever a dependency fails. Never a 500.
//!
//! The router sets no fallback, so it can be merged with other routers.
#![deny(missing_docs)]

use std::ops::Deref;
use std::sync::Arc;

use auditflow_core::{Broker, Store};
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use uuid::Uuid;

pub mod alerts;
pub mod dead_letters;
pub mod error;
pub mod events;
pub mod legacy;
pub mod params;

pub use error::ApiError;
pub use legacy::legacy_alert_row;

/// What the read API reads from.
#[derive(Clone)]
pub struct ReadApi {
    /// Events, alerts and deliveries.
    pub store: Arc<dyn Store>,
    /// Queues and their dead letters.
    pub broker: Arc<dyn Broker>,
    /// The queues `/v1/queues` and `/v1/dead-letters` report on (e.g.
    /// `audit_events`, `audit_alerts`); no other queue is reachable.
    pub queues: Vec<String>,
}

/// Shared handler state: the [`ReadApi`] behind an `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<ReadApi>);

impl Deref for AppState {
    type Target = ReadApi;
    fn deref(&self) -> &ReadApi {
        &self.0
    }
}

/// All read routes, state applied.
pub fn router(api: ReadApi) -> Router {
    Router::new()
        .route("/v1/events", get(events::list))
        .route("/v1/events/{event_id}", get(events::get))
        .route("/v1/alerts", get(alerts::list))
        .route("/v1/alerts/{alert_id}", get(alerts::get))
        .route("/alerts", get(legacy::list))
        .route("/alerts/{alert_id}", get(legacy::get))
        .route("/v1/dead-letters", get(dead_letters::list))
        .route(
            "/v1/dead-letters/{queue}/{id}/redrive",
            post(dead_letters::redrive),
        )
        .route("/v1/queues", get(dead_letters::queues))
        .with_state(AppState(Arc::new(api)))
}

/// The UUID in a single-segment path, or `None` (answered as 404) when the
/// segment is not a UUID.
fn parse_id(path: Result<Path<String>, PathRejection>) -> Option<Uuid> {
    let Path(raw) = path.ok()?;
    Uuid::try_parse(raw.trim()).ok()
}
