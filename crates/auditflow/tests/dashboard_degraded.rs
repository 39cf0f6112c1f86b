//! The dashboard degrades instead of breaking: while the store hangs, the
//! overview still answers 200 promptly, the panels fed by the store say
//! "data unavailable (reason, since when)" over their last good data, the
//! panels fed by the broker keep working, health shows the store down; when
//! the store answers again the panels recover by themselves, live in an
//! open browser too.
//!
//! The first test's platform is real (embedded broker and SQLite store, resilience
//! policies from `build_context`, ingest, analyze, notify and the dashboard
//! on a real HTTP listener); only the store is wrapped in a switch that,
//! when on, accepts every call and never answers, which is what a wedged
//! database looks like (the same fault as `hanging_dependency.rs`). The
//! second test uses no wrapper at all: `auditflow up` as a child process on
//! a throwaway PostgreSQL cluster, which is stopped and started again.

#[allow(dead_code)] // not every test uses every browser helper
mod browser;
#[allow(dead_code)]
mod recovery_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use auditflow::channels;
use auditflow::config::Config;
use auditflow::platform::{build_context, Plan};
use auditflow::roles::{analyze, notify};
use auditflow::server::{self, Surface};
use auditflow_core::store::{
    AlertQuery, DeliveryRecord, EventQuery, Page, StoreCounts, StoreError, StoredAlert, StoredEvent,
};
use auditflow_core::{Alert, Event, Store};
use auditflow_embedded::{Embedded, EmbeddedOptions};
use auditflow_rules::RuleSet;

/// The real store, except that while `hang` is on every call never answers.
struct HangingStore {
    inner: Arc<dyn Store>,
    hang: AtomicBool,
}

impl HangingStore {
    async fn gate<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        if self.hang.load(Ordering::SeqCst) {
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

/// The HTML of one overview panel (from its `<section id="panel-KEY">` to the next section).
fn panel<'a>(page: &'a str, key: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"panel-{key}\""))
        .unwrap_or_else(|| panic!("no panel {key} in the page"));
    let rest = &page[start..];
    let end = rest[1..].find("<section").map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

/// Store policy that gives up fast, so the test does not wait for defaults.
fn config(dir: &std::path::Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    let store = config.resilience.get_mut("store").expect("store policy");
    store.timeout.per_attempt = Duration::from_millis(300);
    store.timeout.total = Duration::from_millis(900);
    store.breaker.minimum_calls = 4;
    store.breaker.open_duration = Duration::from_secs(1);
    store.breaker.max_open_duration = Duration::from_secs(1);
    config
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let response = client.get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    (status, body, started.elapsed())
}

