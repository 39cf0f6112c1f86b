//! The HTTP server of a process: ingest, the read API, health and metrics,
//! behind body limits, a request timeout, bearer-token auth and metrics.

use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tower_http::timeout::TimeoutLayer;

use crate::context::Context;
use crate::health::Status;
use crate::roles::ingest;

/// Which parts of the API this process serves.
#[derive(Debug, Clone, Copy)]
pub struct Surface {
    /// `POST /v1/events`.
    pub ingest: bool,
    /// The read API (`/v1/events`, `/v1/alerts`, legacy `/alerts`, dead letters).
    pub read_api: bool,
}

/// Builds the router for `surface`.
pub fn router(ctx: Context, surface: Surface) -> Router {
    router_with(ctx, surface, Router::new())
}

/// Builds the router for `surface` plus `extra` routes that do their own
/// access control (the dashboard: bearer token or login cookie), under the
/// same limits, timeout and metrics.
pub fn router_with(ctx: Context, surface: Surface, extra: Router) -> Router {
    let mut api = Router::new();
    if surface.ingest {
        api = api.route(
            "/v1/events",
            post(ingest::post_events)
                .layer(middleware::from_fn_with_state(ctx.clone(), rate_limit)),
        );
    }
    let mut api = api.with_state(ctx.clone());
    if surface.read_api {
        api = api.merge(auditflow_api::router(auditflow_api::ReadApi {
            store: ctx.store.clone(),
            broker: ctx.broker.clone(),
            queues: vec![
                ctx.config.broker.events_queue.clone(),
                ctx.config.broker.alerts_queue.clone(),
            ],
        }));
    }
    let api = api
        .merge(crate::slo::router(ctx.slo.clone()))
        .layer(middleware::from_fn_with_state(ctx.clone(), require_token));
    let open = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(ctx.clone());
    open.merge(api)
        .merge(extra)
        .layer(DefaultBodyLimit::max(ctx.config.http.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            ctx.config.http.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(ctx, record_metrics))
}

/// Compares in constant time so the token cannot be guessed byte by byte.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    // `subtle` compares equal-length slices in constant time (the length is
    // not secret).
    subtle::ConstantTimeEq::ct_eq(given, expected).into()
}

pub(crate) async fn require_token(
    State(ctx): State<Context>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = ctx.config.http.auth_token.as_deref() {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| token_matches(g.as_bytes(), expected.as_bytes())) {
            let mut response = (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "missing or wrong bearer token"})),
            )
                .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

/// Per-client GCRA limit on ingest: keyed by bearer token, else by the
/// client's address. Answers 429 with the time until the next request fits.
async fn rate_limit(State(ctx): State<Context>, request: Request, next: Next) -> Response {
    if let Some(limiter) = &ctx.ingest_limiter {
        let token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let key = match token {
            Some(token) => format!("token:{token}"),
            None => request
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| format!("addr:{}", info.0.ip()))
                .unwrap_or_else(|| "addr:unknown".into()),
        };
        if let Err(wait) = limiter.check(&key) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"error": format!("rate limit exceeded; retry in {wait:?}")})),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
            return response;
        }
    }
    next.run(request).await
}

async fn record_metrics(State(ctx): State<Context>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| crate::sli::UNMATCHED_ROUTE.into());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    ctx.metrics.observe_http(
        method.as_str(),
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn livez() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// One live check of a dependency.
#[derive(Debug, serde::Serialize)]
struct Check {
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// Live checks plus what the roles reported.
#[derive(Debug, serde::Serialize)]
struct Probe {
    checks: std::collections::BTreeMap<&'static str, Check>,
    components: std::collections::BTreeMap<String, crate::health::ComponentHealth>,
}

impl Probe {
    fn worst(&self) -> Status {
        let checks = self.checks.values().map(|c| c.status);
        let components = self.components.values().map(|c| c.status);
        checks.chain(components).max().unwrap_or(Status::Up)
    }
}

/// Probes every dependency now, each bounded by a timeout, and folds in what
/// the roles reported.
async fn probe(ctx: &Context) -> Probe {
    // Longer than the policies' per-attempt timeouts, so a hanging dependency
    // is cut by its policy (and counted by its breaker) before the probe gives up.
    const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
    async fn bounded<E: std::fmt::Display>(
        fut: impl std::future::Future<Output = Result<(), E>>,
    ) -> Check {
        match tokio::time::timeout(PROBE_TIMEOUT, fut).await {
            Ok(Ok(())) => Check {
                status: Status::Up,
                detail: None,
            },
            Ok(Err(e)) => Check {
                status: Status::Down,
                detail: Some(e.to_string()),
            },
            Err(_) => Check {
                status: Status::Down,
                detail: Some(format!("no answer within {PROBE_TIMEOUT:?}")),
            },
        }
    }
    let (broker, store, windows) = tokio::join!(
        bounded(ctx.broker.check()),
        bounded(ctx.store.check()),
        bounded(ctx.windows.check()),
    );
    Probe {
        checks: [("broker", broker), ("store", store), ("windows", windows)]
            .into_iter()
            .collect(),
        components: ctx.health.snapshot(),
    }
}

/// Readiness is "can this process take work": not ready while draining or
/// when the broker (which ingest needs to accept anything) is down; a store
/// or window-state outage only makes it `degraded`, since events keep
/// buffering safely in the broker until the store returns.
async fn readyz(State(ctx): State<Context>) -> Response {
    let probe = probe(&ctx).await;
    let draining = ctx.health.is_draining();
    let broker_down = probe
        .checks
        .get("broker")
        .is_some_and(|c| c.status == Status::Down);
    let status = if draining || broker_down {
        "not_ready"
    } else if probe.worst() == Status::Up {
        "ready"
    } else {
        "degraded"
    };
    let report = json!({
        "status": status,
        "draining": draining,
        "checks": probe.checks,
        "components": probe.components,
    });
    let code = if status == "not_ready" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(report)).into_response()
}

/// Overall health: up, degraded or down, with every component's detail.
async fn healthz(State(ctx): State<Context>) -> Response {
    let probe = probe(&ctx).await;
    let status = probe.worst();
    let report = json!({"status": status, "checks": probe.checks, "components": probe.components});
    let code = if status == Status::Down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(report)).into_response()
}

async fn metrics(State(ctx): State<Context>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ctx.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abd", b"abc"));
        assert!(!token_matches(b"ab", b"abc"));
    }
}
