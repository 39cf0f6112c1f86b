//! The ingest role: `POST /v1/events`.
//!
//! Accepts one event, a JSON array, or NDJSON. Answers 202 with the accepted
//! ids only after the broker has durably committed them; never 202 when it
//! cannot take the events (429 when a queue is over its bound, 503 when the
//! broker is unavailable or the process is draining, both with Retry-After).
//!
//! By default a request is all-or-nothing: if any item is invalid, the answer
//! is 400 with a reason per item and nothing is stored. With `?partial=true`
//! the valid items are accepted (202) and the invalid ones listed.

mod items;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use auditflow_core::broker::{
    BrokerError, Headers, Message, HEADER_CORRELATION_ID, HEADER_INGESTED_AT,
};
use auditflow_core::time::format_timestamp;

use crate::context::Context;
use crate::metrics::ResultLabel;
use items::{for_each_item, MalformedBody};

/// Query parameters of `POST /v1/events`.
#[derive(Debug, Default, Deserialize)]
pub struct IngestParams {
    /// Accept the valid items of a batch even if some are invalid.
    #[serde(default)]
    pub partial: bool,
}

/// One rejected item.
#[derive(Debug, Serialize)]
pub struct ItemError {
    /// Position of the item in the request (0-based; for NDJSON, the line's item index).
    pub index: usize,
    /// The offending field.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// Body of a 202 answer.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// Ids of the accepted events, in request order.
    pub accepted: Vec<Uuid>,
    /// Indexes of the items whose id was assigned by AuditFlow.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assigned_ids: Vec<usize>,
    /// With `?partial=true`: the items that were refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<ItemError>,
}

