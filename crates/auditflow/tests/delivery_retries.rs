//! The retry outbox against a real HTTP endpoint: a webhook that refuses
//! (503) for a while gets every alert exactly once after it recovers, also
//! when notify was restarted in between; one that refuses for good (400)
//! is recorded failed and never asked again.
//!
//! Everything is real: the embedded broker and store, `build_context`'s
//! policies, the notify role, and an axum endpoint on a loopback socket that
//! records every alert id it answered 200 for (so a duplicate would show).

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use auditflow::channels;
use auditflow::config::Config;
use auditflow::context::Context;
use auditflow::platform::build_context;
use auditflow::roles::notify;
use auditflow_core::alert::{AlertMetadata, AnalysisRule, ImpactedResource, TriggeredBy};
use auditflow_core::broker::{Headers, Message};
use auditflow_core::event::Severity;
use auditflow_core::store::DeliveryStatus;
use auditflow_core::Alert;
use auditflow_embedded::{Embedded, EmbeddedOptions};

const POLL: Duration = Duration::from_millis(20);
const HOOK: &str = "flaky-hook";

/// What the endpoint answers and what it received.
#[derive(Default)]
struct Endpoint {
    /// Status to answer; 200 records the alert.
    status: AtomicU16,
    /// Requests answered with something else.
    refused: AtomicUsize,
    /// Alert ids answered 200, one entry per request.
    accepted: Mutex<Vec<Uuid>>,
}

impl Endpoint {
    fn answer(&self, status: StatusCode) {
        self.status.store(status.as_u16(), Ordering::SeqCst);
    }

    fn accepted(&self) -> BTreeMap<Uuid, usize> {
        let mut counts = BTreeMap::new();
        for id in self.accepted.lock().expect("lock").iter() {
            *counts.entry(*id).or_default() += 1;
        }
        counts
    }
}

async fn hook(State(endpoint): State<Arc<Endpoint>>, body: Bytes) -> StatusCode {
    let status = StatusCode::from_u16(endpoint.status.load(Ordering::SeqCst))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status != StatusCode::OK {
        endpoint.refused.fetch_add(1, Ordering::SeqCst);
        return status;
    }
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|alert| alert["alert_id"].as_str()?.parse().ok());
    match id {
        Some(id) => {
            endpoint.accepted.lock().expect("lock").push(id);
            StatusCode::OK
        }
        None => StatusCode::BAD_REQUEST,
    }
}

/// Serves `endpoint` on a free loopback port until `stop`.
async fn serve(endpoint: Arc<Endpoint>, stop: CancellationToken) -> String {
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(endpoint);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .into_future(),
    );
    url
}

/// A file channel and the webhook, with short attempts, no in-call retries,
/// a breaker that opens after 4 failures for 500 ms, and quick outbox
/// retries (200 ms doubling to 1 s).
fn config(dir: &Path, url: &str) -> Arc<Config> {
    let path = dir.join("auditflow.toml");
    std::fs::write(
        &path,
        format!(
            r#"
data_dir = "{data}"

[notify]
retry_interval = "200ms"
retry_max_interval = "1s"

[[notify.channels]]
kind = "file"
name = "file"
path = "{data}/alerts.ndjson"

[[notify.channels]]
kind = "webhook"
name = "{HOOK}"
url = "{url}"
[notify.channels.resilience.timeout]
per_attempt = "1s"
total = "1s"
[notify.channels.resilience.retry]
max_attempts = 1
[notify.channels.resilience.breaker]
minimum_calls = 4
window_size = 10
open_duration = "500ms"
max_open_duration = "500ms"
"#,
            data = dir.display(),
        ),
    )
    .expect("config");
    Arc::new(Config::load(Some(&path), &toml::Table::new()).expect("config"))
}

/// Notify running on the embedded backends in `dir`.
struct Running {
    ctx: Context,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _embedded: Embedded,
}

