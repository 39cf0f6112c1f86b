//! The load driver against a real (tiny, in-test) HTTP ingest server.

use std::collections::BTreeSet;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditflow_core::event::Event;
use auditflow_generate::{demo_options, run, GenerateOptions, StopReason};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// How the test server behaves.
#[derive(Clone, Default)]
struct Behaviour {
    /// Answer this many first requests with 429.
    throttle_first: usize,
    /// `Retry-After` on those 429s.
    retry_after: &'static str,
    /// Required bearer token.
    token: Option<&'static str>,
}

#[derive(Default)]
struct Server {
    behaviour: Behaviour,
    requests: AtomicUsize,
    accepted: Mutex<Vec<String>>,
    arrivals: Mutex<Vec<Instant>>,
}

async fn ingest(State(server): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = server.requests.fetch_add(1, Ordering::SeqCst);
    server.arrivals.lock().unwrap().push(Instant::now());
    if n < server.behaviour.throttle_first {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, server.behaviour.retry_after)],
            "slow down",
        )
            .into_response();
    }
    if let Some(token) = server.behaviour.token {
        let expected = format!("Bearer {token}");
        if headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            != Some(&expected)
        {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not a JSON array").into_response();
    };
    let mut ids = Vec::new();
    for item in items {
        match Event::from_value(item) {
            Ok(parsed) => ids.push(parsed.event.event_id.to_string()),
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    }
    server.accepted.lock().unwrap().extend(ids.iter().cloned());
    (StatusCode::ACCEPTED, Json(json!({ "accepted": ids }))).into_response()
}

async fn spawn_server(behaviour: Behaviour) -> (String, Arc<Server>) {
    let server = Arc::new(Server {
        behaviour,
        ..Server::default()
    });
    let app = Router::new()
        .route("/v1/events", post(ingest))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, app).into_future());
    (format!("http://{addr}"), server)
}

