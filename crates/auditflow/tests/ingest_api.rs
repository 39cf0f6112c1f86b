//! The ingest API's contract, driven through the real router on the real
//! embedded backends: 202 only after the commit, reasons per invalid item,
//! back-pressure (429/503 with Retry-After), auth and rate limits.

use std::sync::Arc;

use auditflow::config::Config;
use auditflow::context::Context;
use auditflow::platform::build_context;
use auditflow::server::{router, Surface};
use auditflow_embedded::{Embedded, EmbeddedOptions};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn event(n: u32) -> Value {
    json!({
        "event_id": format!("00000000-0000-4000-8000-{n:012}"),
        "timestamp": "2026-11-22T21:46:30.165174Z",
        "source_service": "ingest-test",
        "server_hostname": "web-01",
        "event_type": "user_login",
        "severity": "INFO",
        "user_id": "alice",
        "action_result": "SUCCESS",
        "details": {"protocol": "ssh"},
        "tenant": "acme"
    })
}

struct Harness {
    ctx: Context,
    _embedded: Embedded,
    _dir: tempfile::TempDir,
}

fn harness(tune: impl FnOnce(&mut Config, &mut EmbeddedOptions)) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let mut options = EmbeddedOptions::default();
    tune(&mut config, &mut options);
    let embedded = Embedded::open(dir.path(), options).expect("embedded");
    let (ctx, _) = build_context(
        Arc::new(config),
        embedded.broker(),
        embedded.store(),
        embedded.windows(),
        CancellationToken::new(),
    )
    .expect("context");
    Harness {
        ctx,
        _embedded: embedded,
        _dir: dir,
    }
}

async fn post(
    ctx: &Context,
    uri: &str,
    body: impl Into<Body>,
    token: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = router(
        ctx.clone(),
        Surface {
            ingest: true,
            read_api: true,
        },
    )
    .oneshot(request.body(body.into()).expect("request"))
    .await
    .expect("response");
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, retry_after, body)
}

async fn queued(ctx: &Context) -> u64 {
    let stats = ctx
        .broker
        .stats(&ctx.config.broker.events_queue)
        .await
        .expect("stats");
    stats.ready + stats.unacked
}

