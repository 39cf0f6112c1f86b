//! The read API end to end over the real embedded backends (SQLite in a
//! temporary directory), driven with `tower::ServiceExt::oneshot`.

use std::collections::HashSet;
use std::sync::Arc;

use auditflow_api::{legacy_alert_row, router, ReadApi};
use auditflow_core::broker::{Message, ALERTS_QUEUE, EVENTS_QUEUE};
use auditflow_core::store::{DeliveryRecord, DeliveryStatus, StoredAlert};
use auditflow_core::time::parse_timestamp;
use auditflow_core::{Alert, Broker, Event, Severity, Store};
use auditflow_embedded::{Embedded, EmbeddedOptions};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

struct Harness {
    app: Router,
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    _embedded: Embedded,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let store: Arc<dyn Store> = embedded.store();
    let broker: Arc<dyn Broker> = embedded.broker();
    let app = router(ReadApi {
        store: Arc::clone(&store),
        broker: Arc::clone(&broker),
        queues: vec![EVENTS_QUEUE.into(), ALERTS_QUEUE.into()],
    });
    Harness {
        app,
        store,
        broker,
        _embedded: embedded,
        _dir: dir,
    }
}

impl Harness {
    async fn call(&self, method: Method, uri: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{uri}: body is not JSON ({e}): {bytes:?}"));
        (status, body)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call(Method::GET, uri).await
    }

    async fn get_ok(&self, uri: &str) -> Value {
        let (status, body) = self.get(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        body
    }

    /// Follows `next_cursor` from `uri` to the end; returns every item.
    async fn all_pages(&self, uri: &str) -> (Vec<Value>, usize) {
        let sep = if uri.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut pages = 0;
        let mut cursor: Option<String> = None;
        loop {
            let page_uri = match &cursor {
                None => uri.to_string(),
                Some(c) => format!("{uri}{sep}cursor={c}"),
            };
            let body = self.get_ok(&page_uri).await;
            pages += 1;
            items.extend(body["items"].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => {
                    assert!(body["next_cursor"].is_null());
                    return (items, pages);
                }
            }
            assert!(pages < 100, "pagination does not end");
        }
    }
}

fn base() -> DateTime<Utc> {
    parse_timestamp("2026-11-22T00:00:00Z").unwrap()
}

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(0x1000_0000_0000_4000_8000_0000_0000_0000 + n)
}

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const HOSTS: [&str; 2] = ["web-01", "db-02"];
const TYPES: [&str; 3] = ["user_login", "file_modified", "sudo_command"];

/// Event `i`: minute `i` after `base()`, except 20..25 which share minute 20
/// (ties are broken by id, and pagination must not lose them).
fn event(i: u128) -> Event {
    let minute = i.min(20) as i64;
    let value = json!({
        "event_id": uuid(i).to_string(),
        "timestamp": (base() + Duration::minutes(minute)).to_rfc3339(),
        "source_service": "generator",
        "server_hostname": HOSTS[(i % 2) as usize],
        "event_type": TYPES[(i % 3) as usize],
        "severity": Severity::ALL[(i % 4) as usize].as_str(),
        "user_id": USERS[(i % 3) as usize],
        "action_result": "FAILURE",
        "details": {"note": format!("needle-{}", i % 5)},
    });
    Event::from_value(value).unwrap().event
}

const EVENTS: u128 = 25;

fn events() -> Vec<Event> {
    (0..EVENTS).map(event).collect()
}

fn sample_alert() -> Alert {
    Alert::from_slice(&std::fs::read(format!("{FIXTURES}/alert-failed-login-burst.json")).unwrap())
        .unwrap()
}

/// Alert `i`, caused by event `i`, at minute `i` (ties at 10..14).
fn alert(i: u128) -> Alert {
    let mut alert = sample_alert();
    let ev = event(i);
    alert.alert_id = uuid(1000 + i);
    alert.correlation_id = ev.event_id;
    alert.timestamp = base() + Duration::minutes(i.min(10) as i64);
    alert.analysis_rule.rule_id = format!("RULE-{}", i % 3);
    alert.severity = Severity::ALL[(i % 4) as usize];
    alert.triggered_by.actor_id = ev.user_id.clone();
    alert.impacted_resource.server_hostname = ev.server_hostname.clone();
    alert
}

const ALERTS: u128 = 15;

fn alerts() -> Vec<Alert> {
    (0..ALERTS).map(alert).collect()
}

async fn seed(h: &Harness) {
    assert_eq!(
        h.store.insert_events(&events()).await.unwrap(),
        EVENTS as u64
    );
    assert_eq!(
        h.store.insert_alerts(&alerts()).await.unwrap().len(),
        ALERTS as usize
    );
}