/// POSTs three failed logins of `user` within 2 s: an ANLY-SEC-001 burst.
async fn post_burst(client: &reqwest::Client, base: &str, user: &str) {
    let now = Utc::now();
    let burst: Vec<_> = (0..3)
        .map(|i| {
            json!({
                "timestamp": (now - chrono::Duration::seconds(2 - i)).to_rfc3339(),
                "source_service": "dashboard-test", "server_hostname": "db-01",
                "event_type": "user_login", "severity": "WARNING", "user_id": user,
                "action_result": "FAILURE", "details": {"reason": "Incorrect password"}
            })
        })
        .collect();
    let accepted = client
        .post(format!("{base}/v1/events"))
        .json(&burst)
        .send()
        .await
        .expect("POST");
    assert_eq!(accepted.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_marks_store_panels_unavailable_while_the_store_hangs_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Arc::new(config(dir.path()));
    let embedded = Embedded::open(dir.path(), EmbeddedOptions::default()).expect("embedded");
    let store = Arc::new(HangingStore {
        inner: embedded.store(),
        hang: AtomicBool::new(false),
    });
    let shutdown = CancellationToken::new();
    let (ctx, policies) = build_context(
        Arc::clone(&config),
        embedded.broker(),
        Arc::clone(&store) as Arc<dyn Store>,
        embedded.windows(),
        shutdown.clone(),
    )
    .expect("context");
    let channels =
        channels::build(&config.notify.channels, &config.data_dir, &policies).expect("channels");
    let analyze = tokio::spawn(analyze::run(ctx.clone(), Arc::new(RuleSet::builtin())));
    let notify = tokio::spawn(notify::run(ctx.clone(), channels));
    let app = server::router_with(
        ctx.clone(),
        Surface {
            ingest: true,
            read_api: true,
        },
        auditflow::dashboard::router(&ctx, &policies, Plan::everything()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");

    // ---- Healthy: a burst raises an alert; every panel has data. ----
    let user = format!("degraded-{}", &Uuid::new_v4().simple().to_string()[..8]);
    post_burst(&client, &base, &user).await;
    let start = Instant::now();
    loop {
        let (status, page, _) = get(&client, &format!("{base}/dashboard")).await;
        assert_eq!(status, 200);
        if !page.contains("data-unavailable")
            && panel(&page, "recent-alerts").contains(&user)
            && panel(&page, "throughput").contains("rect")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "overview never complete: {page}"
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
    }

    let browser = browser::Browser::start(1280, 1500).await;
    browser.goto(&format!("{base}/dashboard")).await;
    browser
        .eval("window.__noReload = true; return true;", json!([]))
        .await;

    // ---- The store hangs. ----
    store.hang.store(true, Ordering::SeqCst);
    let hung_at = Utc::now();
    for round in 0..3 {
        let (status, page, took) = get(&client, &format!("{base}/dashboard")).await;
        assert_eq!(
            status, 200,
            "round {round}: the overview failed with the store down"
        );
        assert!(
            took < Duration::from_secs(5),
            "round {round}: the overview took {took:?}"
        );
        for key in ["throughput", "timeline", "by-rule", "recent-alerts"] {
            let html = panel(&page, key);
            assert!(
                html.contains("data unavailable"),
                "round {round}: {key} not marked: {html}"
            );
            assert!(html.contains("since"), "{key}: {html}");
            // Last good data, marked stale, rather than nothing.
            assert!(
                html.contains("class=\"stale\""),
                "round {round}: {key} lost its last data: {html}"
            );
        }
        assert!(
            panel(&page, "recent-alerts").contains(&user),
            "stale alerts missing"
        );
        let queues = panel(&page, "queues");
        assert!(
            !queues.contains("data unavailable"),
            "the broker panel failed too: {queues}"
        );
        assert!(queues.contains("audit_events"), "{queues}");
        let health = panel(&page, "health");
        assert!(
            health.contains("data-component=\"store\" data-status=\"down\""),
            "round {round}: health does not show the store down: {health}"
        );
        assert!(
            health.contains("data-component=\"broker\" data-status=\"up\""),
            "{health}"
        );
    }
    // The "since" is the start of the outage, not of each request.
    let (_, page, _) = get(&client, &format!("{base}/dashboard")).await;
    let since = panel(&page, "recent-alerts")
        .split("datetime=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .expect("a since timestamp");
    assert!(
        (since.with_timezone(&Utc) - hung_at).num_seconds().abs() <= 6,
        "since {since} is not the outage start {hung_at}"
    );
    // Pages whose only source is the store answer 503 with the reason, never 500.
    let (status, alerts, took) = get(&client, &format!("{base}/dashboard/alerts")).await;
    assert_eq!(status, 200, "{alerts}");
    assert!(alerts.contains("data unavailable") && took < Duration::from_secs(5));
    let (status, _, _) = get(
        &client,
        &format!("{base}/dashboard/alerts/{}", Uuid::new_v4()),
    )
    .await;
    assert_eq!(status, 503);
    let (status, health_page, _) = get(&client, &format!("{base}/dashboard/health")).await;
    assert_eq!(status, 200);
    assert!(health_page.contains("data-component=\"store\" data-status=\"down\""));

    // The open page turns its store panels unavailable by itself.
    browser
        .wait_for(
            "the live overview to mark the store panels unavailable",
            Duration::from_secs(15),
            "return !!document.querySelector('#panel-recent-alerts [data-unavailable]') &&
               !document.querySelector('#panel-queues [data-unavailable]');",
            json!([]),
        )
        .await;
    browser.screenshot("overview-store-down").await;

    // ---- The store answers again: everything recovers without a restart. ----
    store.hang.store(false, Ordering::SeqCst);
    let start = Instant::now();
    loop {
        let (status, page, _) = get(&client, &format!("{base}/dashboard")).await;
        assert_eq!(status, 200);
        if !page.contains("data-unavailable")
            && panel(&page, "health").contains("data-component=\"store\" data-status=\"up\"")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the overview did not recover: {page}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    browser
        .wait_for(
            "the live overview to recover",
            Duration::from_secs(15),
            "return document.querySelectorAll('[data-unavailable]').length === 0 && window.__noReload === true;",
            json!([]),
        )
        .await;
    browser.screenshot("overview-store-recovered").await;
    browser.close().await;

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = analyze.await;
        let _ = notify.await;
        let _ = server.await;
    })
    .await;
}

/// `auditflow up --store postgres://...` on a throwaway cluster: stopping
/// the server (a real outage, not a wrapper) leaves the overview answering
/// 200 with the store's panels marked unavailable while the broker's panel
/// works; starting it again brings every panel back without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_survives_a_stopped_postgresql_and_recovers_when_it_returns() {
    let pg = recovery_support::PgCluster::start().expect("throwaway PostgreSQL");
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let args = vec!["--store".to_string(), pg.url()];
    let env = [
        // Give up on the store fast, so the test does not wait for defaults.
        ("AUDITFLOW_RESILIENCE__STORE__TIMEOUT__PER_ATTEMPT", "300ms"),
        ("AUDITFLOW_RESILIENCE__STORE__TIMEOUT__TOTAL", "900ms"),
        ("AUDITFLOW_RESILIENCE__STORE__BREAKER__OPEN_DURATION", "1s"),
        (
            "AUDITFLOW_RESILIENCE__STORE__BREAKER__MAX_OPEN_DURATION",
            "1s",
        ),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let mut platform = recovery_support::start_platform(
        dir.path(),
        &dir.path().join("auditflow.log"),
        &args,
        &env,
        &client,
    )
    .await
    .expect("auditflow up on PostgreSQL");
    let base = platform.base.clone();

    // A burst, so the store-fed panels have content before the outage.
    let user = format!("pg-down-{}", Uuid::new_v4().simple());
    post_burst(&client, &base, &user).await;
    let start = Instant::now();
    loop {
        let (status, page, _) = get(&client, &format!("{base}/dashboard")).await;
        assert_eq!(status, 200);
        if !page.contains("data-unavailable") && panel(&page, "recent-alerts").contains(&user) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "overview never complete: {page}\n{}",
            platform.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // ---- PostgreSQL stops. ----
    pg.stop().expect("pg_ctl stop");
    let start = Instant::now();
    loop {
        let (status, page, took) = get(&client, &format!("{base}/dashboard")).await;
        assert_eq!(status, 200, "the overview failed with PostgreSQL down");
        assert!(took < Duration::from_secs(5), "the overview took {took:?}");
        let marked = ["throughput", "by-rule", "recent-alerts"]
            .iter()
            .all(|key| panel(&page, key).contains("data unavailable"));
        if marked {
            assert!(
                panel(&page, "recent-alerts").contains(&user),
                "the last good alerts are not kept: {page}"
            );
            let queues = panel(&page, "queues");
            assert!(
                !queues.contains("data unavailable") && queues.contains("audit_events"),
                "the broker's panel failed too: {queues}"
            );
            assert!(
                panel(&page, "health").contains("data-component=\"store\" data-status=\"down\""),
                "health does not show the store down: {page}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "store panels not marked unavailable: {page}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, _, _) = get(&client, &format!("{base}/dashboard/alerts")).await;
    assert_eq!(status, 200);

    // ---- PostgreSQL is back: the panels recover, same process. ----
    pg.start_again().expect("pg_ctl start");
    let start = Instant::now();
    loop {
        let (status, page, _) = get(&client, &format!("{base}/dashboard")).await;
        assert_eq!(status, 200);
        if !page.contains("data-unavailable")
            && panel(&page, "health").contains("data-component=\"store\" data-status=\"up\"")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the overview did not recover: {page}\n{}",
            platform.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = platform.sigterm_and_wait().await.expect("SIGTERM");
    assert!(status.success(), "exit after SIGTERM: {status}");
}
