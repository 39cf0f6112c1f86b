//! `GET /v1/dead-letters`, `POST /v1/dead-letters/{queue}/{id}/redrive` and
//! `GET /v1/queues`.
//!
//! Only the configured queues are reachable: a queue name from the client is
//! checked against [`crate::ReadApi::queues`] before it reaches the broker.

use auditflow_core::broker::{BrokerError, DeadLetter, QueueStats};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::params::{ApiQuery, DeadLetterParams};
use crate::AppState;

/// Body of `GET /v1/dead-letters`.
#[derive(Debug, Serialize)]
pub struct DeadLetters {
    /// Newest first; each names its queue and the reason it was given up on.
    pub items: Vec<DeadLetter>,
}

/// Sizes of one configured queue.
#[derive(Debug, Serialize)]
pub struct QueueReport {
    /// The queue's name.
    pub queue: String,
    /// Its sizes.
    #[serde(flatten)]
    pub stats: QueueStats,
}

/// Body of `GET /v1/queues`.
#[derive(Debug, Serialize)]
pub struct Queues {
    /// One entry per configured queue, in configuration order.
    pub queues: Vec<QueueReport>,
}

/// `GET /v1/dead-letters?queue=&limit=`: the newest dead letters of one
/// configured queue, or of all of them merged (newest first) when `queue` is absent.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<DeadLetterParams>,
) -> Result<Json<DeadLetters>, ApiError> {
    let limit = params.limit()?;
    let queues: Vec<&String> = match params.queue.as_deref().filter(|q| !q.is_empty()) {
        Some(queue) => {
            let configured = state.queues.iter().find(|q| *q == queue).ok_or_else(|| {
                ApiError::param(
                    "queue",
                    format!(
                        "'{}' is not a configured queue (one of: {})",
                        queue.chars().take(64).collect::<String>(),
                        state.queues.join(", ")
                    ),
                )
            })?;
            vec![configured]
        }
        None => state.queues.iter().collect(),
    };
    let mut items = Vec::new();
    for queue in queues {
        items.extend(state.broker.dead_letters(queue, limit as usize).await?);
    }
    items.sort_by_key(|item| std::cmp::Reverse(item.failed_at));
    items.truncate(limit as usize);
    Ok(Json(DeadLetters { items }))
}

/// `POST /v1/dead-letters/{queue}/{id}/redrive`: moves a dead letter back
/// onto its queue. 404 for an unknown queue or dead letter (including an id
/// the broker rejects as malformed).
pub async fn redrive(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    const NOT_FOUND: ApiError = ApiError::NotFound("dead letter not found");
    let Ok(Path((queue, id))) = path else {
        return Err(NOT_FOUND);
    };
    if !state.queues.contains(&queue) {
        return Err(ApiError::NotFound("unknown queue"));
    }
    match state.broker.redrive(&queue, &id).await {
        Ok(true) => Ok(Json(json!({ "redriven": true }))),
        Ok(false) | Err(BrokerError::Rejected(_)) => Err(NOT_FOUND),
        Err(err) => Err(err.into()),
    }
}

/// `GET /v1/queues`: sizes of every configured queue.
pub async fn queues(State(state): State<AppState>) -> Result<Json<Queues>, ApiError> {
    let mut queues = Vec::with_capacity(state.queues.len());
    for queue in state.queues.iter() {
        queues.push(QueueReport {
            queue: queue.clone(),
            stats: state.broker.stats(queue).await?,
        });
    }
    Ok(Json(Queues { queues }))
}