fn ids(items: &[Value], key: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| i[key].as_str().unwrap().to_string())
        .collect()
}

/// Asserts newest-first order by the `timestamp` field.
fn assert_newest_first(items: &[Value]) {
    let times: Vec<DateTime<Utc>> = items
        .iter()
        .map(|i| parse_timestamp(i["timestamp"].as_str().unwrap()).unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {times:?}"
    );
}

#[tokio::test]
async fn event_pages_cover_everything_once_in_order() {
    let h = harness();
    seed(&h).await;
    for limit in [1, 4, 7, 25, 1000] {
        let (items, pages) = h.all_pages(&format!("/v1/events?limit={limit}")).await;
        let got = ids(&items, "event_id");
        let unique: HashSet<&String> = got.iter().collect();
        assert_eq!(got.len(), EVENTS as usize, "limit {limit}: gaps or repeats");
        assert_eq!(unique.len(), EVENTS as usize, "limit {limit}: repeats");
        assert_newest_first(&items);
        assert!(pages >= (EVENTS as usize).div_ceil(limit), "limit {limit}");
    }
    // Items carry stored_at; the default limit is 50 (everything here).
    let body = h.get_ok("/v1/events").await;
    assert_eq!(body["items"].as_array().unwrap().len(), EVENTS as usize);
    assert!(body["next_cursor"].is_null());
    let first = &body["items"][0];
    assert!(parse_timestamp(first["stored_at"].as_str().unwrap()).is_ok());
    assert_eq!(first["source_service"], "generator");
}

/// Every event filter, checked against the same filter applied to the seed data.
#[tokio::test]
async fn event_filters() {
    let h = harness();
    seed(&h).await;
    let all = events();
    let t =
        |m: i64| (base() + Duration::minutes(m)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    type Pred = Box<dyn Fn(&Event) -> bool>;
    let cases: Vec<(String, Pred)> = vec![
        (
            format!("from={}", t(15)),
            Box::new(|e: &Event| e.timestamp >= base() + Duration::minutes(15)),
        ),
        (
            format!("to={}", t(15)),
            Box::new(|e: &Event| e.timestamp < base() + Duration::minutes(15)),
        ),
        (
            format!("from={}&to={}", t(5), t(10)),
            Box::new(|e: &Event| {
                e.timestamp >= base() + Duration::minutes(5)
                    && e.timestamp < base() + Duration::minutes(10)
            }),
        ),
        // An unencoded `+00:00` arrives as a space and is still understood.
        (
            "from=2026-11-22T00:15:00+00:00".into(),
            Box::new(|e: &Event| e.timestamp >= base() + Duration::minutes(15)),
        ),
        (
            "from=2026-11-22%2000:15:00".into(),
            Box::new(|e: &Event| e.timestamp >= base() + Duration::minutes(15)),
        ),
        (
            "event_type=file_modified".into(),
            Box::new(|e: &Event| e.event_type == "file_modified"),
        ),
        (
            "user_id=bob".into(),
            Box::new(|e: &Event| e.user_id == "bob"),
        ),
        (
            "server_hostname=db-02".into(),
            Box::new(|e: &Event| e.server_hostname == "db-02"),
        ),
        (
            "severity=critical".into(),
            Box::new(|e: &Event| e.severity == Severity::Critical),
        ),
        (
            "severity=Warning".into(),
            Box::new(|e: &Event| e.severity == Severity::Warning),
        ),
        (
            "q=needle-3".into(),
            Box::new(|e: &Event| e.details["note"] == "needle-3"),
        ),
        (
            "user_id=alice&server_hostname=web-01&severity=INFO".into(),
            Box::new(|e: &Event| {
                e.user_id == "alice"
                    && e.server_hostname == "web-01"
                    && e.severity == Severity::Info
            }),
        ),
        ("user_id=&severity=".into(), Box::new(|_: &Event| true)),
        ("user_id=nobody".into(), Box::new(|_: &Event| false)),
    ];
    for (query, pred) in cases {
        let (items, _) = h.all_pages(&format!("/v1/events?limit=3&{query}")).await;
        let mut got = ids(&items, "event_id");
        let mut want: Vec<String> = all
            .iter()
            .filter(|e| pred(e))
            .map(|e| e.event_id.to_string())
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{query}");
    }
}

#[tokio::test]
async fn bad_v1_parameters_are_400_naming_the_parameter() {
    let h = harness();
    for (uri, param) in [
        ("/v1/events?from=yesterday", "from"),
        ("/v1/events?to=2026-13-01T00:00:00Z", "to"),
        (
            "/v1/events?from=2026-11-23T00:00:00Z&to=2026-11-22T00:00:00Z",
            "from",
        ),
        ("/v1/events?severity=loud", "severity"),
        ("/v1/events?cursor=abc", "cursor"),
        ("/v1/events?limit=0", "limit"),
        ("/v1/events?limit=1001", "limit"),
        ("/v1/events?limit=-5", "limit"),
        ("/v1/events?limit=many", "limit"),
        ("/v1/events?severty=INFO", "severty"),
        ("/v1/alerts?from=soon", "from"),
        ("/v1/alerts?severity=meh", "severity"),
        ("/v1/alerts?cursor=1_2", "cursor"),
        ("/v1/alerts?limit=x", "limit"),
        ("/v1/alerts?q=text", "q"),
        ("/v1/dead-letters?limit=0", "limit"),
        ("/v1/dead-letters?queue=nope", "queue"),
    ] {
        let (status, body) = h.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(&format!("`{param}`")), "{uri}: {msg}");
    }
}

