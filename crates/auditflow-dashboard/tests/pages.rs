//! Every dashboard page over a real embedded store and broker, through the
//! router (no network): status codes, escaping, access control, and a
//! source that fails taking down only its own panel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use auditflow_core::broker::{Broker, BrokerError, DeadLetter, Message, QueueStats, Subscription};
use auditflow_core::event::Event;
use auditflow_core::Store;
use auditflow_dashboard::{
    router, Auth, ComponentKind, ComponentReport, Dashboard, HealthSource, SloSource, Sources,
    Status,
};
use auditflow_embedded::{Embedded, EmbeddedOptions};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

struct FixedHealth;

#[async_trait]
impl HealthSource for FixedHealth {
    async fn report(&self) -> Vec<ComponentReport> {
        vec![ComponentReport {
            name: "store".into(),
            kind: ComponentKind::Dependency,
            status: Status::Up,
            detail: None,
            since: None,
            last_error: Some("an old <i>error</i>".into()),
            breaker: Some("closed".into()),
        }]
    }
}

/// Two real SLO trackers under a manual clock: `ingest` healthy, and
/// `<b>analysis</b>` (a hostile name, to check escaping) after ten minutes
/// of total failure, which pages.
struct TrackedSlos(Vec<auditflow_slo::SloReport>);

impl TrackedSlos {
    fn new() -> TrackedSlos {
        use std::time::Duration;
        let clock = resilience::ManualClock::starting_at(Duration::from_secs(1_000_000));
        let day = Duration::from_secs(86_400);
        let spec = |name: &str| auditflow_slo::SloSpec::new(name, 0.999, 30 * day);
        let mut healthy =
            auditflow_slo::SloTracker::new(spec("ingest"), clock.shared()).expect("spec");
        let mut failing =
            auditflow_slo::SloTracker::new(spec("<b>analysis</b>"), clock.shared()).expect("spec");
        for _ in 0..60 {
            clock.advance(Duration::from_secs(10));
            healthy.record(100, 100);
            failing.record(0, 100);
        }
        TrackedSlos(vec![healthy.report(), failing.report()])
    }
}

impl SloSource for TrackedSlos {
    fn reports(&self) -> Vec<auditflow_slo::SloReport> {
        self.0.clone()
    }
}

/// The embedded broker, unless `down`, in which case every call fails.
struct SwitchableBroker {
    inner: Arc<dyn Broker>,
    down: AtomicBool,
}