fn options(url: &str) -> GenerateOptions {
    GenerateOptions {
        url: url.to_string(),
        rate: 0.0,
        seed: Some(1),
        ..GenerateOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_bound_with_malformed_items_and_acked_ids() {
    let (url, server) = spawn_server(Behaviour::default()).await;
    let report = run(
        GenerateOptions {
            count: Some(200),
            malformed_ratio: 0.2,
            burst_probability: 0.05,
            record_acked: true,
            ..options(&url)
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.stopped_by, StopReason::Count);
    assert_eq!(report.sent, 200);
    assert_eq!(
        report.sent,
        report.acknowledged + report.rejected + report.failed
    );
    assert_eq!(report.failed, 0);
    assert_eq!(report.requests, 200);
    assert_eq!(report.retries, 0);
    // One item per request: exactly the malformed ones are refused.
    assert_eq!(report.rejected, report.malformed_sent);
    assert!(
        report.rejected >= 15 && report.rejected <= 70,
        "{}",
        report.rejected
    );
    assert_eq!(
        report.status_counts.get(&202).copied(),
        Some(report.acknowledged)
    );
    assert_eq!(
        report.status_counts.get(&400).copied(),
        Some(report.rejected)
    );
    assert!(report.bursts > 0);
    assert_eq!(report.latency.samples, 200);
    assert!(report.latency.p50_ms <= report.latency.p99_ms);
    assert!(report.latency.p99_ms <= report.latency.max_ms);
    // The client-side oracle matches what the server took.
    let acked: BTreeSet<_> = report.acked_ids.iter().cloned().collect();
    let accepted: BTreeSet<_> = server.accepted.lock().unwrap().iter().cloned().collect();
    assert_eq!(acked.len() as u64, report.acknowledged);
    assert_eq!(acked, accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_share_their_outcome_and_the_last_batch_is_cut_to_count() {
    let (url, server) = spawn_server(Behaviour::default()).await;
    let report = run(
        GenerateOptions {
            count: Some(105),
            batch: 10,
            malformed_ratio: 0.03,
            ..options(&url)
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.sent, 105);
    assert_eq!(report.requests, 11);
    assert_eq!(server.requests.load(Ordering::SeqCst), 11);
    assert_eq!(report.sent, report.acknowledged + report.rejected);
    assert!(report.rejected > 0, "some batch held a malformed item");
    assert_eq!(
        server.accepted.lock().unwrap().len() as u64,
        report.acknowledged
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_requests_are_retried_after_retry_after() {
    let (url, server) = spawn_server(Behaviour {
        throttle_first: 3,
        retry_after: "1",
        ..Behaviour::default()
    })
    .await;
    let started = Instant::now();
    let report = run(
        GenerateOptions {
            count: Some(20),
            concurrency: 4,
            ..options(&url)
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.acknowledged, 20);
    assert_eq!(report.failed, 0);
    assert_eq!(report.retries, 3);
    assert_eq!(report.status_counts.get(&429).copied(), Some(3));
    assert_eq!(report.requests, 23);
    assert_eq!(server.requests.load(Ordering::SeqCst), 23);
    // Retry-After: 1 was honoured (every 429 was waited out).
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert!(report.elapsed_secs >= 0.95);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded() {
    let (url, server) = spawn_server(Behaviour {
        throttle_first: usize::MAX,
        retry_after: "0",
        ..Behaviour::default()
    })
    .await;
    let report = run(
        GenerateOptions {
            count: Some(2),
            max_attempts: 3,
            ..options(&url)
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.sent, 2);
    assert_eq!(report.failed, 2);
    assert_eq!(report.requests, 6);
    assert_eq!(report.retries, 4);
    assert_eq!(server.requests.load(Ordering::SeqCst), 6);
    assert!(report
        .last_error
        .as_deref()
        .unwrap_or_default()
        .contains("429"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_errors_count_as_failed() {
    // A port nobody listens on any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let report = run(
        GenerateOptions {
            count: Some(3),
            max_attempts: 2,
            ..options(&format!("http://{addr}"))
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.sent, 3);
    assert_eq!(report.failed, 3);
    assert_eq!(report.acknowledged + report.rejected, 0);
    assert_eq!(report.retries, 3);
    assert!(report.status_counts.is_empty());
    assert!(report.last_error.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_token_is_sent() {
    let (url, _server) = spawn_server(Behaviour {
        token: Some("s3cret"),
        ..Behaviour::default()
    })
    .await;
    let with = run(
        GenerateOptions {
            count: Some(5),
            token: Some("s3cret".into()),
            ..options(&url)
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(with.acknowledged, 5);
    let without = run(
        GenerateOptions {
            count: Some(5),
            token: None,
            ..options(&url)
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(without.rejected, 5);
    assert_eq!(without.status_counts.get(&401).copied(), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_pacing_holds_and_duration_stops_the_run() {
    let (url, server) = spawn_server(Behaviour::default()).await;
    let started = Instant::now();
    let report = run(
        GenerateOptions {
            rate: 200.0,
            duration: Some(Duration::from_secs(1)),
            count: Some(100_000),
            concurrency: 4,
            ..options(&url)
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(report.stopped_by, StopReason::Duration);
    assert!((150..=260).contains(&report.sent), "sent {}", report.sent);
    assert_eq!(report.sent, report.acknowledged);
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(
        report.achieved_rate > 100.0 && report.achieved_rate < 300.0,
        "{}",
        report.achieved_rate
    );
    // Paced, not bunched: no 100 ms slice got more than a third of the events.
    let arrivals = server.arrivals.lock().unwrap().clone();
    let first = arrivals[0];
    let mut slices = [0usize; 12];
    for at in arrivals {
        let slice = (at.duration_since(first).as_millis() / 100) as usize;
        slices[slice.min(11)] += 1;
    }
    assert!(slices.iter().all(|&n| n <= 70), "{slices:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_until_cancelled() {
    let (url, server) = spawn_server(Behaviour::default()).await;
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let opts = GenerateOptions {
        rate: 50.0,
        ..demo_options(url)
    };
    let report = run(opts, shutdown).await.unwrap();
    assert_eq!(report.stopped_by, StopReason::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(report.sent >= 5, "{}", report.sent);
    assert_eq!(
        report.sent,
        report.acknowledged + report.rejected + report.failed
    );
    assert_eq!(report.rejected, 0, "the demo sends nothing malformed");
    assert!(server.accepted.lock().unwrap().len() as u64 >= report.acknowledged);
}

#[tokio::test]
async fn unbounded_runs_are_refused() {
    let err = run(options("http://127.0.0.1:9"), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--count or --duration"), "{err}");
}