async fn start(config: &Arc<Config>, dir: &Path) -> Running {
    let embedded = Embedded::open(dir, EmbeddedOptions::default()).expect("open embedded");
    let (ctx, policies) = build_context(
        Arc::clone(config),
        embedded.broker(),
        embedded.store(),
        embedded.windows(),
        CancellationToken::new(),
    )
    .expect("build context");
    let built = channels::build(&config.notify.channels, dir, &policies).expect("channels");
    let task = tokio::spawn(notify::run(ctx.clone(), built));
    Running {
        ctx,
        task,
        _embedded: embedded,
    }
}

impl Running {
    async fn stop(self) {
        self.ctx.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("notify stops on shutdown")
            .expect("notify task")
            .expect("notify ends cleanly");
    }

    async fn publish(&self, n: usize) -> Vec<Uuid> {
        let alerts: Vec<Alert> = (0..n).map(|_| sample_alert()).collect();
        let messages: Vec<Message> = alerts
            .iter()
            .map(|alert| Message {
                message_id: alert.alert_id.to_string(),
                payload: Bytes::from(alert.to_json_bytes()),
                headers: Headers::new(),
            })
            .collect();
        self.ctx
            .broker
            .publish(&self.ctx.config.broker.alerts_queue, &messages)
            .await
            .expect("publish alerts");
        alerts.iter().map(|a| a.alert_id).collect()
    }