fn error_body(status: StatusCode, message: &str, retry_after: Option<u64>) -> Response {
    let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Marks the spans of a request's events failed: they were not accepted.
fn fail_all(spans: &[tracing::Span], reason: &str) {
    for span in spans {
        crate::traces::spans::fail(span, reason);
    }
}

/// `POST /v1/events`. Its log lines carry `role = ingest` (an ERROR-level
/// span so that it exists whatever the log level).
#[tracing::instrument(level = "error", name = "role", skip_all, fields(role = "ingest"))]
pub async fn post_events(
    State(ctx): State<Context>,
    params: Result<Query<IngestParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // axum's own rejections answer in plain text; a client gets the same
    // JSON `{"error": ...}` for these as for every other refusal.
    let Query(params) = match params {
        Ok(params) => params,
        Err(e) => {
            return error_body(
                StatusCode::BAD_REQUEST,
                &format!("bad query: {}", e.body_text()),
                None,
            )
        }
    };
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            let reason = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "request body over the limit of {} bytes (http.max_body_bytes)",
                    ctx.config.http.max_body_bytes
                )
            } else {
                format!("cannot read the request body: {}", e.body_text())
            };
            return error_body(e.status(), &reason, None);
        }
    };
    if ctx.health.is_draining() {
        return error_body(StatusCode::SERVICE_UNAVAILABLE, "shutting down", Some(5));
    }
    // Held until the broker has confirmed this request's events (or refused
    // them): what bounds the memory of ingest as a whole.
    let bound = ctx.config.http.max_bytes_in_flight;
    let Ok(_in_flight) = ctx
        .ingest_in_flight
        .acquire_many(u32::try_from(body.len().clamp(1, bound)).unwrap_or(u32::MAX))
        .await
    else {
        return error_body(StatusCode::SERVICE_UNAVAILABLE, "shutting down", Some(5));
    };
    let request_correlation = headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
        .map(str::to_string);
    let ingested_at = format_timestamp(&chrono::Utc::now());
    let queue = &ctx.config.broker.events_queue;
    // One span per accepted event when tracing is on (each event its own
    // trace, or the caller's when the request carried a `traceparent`).
    let trace = crate::traces::enabled().then(|| {
        (
            crate::traces::propagation::extract_http(&headers),
            crate::traces::spans::messaging_system(&ctx.config.backends.broker),
        )
    });
    let mut spans = Vec::new();
    let limit = ctx.config.http.max_events_per_request;
    let mut accepted = Vec::new();
    let mut assigned_ids = Vec::new();
    let mut rejected = Vec::new();
    let mut messages = Vec::new();
    let mut index = 0;
    // Each item becomes its wire message (or its reason) as soon as it is
    // parsed; see `items` for why.
    let count = for_each_item(&body, limit, |item| {
        match item {
            Ok(parsed) => {
                let event = parsed.event;
                if parsed.id_assigned {
                    assigned_ids.push(index);
                }
                let mut msg_headers = Headers::new();
                msg_headers.insert(
                    HEADER_CORRELATION_ID.into(),
                    request_correlation
                        .clone()
                        .unwrap_or_else(|| event.event_id.to_string()),
                );
                msg_headers.insert(HEADER_INGESTED_AT.into(), ingested_at.clone());
                let message_id = event.event_id.to_string();
                if let Some((parent, system)) = &trace {
                    let span = crate::traces::spans::ingest(&message_id, parent, queue, system);
                    crate::traces::spans::inject(&span, &mut msg_headers);
                    spans.push(span);
                }
                accepted.push(event.event_id);
                messages.push(Message {
                    message_id,
                    payload: Bytes::from(event.to_json_bytes()),
                    headers: msg_headers,
                });
            }
            Err(e) => rejected.push(ItemError {
                index,
                field: e.field,
                reason: e.reason,
            }),
        }
        index += 1;
    });
    // The parsed messages hold their own bytes: the body (and the read
    // buffer it may share with hyper) is not kept while the broker confirms.
    drop(body);
    let count = match count {
        Ok(count) => count,
        Err(MalformedBody(reason)) => {
            ctx.metrics
                .events_rejected
                .get_or_create(&ResultLabel {
                    result: "malformed_body",
                })
                .inc();
            return error_body(StatusCode::BAD_REQUEST, &reason, None);
        }
    };
    if count > limit {
        fail_all(&spans, "request over http.max_events_per_request");
        return error_body(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("{count} events in one request; the limit is {limit}"),
            None,
        );
    }
    if !rejected.is_empty() {
        ctx.metrics
            .events_rejected
            .get_or_create(&ResultLabel { result: "invalid" })
            .inc_by(rejected.len() as u64);
        if !params.partial || messages.is_empty() {
            fail_all(&spans, "request refused: invalid items");
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({
                    "error": format!("{} of {} items are invalid; nothing was accepted", rejected.len(), rejected.len() + messages.len()),
                    "rejected": rejected,
                })),
            )
                .into_response();
        }
    }
    let published = messages.len() as u64;
    for span in &spans {
        crate::traces::spans::set(span, "auditflow.request.events", published as i64);
    }
    // Held back (not refused) while the queue is full for a moment; if it
    // stays full, the publish below is refused and the client gets 429.
    ctx.broker
        .wait_for_room(queue, messages.len(), ctx.config.http.queue_full_wait)
        .await;
    let result = ctx.broker.publish(queue, &messages).await;
    // Freed as soon as the broker has answered, not with the response.
    drop(messages);
    if let Err(e) = &result {
        fail_all(&spans, &e.to_string());
    }
    // The spans end here, when the broker has answered.
    drop(spans);
    match result {
        Ok(()) => {
            ctx.metrics.events_ingested.inc_by(published);
            (
                StatusCode::ACCEPTED,
                Json(Accepted {
                    accepted,
                    assigned_ids,
                    rejected,
                }),
            )
                .into_response()
        }
        Err(BrokerError::Full { queue, depth }) => {
            ctx.metrics
                .events_rejected
                .get_or_create(&ResultLabel {
                    result: "queue_full",
                })
                .inc_by(published);
            error_body(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("queue {queue} is full ({depth} messages); retry later"),
                Some(1),
            )
        }
        Err(e) => {
            ctx.metrics
                .events_rejected
                .get_or_create(&ResultLabel {
                    result: "unavailable",
                })
                .inc_by(published);
            tracing::warn!(error = %e, "publish failed; answering 503");
            error_body(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot accept events now: {e}"),
                Some(2),
            )
        }
    }
}
