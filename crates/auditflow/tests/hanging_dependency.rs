//! A dependency that hangs: calls time out, the breaker opens and readiness
//! turns degraded instead of calls piling up; after recovery the breaker
//! closes again on its own (issue 3: every outbound call goes through its
//! resilience policy).
//!
//! `HangingStore` wraps the real embedded SQLite store. While its switch is on,
//! every call is accepted and never answered (`std::future::pending()`), which
//! is what a wedged database or a half-open TCP connection looks like. It
//! counts calls in flight (a drop guard counts a timed-out, dropped call out)
//! and the most ever in flight. Everything else is the real platform:
//! `build_context` wraps the store in its policy, `analyze::run` consumes real
//! events from the embedded broker, `/readyz` is the real router.
//!
//! The second test does the same to a webhook channel whose endpoint hangs.
//! The third runs the notify role with a file channel and such a webhook
//! whose own `resilience` table gives it its timeouts and breaker: the file
//! channel still gets every alert promptly while the webhook's breaker opens.

use std::collections::BTreeSet;
use std::future::IntoFuture;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use uuid::Uuid;

use auditflow::channels::{self, Outcome};
use auditflow::config::{ChannelConfig, Config};
use auditflow::context::Context;
use auditflow::health::Status;
use auditflow::platform::build_context;
use auditflow::roles::{analyze, notify};
use auditflow::server::{self, Surface};
use auditflow_core::alert::{AlertMetadata, AnalysisRule, ImpactedResource, TriggeredBy};
use auditflow_core::broker::{Headers, Message};
use auditflow_core::event::{Event, Severity};
use auditflow_core::store::{
    AlertQuery, DeliveryRecord, DeliveryStatus, EventQuery, Page, StoreCounts, StoreError,
    StoredAlert, StoredEvent,
};
use auditflow_core::{Alert, Store};
use auditflow_embedded::{Embedded, EmbeddedOptions};
use auditflow_rules::RuleSet;

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------
// The hanging store
// ---------------------------------------------------------------------------

/// Calls seen by [`HangingStore`].
#[derive(Default)]
struct Calls {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    entered: AtomicUsize,
    hung: AtomicUsize,
}

/// Counts a call out when its future completes or is dropped (timed out).
struct InFlight<'a>(&'a Calls);