#[tokio::test]
async fn accepts_one_event_an_array_and_ndjson_only_once_durable() {
    let h = harness(|_, _| {});
    let (status, _, body) = post(&h.ctx, "/v1/events", event(1).to_string(), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body["accepted"],
        json!(["00000000-0000-4000-8000-000000000001"])
    );
    assert_eq!(
        queued(&h.ctx).await,
        1,
        "202 means it is in the durable queue"
    );

    let array = json!([event(2), event(3)]).to_string();
    let (status, _, body) = post(&h.ctx, "/v1/events", array, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["accepted"].as_array().map(Vec::len), Some(2));

    let ndjson = format!("{}\n\n{}\n", event(4), event(5));
    let (status, _, _) = post(&h.ctx, "/v1/events", ndjson, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(queued(&h.ctx).await, 5);

    // Without an id, one is assigned and the answer says which item got it.
    let mut no_id = event(6);
    no_id.as_object_mut().map(|o| o.remove("event_id"));
    let (status, _, body) = post(&h.ctx, "/v1/events", no_id.to_string(), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["assigned_ids"], json!([0]));
    assert!(body["accepted"][0]
        .as_str()
        .is_some_and(|id| id.len() == 36));
}

#[tokio::test]
async fn invalid_items_get_reasons_and_nothing_is_accepted_unless_partial() {
    let h = harness(|_, _| {});
    let mut bad = event(2);
    bad["severity"] = json!("LOUD");
    let batch = json!([event(1), bad, {"event_id": "nope"}]).to_string();
    let (status, _, body) = post(&h.ctx, "/v1/events", batch.clone(), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let rejected = body["rejected"].as_array().expect("rejected list");
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["field"], "severity");
    assert_eq!(rejected[1]["index"], 2);
    assert_eq!(queued(&h.ctx).await, 0, "an invalid batch stores nothing");

    let (status, _, body) = post(&h.ctx, "/v1/events?partial=true", batch, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["accepted"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["rejected"].as_array().map(Vec::len), Some(2));
    assert_eq!(queued(&h.ctx).await, 1);

    let (status, _, body) = post(&h.ctx, "/v1/events", "[{\"a\":", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("JSON")));
}

/// PostgreSQL cannot store U+0000, so ingest refuses it in every mode,
/// with the field's path, rather than acknowledging an event no store can
/// keep.
#[tokio::test]
async fn an_event_holding_a_nul_is_refused_with_the_field() {
    let h = harness(|_, _| {});
    let mut in_details = event(1);
    in_details["details"]["reason"] = json!("bad\u{0}");
    let mut in_user = event(2);
    in_user["user_id"] = json!("\u{0}");
    let batch = json!([event(3), in_details, in_user]).to_string();
    assert!(batch.contains("\\u0000"), "sent as JSON's escape: {batch}");
    let (status, _, body) = post(&h.ctx, "/v1/events", batch, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let rejected = body["rejected"].as_array().expect("rejected list");
    let fields: Vec<(&Value, &Value)> = rejected
        .iter()
        .map(|r| (&r["index"], &r["field"]))
        .collect();
    assert_eq!(
        fields,
        [
            (&json!(1), &json!("details.reason")),
            (&json!(2), &json!("user_id"))
        ]
    );
    assert!(rejected[0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("U+0000")));
    assert_eq!(queued(&h.ctx).await, 0);
}

#[tokio::test]
async fn oversized_bodies_and_batches_are_refused() {
    let h = harness(|config, _| {
        config.http.max_body_bytes = 4096;
        config.http.max_events_per_request = 2;
    });
    let big = json!([event(1), event(2), event(3)]).to_string();
    let (status, _, _) = post(&h.ctx, "/v1/events", big, None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let mut huge = event(4);
    huge["details"] = json!({"blob": "x".repeat(8192)});
    let (status, _, body) = post(&h.ctx, "/v1/events", huge.to_string(), None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // The same JSON reason as every other refusal, naming the limit.
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("4096 bytes (http.max_body_bytes)")),
        "{body}"
    );
    let (status, _, body) = post(
        &h.ctx,
        "/v1/events?partial=maybe",
        event(5).to_string(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("bad query")),
        "{body}"
    );
    assert_eq!(queued(&h.ctx).await, 0);
}

#[tokio::test]
async fn a_full_queue_answers_429_and_draining_answers_503_never_202() {
    let h = harness(|config, options| {
        config.broker.max_queue_depth = 3;
        options.max_queue_depth = 3;
    });
    let (status, _, _) = post(
        &h.ctx,
        "/v1/events",
        json!([event(1), event(2), event(3)]).to_string(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, retry_after, _) = post(&h.ctx, "/v1/events", event(4).to_string(), None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after.is_some(), "429 carries Retry-After");
    assert_eq!(queued(&h.ctx).await, 3);

    h.ctx.health.start_draining();
    let (status, retry_after, _) = post(&h.ctx, "/v1/events", event(5).to_string(), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after.is_some(), "503 carries Retry-After");
}

#[tokio::test]
async fn the_bearer_token_is_required_when_configured() {
    let h = harness(|config, _| config.http.auth_token = Some("s3cret".into()));
    let (status, _, _) = post(&h.ctx, "/v1/events", event(1).to_string(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = post(&h.ctx, "/v1/events", event(1).to_string(), Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = post(&h.ctx, "/v1/events", event(1).to_string(), Some("s3cret")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Health stays open for probes.
    let response = router(
        h.ctx.clone(),
        Surface {
            ingest: true,
            read_api: true,
        },
    )
    .oneshot(Request::get("/livez").body(Body::empty()).expect("request"))
    .await
    .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_client_over_its_rate_is_refused_with_retry_after() {
    let h = harness(|config, _| {
        config.http.auth_token = Some("shared".into());
        config.http.rate_limit.enabled = true;
        config.http.rate_limit.rate = 2;
        config.http.rate_limit.per = std::time::Duration::from_secs(60);
        config.http.rate_limit.burst = 2;
    });
    for n in 0..2 {
        let (status, _, _) = post(&h.ctx, "/v1/events", event(n).to_string(), Some("shared")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, retry_after, _) =
        post(&h.ctx, "/v1/events", event(9).to_string(), Some("shared")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&secs), "{secs}");
    assert_eq!(
        queued(&h.ctx).await,
        2,
        "the refused request stored nothing"
    );
}

/// `http.max_bytes_in_flight` makes concurrent requests take turns; it never
/// refuses one, also when a single body is larger than the whole bound.
#[tokio::test]
async fn requests_beyond_the_in_flight_bound_wait_their_turn_and_are_accepted() {
    let h = harness(|config, _| config.http.max_bytes_in_flight = 600);
    let bodies: Vec<String> = (0..8u32)
        .map(|r| json!((0..5).map(|i| event(r * 10 + i)).collect::<Vec<_>>()).to_string())
        .collect();
    assert!(
        bodies.iter().all(|b| b.len() > 600),
        "each body exceeds the bound"
    );
    let answers = futures::future::join_all(
        bodies
            .into_iter()
            .map(|body| post(&h.ctx, "/v1/events", body, None)),
    )
    .await;
    for (status, _, body) in &answers {
        assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
    }
    assert_eq!(queued(&h.ctx).await, 40);
    assert_eq!(
        h.ctx.ingest_in_flight.available_permits(),
        600,
        "every permit is returned"
    );
}
