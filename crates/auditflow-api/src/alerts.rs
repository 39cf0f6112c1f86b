//! `GET /v1/alerts` and `GET /v1/alerts/{alert_id}`.

use auditflow_core::store::{DeliveryRecord, Page, StoredAlert};
use auditflow_core::Alert;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::ApiError;
use crate::params::{AlertParams, ApiQuery};
use crate::{parse_id, AppState};

/// One alert with its notification outcomes.
#[derive(Debug, Serialize)]
pub struct AlertDetail {
    /// The alert as raised.
    pub alert: Alert,
    /// When the store first committed it.
    pub received_at: DateTime<Utc>,
    /// One record per notification channel that handled it.
    pub deliveries: Vec<DeliveryRecord>,
}

/// `GET /v1/alerts`: one page of alerts, newest first.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<AlertParams>,
) -> Result<Json<Page<StoredAlert>>, ApiError> {
    let query = params.into_query()?;
    Ok(Json(state.store.alerts(&query).await?))
}

/// `GET /v1/alerts/{alert_id}`: the alert and its deliveries; 404 when unknown
/// or when the id is not a UUID.
pub async fn get(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AlertDetail>, ApiError> {
    const NOT_FOUND: ApiError = ApiError::NotFound("alert not found");
    let alert_id = parse_id(path).ok_or(NOT_FOUND)?;
    let stored = state.store.alert(alert_id).await?.ok_or(NOT_FOUND)?;
    let deliveries = state.store.deliveries(alert_id).await?;
    Ok(Json(AlertDetail {
        alert: stored.alert,
        received_at: stored.received_at,
        deliveries,
    }))
}