impl<'a> InFlight<'a> {
    fn enter(calls: &'a Calls) -> Self {
        calls.entered.fetch_add(1, Ordering::SeqCst);
        let now = calls.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        calls.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(calls)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The real store, except that while `hang` is on every call is accepted and
/// never answered.
struct HangingStore {
    inner: Arc<dyn Store>,
    hang: AtomicBool,
    calls: Calls,
}

impl HangingStore {
    fn new(inner: Arc<dyn Store>) -> Self {
        HangingStore {
            inner,
            hang: AtomicBool::new(false),
            calls: Calls::default(),
        }
    }

    fn set_hanging(&self, on: bool) {
        self.hang.store(on, Ordering::SeqCst);
    }

    fn in_flight(&self) -> usize {
        self.calls.in_flight.load(Ordering::SeqCst)
    }

    fn max_in_flight(&self) -> usize {
        self.calls.max_in_flight.load(Ordering::SeqCst)
    }

    fn entered(&self) -> usize {
        self.calls.entered.load(Ordering::SeqCst)
    }

    fn hung(&self) -> usize {
        self.calls.hung.load(Ordering::SeqCst)
    }

    /// Runs `call` (a not-yet-polled future of the inner store), unless the
    /// switch is on, in which case it never returns.
    async fn gate<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        let _guard = InFlight::enter(&self.calls);
        if self.hang.load(Ordering::SeqCst) {
            self.calls.hung.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        call.await
    }
}

#[async_trait]
impl Store for HangingStore {
    async fn insert_events(&self, events: &[Event]) -> Result<u64, StoreError> {
        self.gate(self.inner.insert_events(events)).await
    }
    async fn insert_alerts(&self, alerts: &[Alert]) -> Result<Vec<Uuid>, StoreError> {
        self.gate(self.inner.insert_alerts(alerts)).await
    }
    async fn record_delivery(&self, record: &DeliveryRecord) -> Result<(), StoreError> {
        self.gate(self.inner.record_delivery(record)).await
    }
    async fn deliveries(&self, alert_id: Uuid) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.gate(self.inner.deliveries(alert_id)).await
    }
    async fn claim_retries(
        &self,
        channel: &str,
        due_before: chrono::DateTime<chrono::Utc>,
        lease_until: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<auditflow_core::store::PendingDelivery>, StoreError> {
        self.gate(
            self.inner
                .claim_retries(channel, due_before, lease_until, limit),
        )
        .await
    }
    async fn retry_backlog(&self, channel: &str) -> Result<u64, StoreError> {
        self.gate(self.inner.retry_backlog(channel)).await
    }
    async fn event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.gate(self.inner.event(event_id)).await
    }
    async fn events(&self, query: &EventQuery) -> Result<Page<StoredEvent>, StoreError> {
        self.gate(self.inner.events(query)).await
    }
    async fn alert(&self, alert_id: Uuid) -> Result<Option<StoredAlert>, StoreError> {
        self.gate(self.inner.alert(alert_id)).await
    }
    async fn alerts(&self, query: &AlertQuery) -> Result<Page<StoredAlert>, StoreError> {
        self.gate(self.inner.alerts(query)).await
    }
    async fn alerts_by_offset(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<StoredAlert>, StoreError> {
        self.gate(self.inner.alerts_by_offset(limit, offset)).await
    }
    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.gate(self.inner.counts()).await
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.gate(self.inner.check()).await
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Polls `condition` every [`POLL`] until it holds; fails the test after
/// `within`. Returns how long it took.
async fn wait_until(
    what: &str,
    within: Duration,
    mut condition: impl AsyncFnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if condition().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The value of one Prometheus series (`name{labels}`), 0 when absent.
fn metric(ctx: &Context, series: &str) -> f64 {
    ctx.metrics
        .render()
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0.0)
}

fn breaker_state(ctx: &Context, dependency: &str) -> f64 {
    metric(
        ctx,
        &format!("auditflow_resilience_breaker_state{{dependency=\"{dependency}\"}}"),
    )
}

fn calls(ctx: &Context, dependency: &str, outcome: &str) -> f64 {
    metric(
        ctx,
        &format!(
            "auditflow_resilience_calls_total{{dependency=\"{dependency}\",outcome=\"{outcome}\"}}"
        ),
    )
}

fn transitions(ctx: &Context, dependency: &str, from: &str, to: &str) -> f64 {
    metric(
        ctx,
        &format!(
            "auditflow_resilience_breaker_transitions_total{{dependency=\"{dependency}\",from=\"{from}\",to=\"{to}\"}}"
        ),
    )
}

/// `GET /readyz` on the real router: (HTTP status, JSON report).
async fn readyz(app: &Router) -> (StatusCode, Value) {
    let response = app
        .clone()
        .oneshot(
            Request::get("/readyz")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("readyz body");
    (
        status,
        serde_json::from_slice(&body).expect("readyz answers JSON"),
    )
}

/// A valid event that no built-in rule matches, as the broker carries it.
fn event_message(event_id: Uuid, i: usize) -> Message {
    let payload = serde_json::to_vec(&json!({
        "event_id": event_id.to_string(),
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "source_service": "hanging-dependency-test",
        "server_hostname": format!("host-{}", i % 3),
        "event_type": "user_logout",
        "severity": "INFO",
        "user_id": format!("user-{i}"),
        "action_result": "SUCCESS",
        "details": {"i": i},
    }))
    .expect("serialize event");
    let parsed = Event::from_slice(&payload).expect("the test event is valid");
    assert_eq!(parsed.event.event_id, event_id);
    Message {
        message_id: event_id.to_string(),
        payload: Bytes::from(payload),
        headers: Headers::new(),
    }
}

/// Publishes `n` new events; returns their ids.
async fn publish_events(ctx: &Context, n: usize, first: usize) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let messages: Vec<Message> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| event_message(*id, first + i))
        .collect();
    ctx.broker
        .publish(&ctx.config.broker.events_queue, &messages)
        .await
        .expect("publish events");
    ids
}

/// Messages of the events queue not yet acked (ready + delivered-unacked).
async fn events_pending(ctx: &Context) -> u64 {
    let stats = ctx
        .broker
        .stats(&ctx.config.broker.events_queue)
        .await
        .expect("queue stats");
    stats.ready + stats.unacked
}

// ---------------------------------------------------------------------------
// The store hangs
// ---------------------------------------------------------------------------

/// Store policy of the test: short timeouts and a small, quick breaker.
fn store_test_config(dir: &Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    let store = config
        .resilience
        .get_mut("store")
        .expect("a [resilience.store] policy");
    store.timeout.per_attempt = Duration::from_millis(200);
    store.timeout.total = Duration::from_secs(1);
    store.retry.max_attempts = 2;
    store.retry.initial_backoff = Duration::from_millis(20);
    store.retry.max_backoff = Duration::from_millis(50);
    store.breaker.minimum_calls = 4;
    store.breaker.window_size = 10;
    store.breaker.failure_rate_threshold = 0.5;
    store.breaker.slow_call_duration = Duration::from_secs(1);
    // Long enough that the burst of reads below surely lands while it is open;
    // the cap keeps re-opens (a probe that hangs again) at the same length.
    store.breaker.open_duration = Duration::from_secs(1);
    store.breaker.max_open_duration = Duration::from_secs(1);
    store.breaker.half_open_probes = 2;
    store.breaker.half_open_successes = 2;
    store.bulkhead.max_concurrent = 8;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_store_times_out_opens_the_breaker_and_recovers() {
    let test_started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Arc::new(store_test_config(dir.path()));
    let policy = config.resilience["store"].clone();
    let embedded = Embedded::open(dir.path(), EmbeddedOptions::default()).expect("open embedded");
    let real_store: Arc<dyn Store> = embedded.store();
    let hanging = Arc::new(HangingStore::new(Arc::clone(&real_store)));
    let (ctx, _policies) = build_context(
        Arc::clone(&config),
        embedded.broker(),
        Arc::clone(&hanging) as Arc<dyn Store>,
        embedded.windows(),
        CancellationToken::new(),
    )
    .expect("build context");
    let app = server::router(
        ctx.clone(),
        Surface {
            ingest: false,
            read_api: false,
        },
    );
    let analyze_task = tokio::spawn(analyze::run(ctx.clone(), Arc::new(RuleSet::builtin())));
    let stored = || async { real_store.counts().await.expect("counts").events };

    // ---- 1. Healthy: events get stored and acked, breaker closed, ready. ----
    let mut published: Vec<Uuid> = publish_events(&ctx, 10, 0).await;
    wait_until(
        "the healthy events to be stored and acked",
        Duration::from_secs(5),
        async || stored().await == 10 && events_pending(&ctx).await == 0,
    )
    .await;
    assert_eq!(
        breaker_state(&ctx, "store"),
        0.0,
        "breaker closed while healthy"
    );
    let (code, report) = readyz(&app).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(report["status"], "ready", "{report}");

    // ---- 2. The store hangs. ----
    let timeouts_before = calls(&ctx, "store", "timeout");
    let opened_before = transitions(&ctx, "store", "closed", "open");
    hanging.set_hanging(true);
    let hang_ids = publish_events(&ctx, 20, 10).await;
    published.extend(&hang_ids);

    // Bound on the time to open, from the config: the window holds up to
    // `window_size` successes from the healthy phase, so tripping takes at
    // most max(minimum_calls, ceil(window_size * threshold)) failed attempts;
    // each costs at most per_attempt plus a retry backoff; at max_attempts per
    // logical call that is at most 3 calls, so 2 of analyze's own pauses in
    // between (ceilings 20 ms, then 40 ms); plus 1 s of slack for a loaded
    // machine.
    let b = &policy.breaker;
    let failures_to_trip = u64::from(b.minimum_calls)
        .max((f64::from(b.window_size) * b.failure_rate_threshold).ceil() as u64);
    let open_bound = (policy.timeout.per_attempt + policy.retry.max_backoff)
        * failures_to_trip as u32
        + Duration::from_millis(20 + 40)
        + Duration::from_secs(1);
    let took = wait_until("the store breaker to open", open_bound, async || {
        breaker_state(&ctx, "store") == 1.0
    })
    .await;
    // While it is (freshly) open, callers are refused at once without
    // reaching the store: fire 50 concurrent reads.
    let entered_before_burst = hanging.entered();
    let burst: Vec<_> = (0..50)
        .map(|_| {
            let store = Arc::clone(&ctx.store);
            tokio::spawn(async move {
                let started = Instant::now();
                let result = store
                    .events(&EventQuery {
                        limit: 10,
                        ..EventQuery::default()
                    })
                    .await;
                (result, started.elapsed())
            })
        })
        .collect();
    for task in burst {
        let (result, elapsed) = task.await.expect("read task");
        match result {
            Err(StoreError::Unavailable(message)) => assert!(
                message.contains("circuit breaker open"),
                "rejected read should name the open circuit: {message}"
            ),
            other => panic!("a read while the breaker is open should be refused, got {other:?}"),
        }
        assert!(
            elapsed < Duration::from_millis(100),
            "a refused read should be fast, took {elapsed:?}"
        );
    }
    assert_eq!(
        hanging.entered(),
        entered_before_burst,
        "refused reads must not reach the hanging store"
    );
    let timeouts = calls(&ctx, "store", "timeout") - timeouts_before;
    assert!(timeouts >= 1.0, "store calls should have timed out");
    assert!(transitions(&ctx, "store", "closed", "open") > opened_before);
    assert!(hanging.hung() >= 2, "the hanging store was called");
    println!(
        "breaker opened {took:?} after the hang (bound {open_bound:?}); {timeouts} timed-out store calls, {} hung attempts",
        hanging.hung()
    );

    // Hung calls were abandoned at their timeout, not left to pile up.
    wait_until(
        "hung store calls to be dropped",
        Duration::from_secs(3),
        async || hanging.in_flight() == 0,
    )
    .await;

    // Readiness: degraded (the broker still takes work), store check not up.
    let mut last = Value::Null;
    wait_until(
        "/readyz to report degraded",
        Duration::from_secs(5),
        async || {
            let (code, report) = readyz(&app).await;
            assert_eq!(code, StatusCode::OK, "degraded is still HTTP 200: {report}");
            last = report;
            last["status"] == "degraded"
        },
    )
    .await;
    assert_ne!(last["checks"]["store"]["status"], "up", "{last}");
    assert_eq!(last["checks"]["broker"]["status"], "up", "{last}");
    let health = ctx.health.snapshot();
    let store_health = health.get("store").expect("analyze reported the store");
    assert_eq!(store_health.status, Status::Degraded, "{store_health:?}");

    // Nothing was stored or acked while the store hung: the events wait in the queue.
    assert_eq!(stored().await, 10, "no event stored while the store hangs");
    assert_eq!(
        events_pending(&ctx).await,
        hang_ids.len() as u64,
        "the unstored events are still in the queue, unacked"
    );

    // ---- 3. The store answers again: no restart, the breaker closes. ----
    let half_opened_before = transitions(&ctx, "store", "open", "half_open");
    let closed_before = transitions(&ctx, "store", "half_open", "closed");
    hanging.set_hanging(false);
    let more = publish_events(&ctx, 5, 30).await;
    published.extend(&more);
    let distinct: BTreeSet<Uuid> = published.iter().copied().collect();
    // At most the longest open duration, then analyze's pause (capped at 5 s),
    // plus slack.
    let recover_bound = policy.breaker.max_open_duration + Duration::from_secs(5 + 3);
    let recovered = wait_until(
        "recovery (ready, all stored, queue drained, breaker closed)",
        recover_bound,
        async || {
            let (code, report) = readyz(&app).await;
            code == StatusCode::OK
                && report["status"] == "ready"
                && stored().await == distinct.len() as u64
                && events_pending(&ctx).await == 0
                && breaker_state(&ctx, "store") == 0.0
        },
    )
    .await;
    assert!(transitions(&ctx, "store", "open", "half_open") > half_opened_before);
    assert!(transitions(&ctx, "store", "half_open", "closed") > closed_before);
    for id in &distinct {
        assert!(
            real_store.event(*id).await.expect("event").is_some(),
            "event {id} stored"
        );
    }
    assert_eq!(
        metric(&ctx, "auditflow_events_processed_total{result=\"ok\"}"),
        distinct.len() as f64,
        "every event processed (and acked) exactly once"
    );
    assert_eq!(ctx.health.snapshot()["store"].status, Status::Up);
    assert_eq!(hanging.in_flight(), 0);
    let max_in_flight = hanging.max_in_flight();
    assert!(
        max_in_flight <= 4 && max_in_flight <= policy.bulkhead.max_concurrent as usize,
        "calls piled up in the hanging store: {max_in_flight} in flight at once"
    );
    println!(
        "recovered {recovered:?} after the store came back; at most {max_in_flight} store calls in flight"
    );

    ctx.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), analyze_task)
        .await
        .expect("analyze stops on shutdown")
        .expect("analyze task")
        .expect("analyze ends cleanly");
    drop(app);
    drop(ctx);
    drop(embedded);
    let total = test_started.elapsed();
    println!("hanging store test took {total:?}");
    assert!(total < Duration::from_secs(20), "took {total:?}");
}

// ---------------------------------------------------------------------------
// The webhook endpoint hangs
// ---------------------------------------------------------------------------

fn sample_alert() -> Alert {
    let event_id = Uuid::now_v7();
    Alert {
        alert_id: auditflow_core::alert::alert_id_for("test-rule", event_id),
        timestamp: chrono::Utc::now(),
        alert_name: "Test alert".into(),
        alert_type: "SECURITY".into(),
        severity: Severity::Warning,
        description: "a test alert for a hanging webhook".into(),
        source_service_name: "hanging-dependency-test".into(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_webhook_times_out_opens_the_breaker_and_recovers() {
    let test_started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let webhook = config
        .resilience
        .get_mut("webhook")
        .expect("a [resilience.webhook] policy");
    webhook.timeout.per_attempt = Duration::from_millis(150);
    webhook.timeout.total = Duration::from_millis(400);
    webhook.retry.max_attempts = 2;
    webhook.retry.initial_backoff = Duration::from_millis(10);
    webhook.retry.max_backoff = Duration::from_millis(20);
    webhook.breaker.minimum_calls = 4;
    webhook.breaker.window_size = 10;
    webhook.breaker.slow_call_duration = Duration::from_secs(1);
    webhook.breaker.open_duration = Duration::from_millis(500);
    webhook.breaker.open_duration_multiplier = 1.0;
    webhook.breaker.half_open_probes = 1;
    webhook.breaker.half_open_successes = 1;
    let policy = webhook.clone();
    let config = Arc::new(config);

    // The endpoint: while `answering` is off, it takes the request and never
    // answers (until the test ends and `stop` fires).
    let answering = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let endpoint = Router::new().route(
        "/hook",
        post({
            let (answering, hits, stop) = (answering.clone(), hits.clone(), stop.clone());
            move || {
                let (answering, hits, stop) = (answering.clone(), hits.clone(), stop.clone());
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    if !answering.load(Ordering::SeqCst) {
                        stop.cancelled().await;
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let server = tokio::spawn(
        axum::serve(listener, endpoint)
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future(),
    );

    let embedded = Embedded::open(dir.path(), EmbeddedOptions::default()).expect("open embedded");
    let (ctx, policies) = build_context(
        Arc::clone(&config),
        embedded.broker(),
        embedded.store(),
        embedded.windows(),
        CancellationToken::new(),
    )
    .expect("build context");
    let name = "hook";
    let built = channels::build(
        &[ChannelConfig::Webhook {
            name: name.into(),
            url,
            resilience: None,
        }],
        dir.path(),
        &policies,
    )
    .expect("build the webhook channel");
    let channel = Arc::clone(&built[0]);
    assert_eq!(breaker_state(&ctx, name), 0.0);
    let alert = sample_alert();
    let deliver = async || {
        let started = Instant::now();
        let mut results = channel.deliver(&[&alert]).await;
        assert_eq!(results.len(), 1);
        (results.remove(0), started.elapsed())
    };

    // Hanging endpoint: each delivery times out within the policy's total
    // time, until enough failures open the breaker (minimum_calls attempts,
    // max_attempts per delivery).
    let most_deliveries = policy
        .breaker
        .minimum_calls
        .div_ceil(policy.retry.max_attempts) as usize
        + 1;
    let mut failed = 0;
    while breaker_state(&ctx, name) != 1.0 {
        assert!(
            failed < most_deliveries,
            "breaker still closed after {failed} timed-out deliveries"
        );
        let (result, elapsed) = deliver().await;
        let error = result.expect_err("a hanging endpoint cannot take the alert");
        assert!(
            error.message.contains("timed out"),
            "expected a timeout, got: {}",
            error.message
        );
        assert!(
            (1..=policy.retry.max_attempts).contains(&error.attempts),
            "the record counts the POSTs made: {}",
            error.attempts
        );
        assert!(
            elapsed >= policy.timeout.per_attempt
                // (plus slack for timer and scheduling latency)
                && elapsed <= policy.timeout.total + Duration::from_millis(200),
            "a timed-out delivery took {elapsed:?} (total limit {:?})",
            policy.timeout.total
        );
        failed += 1;
    }
    let opened_at = Instant::now();
    assert!(hits.load(Ordering::SeqCst) >= policy.breaker.minimum_calls as usize);
    assert!(calls(&ctx, name, "timeout") >= failed as f64);

    // Open: deliveries fail fast and the endpoint sees no request.
    let hits_when_open = hits.load(Ordering::SeqCst);
    for _ in 0..5 {
        let (result, elapsed) = deliver().await;
        let error = result.expect_err("refused while open");
        assert!(
            error.message.contains("circuit breaker open"),
            "expected a refusal by the breaker, got: {}",
            error.message
        );
        assert_eq!(error.attempts, 0, "a refused delivery made no POST");
        assert!(
            elapsed < Duration::from_millis(50),
            "refusal took {elapsed:?}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), hits_when_open);

    // The endpoint answers again: deliveries succeed once the open duration
    // has passed (a probe closes the breaker); until then they are refused fast.
    answering.store(true, Ordering::SeqCst);
    let open_duration = policy.breaker.open_duration;
    let mut refused_after_recovery = 0;
    wait_until(
        "a delivery to succeed again",
        open_duration + Duration::from_secs(2),
        async || {
            let (result, elapsed) = deliver().await;
            match result {
                Ok(outcome) => {
                    assert_eq!(outcome, Outcome::Delivered);
                    true
                }
                Err(error) => {
                    assert!(
                        error.message.contains("circuit breaker open"),
                        "only the breaker should refuse now: {}",
                        error.message
                    );
                    assert!(
                        elapsed < Duration::from_millis(50),
                        "refusal took {elapsed:?}"
                    );
                    refused_after_recovery += 1;
                    false
                }
            }
        },
    )
    .await;
    let reopened_after = opened_at.elapsed();
    assert!(
        reopened_after + Duration::from_millis(50) >= open_duration,
        "delivered {reopened_after:?} after opening, before the open duration {open_duration:?}"
    );
    assert!(
        refused_after_recovery >= 1,
        "refused until the open duration passed"
    );
    assert_eq!(
        breaker_state(&ctx, name),
        0.0,
        "the successful probe closed the breaker"
    );
    let (result, elapsed) = deliver().await;
    assert_eq!(result.expect("delivered"), Outcome::Delivered);
    println!(
        "webhook: {failed} timed-out deliveries opened the breaker; delivered again {reopened_after:?} after opening ({elapsed:?} per delivery)"
    );

    // Let the endpoint's hung handlers go and stop the server.
    drop(built);
    drop(channel);
    stop.cancel();
    match tokio::time::timeout(Duration::from_secs(2), server).await {
        Ok(served) => served.expect("server task").expect("server"),
        Err(_) => panic!("the test endpoint did not stop"),
    }
    drop(ctx);
    drop(embedded);
    let total = test_started.elapsed();
    println!("hanging webhook test took {total:?}");
    assert!(total < Duration::from_secs(10), "took {total:?}");
}

// ---------------------------------------------------------------------------
// One channel hangs, the others go on
// ---------------------------------------------------------------------------

/// An endpoint that takes every request and never answers (until `stop`).
async fn hanging_endpoint(
    hits: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let handler_stop = stop.clone();
    let endpoint = Router::new().route(
        "/hook",
        post(move || {
            let (hits, stop) = (hits.clone(), handler_stop.clone());
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                stop.cancelled().await;
                StatusCode::SERVICE_UNAVAILABLE
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let server = tokio::spawn(
        axum::serve(listener, endpoint)
            .with_graceful_shutdown(stop.cancelled_owned())
            .into_future(),
    );
    (url, server)
}

/// Alert ids in a file channel's NDJSON file (empty when absent).
fn ids_in(path: &Path) -> BTreeSet<Uuid> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|alert| alert["alert_id"].as_str()?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_channel_delays_no_other_channel_and_its_breaker_opens() {
    let test_started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let hits = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let (url, server) = hanging_endpoint(Arc::clone(&hits), stop.clone()).await;
    let alerts_file = dir.path().join("alerts.ndjson");

    // The webhook's policy comes from its own `resilience` table over
    // [resilience.webhook]: attempts of 2 s (the section's 5 s otherwise),
    // no retries, a breaker that opens after 3 failed calls and stays open
    // for the rest of the test.
    let config_path = dir.path().join("auditflow.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
data_dir = "{data}"

[[notify.channels]]
kind = "file"
name = "file"
path = "{file}"

[[notify.channels]]
kind = "webhook"
name = "stuck-hook"
url = "{url}"
[notify.channels.resilience.timeout]
per_attempt = "2s"
total = "2s"
[notify.channels.resilience.retry]
max_attempts = 1
[notify.channels.resilience.breaker]
minimum_calls = 3
window_size = 10
open_duration = "30s"
max_open_duration = "30s"
"#,
            data = dir.path().display(),
            file = alerts_file.display(),
        ),
    )
    .expect("config");
    let config = Arc::new(Config::load(Some(&config_path), &toml::Table::new()).expect("config"));
    let per_attempt = Duration::from_secs(2);
    assert_eq!(
        config.resilience["webhook"].timeout.per_attempt,
        Duration::from_secs(5),
        "the channel's table changes only its own policy"
    );

    let embedded = Embedded::open(dir.path(), EmbeddedOptions::default()).expect("open embedded");
    let (ctx, policies) = build_context(
        Arc::clone(&config),
        embedded.broker(),
        embedded.store(),
        embedded.windows(),
        CancellationToken::new(),
    )
    .expect("build context");
    let built = channels::build(&config.notify.channels, dir.path(), &policies).expect("channels");
    let notify_task = tokio::spawn(notify::run(ctx.clone(), built));
    assert_eq!(breaker_state(&ctx, "stuck-hook"), 0.0);

    // One alert at a time: each must reach the file channel well within one
    // of the webhook's attempts, although the webhook is still waiting out
    // its earlier ones (had channels shared a batch's pace, the n-th alert
    // would wait about n attempts).
    let queue = config.broker.alerts_queue.clone();
    let mut sent = Vec::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..8 {
        let alert = sample_alert();
        ctx.broker
            .publish(
                &queue,
                &[Message {
                    message_id: alert.alert_id.to_string(),
                    payload: Bytes::from(alert.to_json_bytes()),
                    headers: Headers::new(),
                }],
            )
            .await
            .expect("publish alert");
        let took = wait_until(
            "the file channel to get the alert",
            per_attempt / 2,
            async || ids_in(&alerts_file).contains(&alert.alert_id),
        )
        .await;
        slowest = slowest.max(took);
        sent.push(alert.alert_id);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The webhook: three timed-out attempts open its breaker; the rest are
    // refused at once without reaching the endpoint.
    wait_until(
        "the webhook's breaker to open",
        per_attempt * 3 + Duration::from_secs(2),
        async || breaker_state(&ctx, "stuck-hook") == 1.0,
    )
    .await;
    wait_until(
        "every alert to be acked",
        per_attempt + Duration::from_secs(2),
        async || {
            let stats = ctx.broker.stats(&queue).await.expect("stats");
            stats.ready + stats.unacked == 0
        },
    )
    .await;
    assert_eq!(hits.load(Ordering::SeqCst), 3, "no request once open");
    for id in &sent {
        let records = ctx.store.deliveries(*id).await.expect("deliveries");
        let by_channel: BTreeSet<(String, String)> = records
            .iter()
            .map(|r| (r.channel.clone(), format!("{:?}", r.status)))
            .collect();
        assert!(
            by_channel.contains(&("file".into(), "Delivered".into())),
            "{records:?}"
        );
        let hook = records
            .iter()
            .find(|r| r.channel == "stuck-hook")
            .expect("a record for the webhook");
        let error = hook.last_error.clone().unwrap_or_default();
        assert!(
            error.contains("timed out") || error.contains("circuit breaker open"),
            "{error}"
        );
        // Transient failures: kept for notify's retries, not given up. (The
        // three timed-out attempts are the endpoint's three hits above; a
        // retry since refused by the open breaker may have replaced the
        // record's error.)
        assert_eq!(hook.status, DeliveryStatus::Retrying, "{hook:?}");
        assert!(hook.next_attempt_at.is_some(), "{hook:?}");
    }
    assert_eq!(ids_in(&alerts_file), sent.iter().copied().collect());
    println!("file channel: slowest alert {slowest:?} while the webhook hung");

    ctx.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), notify_task)
        .await
        .expect("notify stops on shutdown")
        .expect("notify task")
        .expect("notify ends cleanly");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    drop(ctx);
    drop(embedded);
    let total = test_started.elapsed();
    println!("hanging channel test took {total:?}");
    assert!(total < Duration::from_secs(20), "took {total:?}");
}