#[tokio::test]
async fn event_detail_includes_its_alerts_and_404s() {
    let h = harness();
    seed(&h).await;
    let ev = event(3);
    let body = h.get_ok(&format!("/v1/events/{}", ev.event_id)).await;
    assert_eq!(body["event_id"], ev.event_id.to_string());
    assert_eq!(body["user_id"], ev.user_id);
    assert!(body["stored_at"].is_string());
    let alerts = body["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["alert_id"], uuid(1003).to_string());
    assert!(alerts[0]["received_at"].is_string());

    // An event that caused no alert.
    let body = h.get_ok(&format!("/v1/events/{}", uuid(20))).await;
    assert_eq!(body["alerts"], json!([]));

    for id in [
        Uuid::new_v4().to_string(),
        "not-a-uuid".into(),
        "123".into(),
    ] {
        let (status, body) = h.get(&format!("/v1/events/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(body, json!({"error": "event not found"}));
    }
}

#[tokio::test]
async fn alert_pages_and_filters() {
    let h = harness();
    seed(&h).await;
    let all = alerts();
    for limit in [1, 4, 15] {
        let (items, _) = h.all_pages(&format!("/v1/alerts?limit={limit}")).await;
        let got = ids(&items, "alert_id");
        assert_eq!(got.len(), ALERTS as usize, "limit {limit}");
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), ALERTS as usize);
        assert_newest_first(&items);
        assert!(items[0]["received_at"].is_string());
        assert_eq!(items[0]["alert_name"], "Multiple Failed Login Attempts");
    }
    let t =
        |m: i64| (base() + Duration::minutes(m)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    type Pred = Box<dyn Fn(&Alert) -> bool>;
    let cases: Vec<(String, Pred)> = vec![
        (
            format!("from={}", t(5)),
            Box::new(|a: &Alert| a.timestamp >= base() + Duration::minutes(5)),
        ),
        (
            format!("to={}", t(5)),
            Box::new(|a: &Alert| a.timestamp < base() + Duration::minutes(5)),
        ),
        (
            "rule_id=RULE-1".into(),
            Box::new(|a: &Alert| a.analysis_rule.rule_id == "RULE-1"),
        ),
        (
            "severity=error".into(),
            Box::new(|a: &Alert| a.severity == Severity::Error),
        ),
        (
            "user_id=carol".into(),
            Box::new(|a: &Alert| a.triggered_by.actor_id == "carol"),
        ),
        (
            "server_hostname=web-01".into(),
            Box::new(|a: &Alert| a.impacted_resource.server_hostname == "web-01"),
        ),
        (
            "rule_id=RULE-0&severity=INFO".into(),
            Box::new(|a: &Alert| {
                a.analysis_rule.rule_id == "RULE-0" && a.severity == Severity::Info
            }),
        ),
    ];
    for (query, pred) in cases {
        let (items, _) = h.all_pages(&format!("/v1/alerts?limit=2&{query}")).await;
        let mut got = ids(&items, "alert_id");
        let mut want: Vec<String> = all
            .iter()
            .filter(|a| pred(a))
            .map(|a| a.alert_id.to_string())
            .collect();
        got.sort();
        want.sort();
        assert!(!want.is_empty(), "{query}: vacuous case");
        assert_eq!(got, want, "{query}");
    }
}

#[tokio::test]
async fn alert_detail_has_deliveries_and_404s() {
    let h = harness();
    seed(&h).await;
    let id = uuid(1007);
    let record = DeliveryRecord {
        alert_id: id,
        channel: "slack".into(),
        status: DeliveryStatus::Failed,
        attempts: 3,
        last_error: Some("HTTP 500".into()),
        recorded_at: base(),
        next_attempt_at: None,
    };
    h.store.record_delivery(&record).await.unwrap();
    let body = h.get_ok(&format!("/v1/alerts/{id}")).await;
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["alert", "received_at", "deliveries"]
    );
    assert_eq!(body["alert"]["alert_id"], id.to_string());
    assert_eq!(body["alert"]["analysis_rule"]["rule_id"], "RULE-1");
    assert!(body["alert"].get("received_at").is_none());
    assert!(parse_timestamp(body["received_at"].as_str().unwrap()).is_ok());
    assert_eq!(
        body["deliveries"],
        json!([serde_json::to_value(&record).unwrap()])
    );

    let body = h.get_ok(&format!("/v1/alerts/{}", uuid(1008))).await;
    assert_eq!(body["deliveries"], json!([]));

    for id in [Uuid::new_v4().to_string(), "nope".into(), "%20".into()] {
        let (status, body) = h.get(&format!("/v1/alerts/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(body, json!({"error": "alert not found"}));
    }
}

async fn stored(h: &Harness, id: Uuid) -> StoredAlert {
    h.store.alert(id).await.unwrap().unwrap()
}

#[tokio::test]
async fn legacy_alerts_list_matches_the_python_api() {
    let h = harness();
    seed(&h).await;
    // The compat sample itself, newer than every seeded alert.
    let sample = sample_alert();
    h.store
        .insert_alerts(std::slice::from_ref(&sample))
        .await
        .unwrap();
    let total = ALERTS as usize + 1;

    let (status, body) = h.get("/alerts").await;
    assert_eq!(status, StatusCode::OK);
    let rows = body.as_array().expect("a JSON array");
    assert_eq!(rows.len(), total, "default limit 100 covers all");
    // Newest first, rendered in the legacy timestamp form.
    let times: Vec<DateTime<Utc>> = rows
        .iter()
        .map(|r| {
            let ts = r["timestamp"].as_str().unwrap();
            assert!(ts.ends_with("+00:00") && ts.as_bytes()[10] == b' ', "{ts}");
            parse_timestamp(ts).unwrap()
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]));

    // The sample alert's row equals the legacy sample, key for key and in
    // order, except for received_at (assigned by our store).
    let expected: Value = serde_json::from_slice(
        &std::fs::read(format!("{FIXTURES}/notification-api-alert-row.json")).unwrap(),
    )
    .unwrap();
    let row = rows[0].as_object().unwrap();
    assert_eq!(row["alert_id"], sample.alert_id.to_string(), "newest first");
    let expected = expected.as_object().unwrap();
    assert_eq!(
        row.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, value) in expected {
        if key != "received_at" {
            assert_eq!(&row[key], value, "{key}");
        }
    }
    assert_eq!(
        Value::Object(row.clone()),
        legacy_alert_row(&stored(&h, sample.alert_id).await)
    );

    // limit/offset pages are contiguous slices of the full listing.
    let mut paged = Vec::new();
    for offset in (0..total).step_by(4) {
        let page = h.get_ok(&format!("/alerts?limit=4&offset={offset}")).await;
        paged.extend(page.as_array().unwrap().iter().cloned());
    }
    assert_eq!(&paged, rows);
    assert_eq!(
        h.get_ok(&format!("/alerts?offset={total}")).await,
        json!([])
    );
    // Python int() forms and a repeated parameter (the first one counts).
    assert_eq!(
        h.get_ok("/alerts?limit=%202%20")
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        h.get_ok("/alerts?limit=+3").await.as_array().unwrap().len(),
        3
    );
    assert_eq!(
        h.get_ok("/alerts?limit=1&limit=5")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        h.get_ok("/alerts?limit=100000")
            .await
            .as_array()
            .unwrap()
            .len(),
        total
    );
    assert_eq!(
        h.get_ok("/alerts?unknown=1")
            .await
            .as_array()
            .unwrap()
            .len(),
        total
    );
}

#[tokio::test]
async fn legacy_errors_are_verbatim() {
    let h = harness();
    seed(&h).await;
    for (query, message) in [
        ("limit=0", "Limit must be a positive integer."),
        ("limit=-1", "Limit must be a positive integer."),
        ("limit=abc", "Limit must be an integer."),
        ("limit=1.5", "Limit must be an integer."),
        ("limit=", "Limit must be an integer."),
        ("offset=-1", "Offset cannot be negative."),
        ("offset=x", "Offset must be an integer."),
        ("offset=", "Offset must be an integer."),
        ("limit=x&offset=-1", "Limit must be an integer."),
    ] {
        let (status, body) = h.get(&format!("/alerts?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body, json!({ "error": message }), "{query}");
    }
}

#[tokio::test]
async fn legacy_single_alert_and_404s() {
    let h = harness();
    seed(&h).await;
    let id = uuid(1004);
    let body = h.get_ok(&format!("/alerts/{id}")).await;
    assert!(body.is_object());
    assert_eq!(body, legacy_alert_row(&stored(&h, id).await));
    assert_eq!(body["rule_id"], "RULE-1");
    assert_eq!(body["client_ip"], Value::Null);
    for id in [
        Uuid::new_v4().to_string(),
        "not-a-uuid".into(),
        "1".into(),
        "fc5b2c34-8e0a-4b8e-b0f3".into(),
        "%27%3B%20DROP%20TABLE%20alerts".into(),
    ] {
        let (status, body) = h.get(&format!("/alerts/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(body, json!({"message": "Alert not found"}), "{id}");
    }
}

/// Publishes `n` messages to `queue` and dead-letters them all with a reason.
async fn dead_letter(h: &Harness, queue: &str, n: usize, reason: &str) {
    let messages: Vec<Message> = (0..n)
        .map(|i| Message {
            message_id: format!("{queue}-{i}"),
            payload: format!("{{\"n\": {i}}}").into_bytes().into(),
            headers: Default::default(),
        })
        .collect();
    h.broker.publish(queue, &messages).await.unwrap();
    let mut sub = h.broker.subscribe(queue, n).await.unwrap();
    let mut got = 0;
    while got < n {
        let batch = sub.next_batch(n - got).await.unwrap();
        for delivery in batch {
            sub.dead_letter(delivery.tag, reason).await.unwrap();
            got += 1;
        }
    }
}

#[tokio::test]
async fn dead_letters_list_and_redrive() {
    let h = harness();
    dead_letter(&h, EVENTS_QUEUE, 3, "field `severity`: is required").await;
    dead_letter(&h, ALERTS_QUEUE, 2, "invalid alert").await;

    let body = h.get_ok("/v1/dead-letters").await;
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 5, "all configured queues by default");
    let per_queue = |q: &str| items.iter().filter(|i| i["queue"] == q).count();
    assert_eq!((per_queue(EVENTS_QUEUE), per_queue(ALERTS_QUEUE)), (3, 2));
    assert!(
        h.get_ok("/v1/dead-letters?limit=2").await["items"]
            .as_array()
            .unwrap()
            .len()
            == 2
    );

    let body = h.get_ok("/v1/dead-letters?queue=audit_events").await;
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for item in items {
        assert_eq!(item["queue"], EVENTS_QUEUE);
        assert_eq!(item["reason"], "field `severity`: is required");
        assert!(item["payload"].as_str().unwrap().starts_with("{\"n\""));
        assert_eq!(item["delivery_count"], 1);
    }

    let stats = h.get_ok("/v1/queues").await;
    assert_eq!(
        stats,
        json!({"queues": [
            {"queue": "audit_events", "ready": 0, "unacked": 0, "dead_lettered": 3},
            {"queue": "audit_alerts", "ready": 0, "unacked": 0, "dead_lettered": 2},
        ]})
    );

    let id = items[0]["id"].as_str().unwrap().to_string();
    let uri = format!("/v1/dead-letters/audit_events/{id}/redrive");
    let (status, body) = h.call(Method::POST, &uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"redriven": true}));
    // Gone now: a second redrive is a 404, and the message is ready again.
    let (status, body) = h.call(Method::POST, &uri).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"error": "dead letter not found"}));
    let stats = h.get_ok("/v1/queues").await;
    assert_eq!(stats["queues"][0]["ready"], 1);
    assert_eq!(stats["queues"][0]["dead_lettered"], 2);
    assert_eq!(
        h.get_ok("/v1/dead-letters?queue=audit_events").await["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A dead letter of another queue, an unknown id, an unknown queue.
    let alerts_id = h.get_ok("/v1/dead-letters?queue=audit_alerts").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (uri, message) in [
        (
            format!("/v1/dead-letters/audit_events/{alerts_id}/redrive"),
            "dead letter not found",
        ),
        (
            "/v1/dead-letters/audit_events/999999/redrive".into(),
            "dead letter not found",
        ),
        (
            "/v1/dead-letters/audit_events/not-an-id/redrive".into(),
            "dead letter not found",
        ),
        (
            "/v1/dead-letters/elsewhere/1/redrive".into(),
            "unknown queue",
        ),
    ] {
        let (status, body) = h.call(Method::POST, &uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(body, json!({ "error": message }), "{uri}");
    }
}