    /// The webhook's delivery status of each alert (None: no record yet).
    async fn hook_statuses(&self, ids: &[Uuid]) -> Vec<Option<DeliveryStatus>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let records = self.ctx.store.deliveries(*id).await.expect("deliveries");
            out.push(records.iter().find(|r| r.channel == HOOK).map(|r| r.status));
        }
        out
    }

    async fn acked(&self) -> bool {
        let queue = &self.ctx.config.broker.alerts_queue;
        let stats = self.ctx.broker.stats(queue).await.expect("stats");
        stats.ready + stats.unacked == 0
    }

    fn metric(&self, series: &str) -> f64 {
        self.ctx
            .metrics
            .render()
            .lines()
            .find_map(|line| {
                let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or(0.0)
    }
}

async fn wait_until(what: &str, within: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !condition().await {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

fn sample_alert() -> Alert {
    let event_id = Uuid::now_v7();
    Alert {
        alert_id: auditflow_core::alert::alert_id_for("test-rule", event_id),
        timestamp: chrono::Utc::now(),
        alert_name: "Test alert".into(),
        alert_type: "SECURITY".into(),
        severity: Severity::Warning,
        description: "a test alert for a flaky webhook".into(),
        source_service_name: "delivery-retries-test".into(),
        analysis_rule: AnalysisRule {
            rule_id: "test-rule".into(),
            rule_name: "Test rule".into(),
            rule_description: "fires in tests".into(),
        },
        triggered_by: TriggeredBy {
            actor_type: "USER".into(),
            actor_id: "alice".into(),
            client_ip: "N/A".into(),
        },
        impacted_resource: ImpactedResource {
            resource_type: "HOST".into(),
            resource_id: "host-1".into(),
            server_hostname: "host-1".into(),
        },
        action_observed: "LOGIN_FAILURE".into(),
        correlation_id: event_id,
        raw_event_data: json!({}),
        metadata: AlertMetadata::default(),
        extra: serde_json::Map::new(),
    }
}

/// Every id accepted exactly once, and nothing else.
fn assert_once(endpoint: &Endpoint, ids: &[Uuid]) {
    let accepted = endpoint.accepted();
    let expected: BTreeMap<Uuid, usize> = ids.iter().map(|id| (*id, 1)).collect();
    assert_eq!(accepted, expected, "each alert accepted exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_refuses_for_a_while_gets_every_alert_once_after_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let endpoint = Arc::new(Endpoint::default());
    endpoint.answer(StatusCode::SERVICE_UNAVAILABLE);
    let url = serve(Arc::clone(&endpoint), stop.clone()).await;
    let config = config(dir.path(), &url);
    let notify = start(&config, dir.path()).await;

    let ids = notify.publish(12).await;
    // Refused: recorded `retrying` and acked (the store holds them now, not
    // the broker), while retries keep failing.
    wait_until(
        "retrying records for every alert",
        Duration::from_secs(10),
        async || {
            notify.acked().await
                && notify
                    .hook_statuses(&ids)
                    .await
                    .iter()
                    .all(|s| *s == Some(DeliveryStatus::Retrying))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        endpoint.accepted().is_empty(),
        "nothing accepted while refusing"
    );
    let series = |result: &str| {
        format!("auditflow_notification_retries_total{{channel=\"{HOOK}\",result=\"{result}\"}}")
    };
    assert!(
        notify.metric(&series("retrying")) > 0.0,
        "failed retries are counted"
    );
    let backlog = format!("auditflow_notification_retry_backlog{{channel=\"{HOOK}\"}}");
    assert_eq!(notify.metric(&backlog), ids.len() as f64);

    endpoint.answer(StatusCode::OK);
    wait_until(
        "every alert delivered to the webhook",
        Duration::from_secs(15),
        async || {
            notify
                .hook_statuses(&ids)
                .await
                .iter()
                .all(|s| *s == Some(DeliveryStatus::Delivered))
        },
    )
    .await;
    // A few more retry rounds: nothing is sent again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_once(&endpoint, &ids);
    assert_eq!(notify.metric(&series("delivered")), ids.len() as f64);
    assert_eq!(notify.metric(&backlog), 0.0);
    assert_eq!(
        notify.metric(&format!(
            "auditflow_notifications_total{{channel=\"{HOOK}\",result=\"retrying\"}}"
        )),
        ids.len() as f64
    );
    notify.stop().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_outlive_a_restart_of_notify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let endpoint = Arc::new(Endpoint::default());
    endpoint.answer(StatusCode::SERVICE_UNAVAILABLE);
    let url = serve(Arc::clone(&endpoint), stop.clone()).await;
    let config = config(dir.path(), &url);

    let first = start(&config, dir.path()).await;
    let ids = first.publish(5).await;
    wait_until(
        "retrying records, acked",
        Duration::from_secs(10),
        async || {
            first.acked().await
                && first
                    .hook_statuses(&ids)
                    .await
                    .iter()
                    .all(|s| *s == Some(DeliveryStatus::Retrying))
        },
    )
    .await;
    first.stop().await;

    // The broker has nothing left for them: only the store's records bring
    // them to the webhook now.
    endpoint.answer(StatusCode::OK);
    let second = start(&config, dir.path()).await;
    assert!(second.acked().await);
    wait_until(
        "delivery after the restart",
        Duration::from_secs(15),
        async || {
            second
                .hook_statuses(&ids)
                .await
                .iter()
                .all(|s| *s == Some(DeliveryStatus::Delivered))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_once(&endpoint, &ids);
    second.stop().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_for_good_is_recorded_failed_and_not_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let endpoint = Arc::new(Endpoint::default());
    endpoint.answer(StatusCode::UNPROCESSABLE_ENTITY);
    let url = serve(Arc::clone(&endpoint), stop.clone()).await;
    let config = config(dir.path(), &url);
    let notify = start(&config, dir.path()).await;

    let ids = notify.publish(3).await;
    wait_until("failed records", Duration::from_secs(10), async || {
        notify
            .hook_statuses(&ids)
            .await
            .iter()
            .all(|s| *s == Some(DeliveryStatus::Failed))
    })
    .await;
    // Several retry intervals later: still one request per alert.
    endpoint.answer(StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(endpoint.refused.load(Ordering::SeqCst), ids.len());
    assert!(endpoint.accepted().is_empty());
    let records = notify
        .ctx
        .store
        .deliveries(ids[0])
        .await
        .expect("deliveries");
    let hook = records.iter().find(|r| r.channel == HOOK).expect("record");
    assert_eq!(hook.next_attempt_at, None);
    assert!(
        hook.last_error
            .as_deref()
            .is_some_and(|e| e.contains("422")),
        "{hook:?}"
    );
    notify.stop().await;
    stop.cancel();
}