impl SwitchableBroker {
    fn check_down(&self) -> Result<(), BrokerError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BrokerError::Unavailable("connection refused".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Broker for SwitchableBroker {
    async fn publish(&self, queue: &str, messages: &[Message]) -> Result<(), BrokerError> {
        self.check_down()?;
        self.inner.publish(queue, messages).await
    }
    async fn subscribe(
        &self,
        queue: &str,
        prefetch: usize,
    ) -> Result<Box<dyn Subscription>, BrokerError> {
        self.check_down()?;
        self.inner.subscribe(queue, prefetch).await
    }
    async fn stats(&self, queue: &str) -> Result<QueueStats, BrokerError> {
        self.check_down()?;
        self.inner.stats(queue).await
    }
    async fn dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        self.check_down()?;
        self.inner.dead_letters(queue, limit).await
    }
    async fn redrive(&self, queue: &str, id: &str) -> Result<bool, BrokerError> {
        self.check_down()?;
        self.inner.redrive(queue, id).await
    }
    async fn check(&self) -> Result<(), BrokerError> {
        self.check_down()?;
        self.inner.check().await
    }
}

struct Fixture {
    app: Router,
    broker: Arc<SwitchableBroker>,
    embedded: Embedded,
    _dir: tempfile::TempDir,
}

const HOSTILE_USER: &str = "<script>window.__xss=1</script>";

async fn fixture(token: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = Embedded::open(dir.path(), EmbeddedOptions::default()).expect("embedded");
    let store = embedded.store();
    let event = Event::from_value(json!({
        "event_id": "0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c11",
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "source_service": "test", "server_hostname": "<b>host</b>",
        "event_type": "user_login", "severity": "WARNING", "user_id": HOSTILE_USER,
        "action_result": "FAILURE", "details": {"note": "<img src=x onerror=alert(1)>"}
    }))
    .expect("event")
    .event;
    store.insert_events(&[event]).await.expect("insert");
    let broker = Arc::new(SwitchableBroker {
        inner: embedded.broker(),
        down: AtomicBool::new(false),
    });
    let sources = Sources {
        store,
        broker: Arc::clone(&broker) as Arc<dyn Broker>,
        queues: vec!["audit_events".into(), "audit_alerts".into()],
        health: Arc::new(FixedHealth),
        slo: Arc::new(TrackedSlos::new()),
    };
    let app = router(Dashboard::new(
        sources,
        Auth::new(token.map(str::to_string)),
    ));
    Fixture {
        app,
        broker,
        embedded,
        _dir: dir,
    }
}

async fn get(app: &Router, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    (status, location.unwrap_or(text))
}

#[tokio::test]
async fn every_page_answers_and_escapes_event_content() {
    let f = fixture(None).await;
    for uri in [
        "/dashboard",
        "/dashboard/panels/overview",
        "/dashboard/panels/health",
        "/dashboard/alerts",
        "/dashboard/alerts?severity=critical&last=1h",
        "/dashboard/events",
        "/dashboard/events?q=host&last=24h",
        "/dashboard/events/0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c11",
        "/dashboard/dead-letters",
        "/dashboard/health",
        "/dashboard/assets/dashboard.css",
        "/dashboard/assets/dashboard.js",
    ] {
        let (status, body) = get(&f.app, uri, &[]).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert!(
            !body.contains("<script>window"),
            "{uri} has the raw script: {body}"
        );
        assert!(
            !body.contains("<img src=x"),
            "{uri} has the raw image: {body}"
        );
        assert!(!body.contains("<i>error"), "{uri} has raw markup: {body}");
    }
    let (_, events) = get(&f.app, "/dashboard/events", &[]).await;
    assert!(
        events.contains("&lt;script&gt;window.__xss=1&lt;/script&gt;"),
        "{events}"
    );
    let (_, detail) = get(
        &f.app,
        "/dashboard/events/0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c11",
        &[],
    )
    .await;
    assert!(
        detail.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{detail}"
    );
}

#[tokio::test]
async fn bad_input_is_a_4xx_page_not_an_error() {
    let f = fixture(None).await;
    let (status, body) = get(&f.app, "/dashboard/alerts?severity=loud", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("severity"), "{body}");
    let (status, _) = get(&f.app, "/dashboard/events?from=yesterday", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get(&f.app, "/dashboard/alerts/not-a-uuid", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(
        &f.app,
        "/dashboard/events/0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c12",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&f.app, "/dashboard/panels/nope", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_failing_broker_takes_down_only_the_queue_panel() {
    let f = fixture(None).await;
    let (_, healthy) = get(&f.app, "/dashboard", &[]).await;
    assert!(!healthy.contains("data-unavailable"), "{healthy}");
    f.broker.down.store(true, Ordering::SeqCst);
    let (status, page) = get(&f.app, "/dashboard", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page.matches("data-unavailable").count(), 1, "{page}");
    let queues = page
        .split("id=\"panel-queues\"")
        .nth(1)
        .and_then(|rest| rest.split("<section").next())
        .expect("queues panel");
    assert!(queues.contains("connection refused"), "{queues}");
    assert!(queues.contains("class=\"stale\""), "{queues}");
    let (status, dead) = get(&f.app, "/dashboard/dead-letters", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(dead.contains("data unavailable"), "{dead}");
    f.broker.down.store(false, Ordering::SeqCst);
    let (_, recovered) = get(&f.app, "/dashboard", &[]).await;
    assert!(!recovered.contains("data-unavailable"), "{recovered}");
}

#[tokio::test]
async fn with_a_token_pages_need_the_bearer_or_a_session() {
    let f = fixture(Some("sekrit")).await;
    let (status, location) = get(&f.app, "/dashboard/alerts?rule_id=X", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location,
        "/dashboard/login?next=%2Fdashboard%2Falerts%3Frule_id%3DX"
    );
    let (status, _) = get(&f.app, "/dashboard/panels/overview", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get(&f.app, "/dashboard/login", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&f.app, "/dashboard/assets/dashboard.css", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = get(&f.app, "/dashboard", &[("authorization", "Bearer sekrit")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("sekrit"));

    // The login form sets a cookie that is not the token and opens the pages.
    let response = f
        .app
        .clone()
        .oneshot(
            Request::post("/dashboard/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("token=sekrit&next=%2Fdashboard%2Fhealth"))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/dashboard/health");
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("sekrit"), "{cookie}");
    let session = cookie.split(';').next().expect("name=value");
    let (status, _) = get(&f.app, "/dashboard/health", &[("cookie", session)]).await;
    assert_eq!(status, StatusCode::OK);

    // A forged cross-site re-drive is refused before it reaches the broker.
    let response = f
        .app
        .clone()
        .oneshot(
            Request::post("/dashboard/dead-letters/audit_events/1/redrive")
                .header("cookie", session)
                .header("sec-fetch-site", "cross-site")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

/// `count` alerts from the legacy fixture, one second apart, newest last.
fn alerts(count: usize) -> Vec<auditflow_core::Alert> {
    let fixture =
        include_bytes!("../../auditflow-api/tests/fixtures/alert-failed-login-burst.json");
    let template = auditflow_core::Alert::from_slice(fixture).expect("fixture alert");
    let start = chrono::Utc::now() - chrono::Duration::seconds(count as i64);
    (0..count)
        .map(|i| {
            let mut alert = template.clone();
            alert.alert_id = uuid::Uuid::new_v4();
            alert.correlation_id = uuid::Uuid::new_v4();
            alert.timestamp = start + chrono::Duration::seconds(i as i64);
            alert
        })
        .collect()
}

/// The `href` of the link marked `rel="next"`, decoded from HTML.
fn next_link(page: &str) -> Option<String> {
    let tail = page.split("rel=\"next\" href=\"").nth(1)?;
    Some(tail.split('"').next()?.replace("&amp;", "&"))
}

#[tokio::test]
async fn the_alerts_list_pages_with_a_cursor_and_keeps_its_filters() {
    let f = fixture(None).await;
    let store = f.embedded.store();
    store.insert_alerts(&alerts(70)).await.expect("insert");

    let (status, first) = get(&f.app, "/dashboard/alerts?rule_id=ANLY-SEC-001", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first.matches("<tr data-alert-id").count(), 50);
    assert!(
        first.contains("data-refresh=\"/dashboard/alerts?rule_id=ANLY-SEC-001&amp;partial=1\""),
        "the first page is not live"
    );
    let next = next_link(&first).expect("a next link");
    assert!(
        next.contains("rule_id=ANLY-SEC-001") && next.contains("cursor="),
        "{next}"
    );

    let (status, second) = get(&f.app, &next, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second.matches("<tr data-alert-id").count(), 20);
    assert_eq!(next_link(&second), None, "the last page links further");
    assert!(second.contains("← newest"), "no way back to the newest");
    assert!(
        !second.contains("data-refresh=\"/dashboard/alerts"),
        "an older page must not follow new alerts"
    );

    let (status, other_rule) = get(&f.app, "/dashboard/alerts?rule_id=ANLY-SEC-002", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(other_rule.contains("No alerts."), "{other_rule}");

    let (status, partial) = get(&f.app, "/dashboard/alerts?partial=1", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !partial.contains("<html"),
        "the live refresh got a whole page"
    );
    assert_eq!(partial.matches("<tr data-alert-id").count(), 50);
}

#[tokio::test]
async fn an_alert_page_without_its_event_shows_the_carried_copy_and_no_script_links() {
    let f = fixture(None).await;
    let mut alert = alerts(1).remove(0);
    alert.metadata.playbook_url = "javascript:window.__xss=1".into();
    alert.metadata.remediation_guidance = "<b>lock</b> the account".into();
    f.embedded
        .store()
        .insert_alerts(&[alert.clone()])
        .await
        .expect("insert");
    let (status, page) = get(
        &f.app,
        &format!("/dashboard/alerts/{}", alert.alert_id),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Not in the store; as carried by the alert"),
        "{page}"
    );
    assert!(page.contains("attacker_bob"), "{page}");
    assert!(
        !page.contains("href=\"javascript"),
        "a javascript: link: {page}"
    );
    assert!(
        page.contains("<code>javascript:window.__xss=1</code>"),
        "{page}"
    );
    assert!(
        page.contains("&lt;b&gt;lock&lt;/b&gt; the account"),
        "{page}"
    );
    assert!(page.contains("No delivery recorded yet."), "{page}");
}

#[tokio::test]
async fn the_overview_shows_each_slo_budget_and_its_firing_alerts() {
    let f = fixture(None).await;
    let (status, page) = get(&f.app, "/dashboard", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let panel = page
        .split("id=\"panel-slo\"")
        .nth(1)
        .and_then(|rest| rest.split("<section").next())
        .expect("SLO panel");
    let row = |name: &str| {
        panel
            .split(&format!("data-slo=\"{name}\""))
            .nth(1)
            .and_then(|rest| rest.split("</tr>").next())
            .unwrap_or_else(|| panic!("no row for {name}: {panel}"))
            .to_string()
    };
    let healthy = row("ingest");
    assert!(healthy.contains("99.900%"), "objective: {healthy}");
    assert!(healthy.contains("100.000%"), "SLI: {healthy}");
    assert!(healthy.contains("100.0%"), "budget: {healthy}");
    assert!(healthy.contains("none"), "no alert: {healthy}");
    // Ten minutes at 100% errors against a 0.1% budget over 30 days:
    // 6,000 bad of 6,000 is far over budget, and the fast page fires.
    let failing = row("&lt;b&gt;analysis&lt;/b&gt;");
    assert!(failing.contains("0.000%"), "SLI: {failing}");
    assert!(
        failing.contains("class=\"num warn\""),
        "budget not flagged: {failing}"
    );
    assert!(failing.contains("page: "), "no page alert shown: {failing}");
    assert!(!panel.contains("<b>analysis</b>"), "SLO name not escaped");
}
