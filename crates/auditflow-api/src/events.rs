//! `GET /v1/events` and `GET /v1/events/{event_id}`.

use auditflow_core::store::{AlertQuery, Page, StoredAlert, StoredEvent, MAX_PAGE};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

use crate::error::ApiError;
use crate::params::{ApiQuery, EventParams};
use crate::{parse_id, AppState};

/// One event with the alerts it caused.
#[derive(Debug, Serialize)]
pub struct EventDetail {
    /// The event and when it was stored.
    #[serde(flatten)]
    pub event: StoredEvent,
    /// Alerts whose `correlation_id` is this event (newest first, at most
    /// `MAX_PAGE`; a single event raises at most one alert per rule).
    pub alerts: Vec<StoredAlert>,
}

/// `GET /v1/events`: one page of events, newest first.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Result<Json<Page<StoredEvent>>, ApiError> {
    let query = params.into_query()?;
    Ok(Json(state.store.events(&query).await?))
}

/// `GET /v1/events/{event_id}`: the event and its alerts; 404 when unknown or
/// when the id is not a UUID.
pub async fn get(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EventDetail>, ApiError> {
    const NOT_FOUND: ApiError = ApiError::NotFound("event not found");
    let event_id = parse_id(path).ok_or(NOT_FOUND)?;
    let event = state.store.event(event_id).await?.ok_or(NOT_FOUND)?;
    let alerts = state
        .store
        .alerts(&AlertQuery {
            correlation_id: Some(event_id),
            limit: MAX_PAGE,
            ..Default::default()
        })
        .await?
        .items;
    Ok(Json(EventDetail { event, alerts }))
}
