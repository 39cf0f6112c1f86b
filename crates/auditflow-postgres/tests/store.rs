//! The store against a real PostgreSQL: idempotent batched writes, every
//! filter, keyset pagination, legacy alert columns, deliveries.

mod common;

use std::collections::HashSet;

use auditflow_core::alert::Alert;
use auditflow_core::event::{Event, Severity};
use auditflow_core::store::{
    AlertQuery, DeliveryRecord, DeliveryStatus, EventQuery, Store, StoredAlert, StoredEvent,
};
use auditflow_postgres::DEFAULT_PAGE;
use common::*;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn inserts_are_idempotent_and_counted() {
    let db = TestDb::new();
    let store = db.store().await;
    let first: Vec<Event> = (0..10).map(|n| login(n, n as i64)).collect();
    assert_eq!(store.insert_events(&first).await.unwrap(), 10);
    assert_eq!(store.insert_events(&first).await.unwrap(), 0, "redelivery");
    let mut mixed: Vec<Event> = (5..15).map(|n| login(n, n as i64)).collect();
    mixed.push(login(14, 14)); // the same id twice in one batch
    assert_eq!(store.insert_events(&mixed).await.unwrap(), 5);
    assert_eq!(store.insert_events(&[]).await.unwrap(), 0);

    let alerts: Vec<Alert> = (0..3)
        .map(|n| alert(n, n as i64, "R1", "bob", "web", "N/A"))
        .collect();
    let ids: Vec<Uuid> = alerts.iter().map(|a| a.alert_id).collect();
    assert_eq!(
        store.insert_alerts(&alerts).await.unwrap(),
        ids,
        "input order"
    );
    let mut again = alerts.clone();
    let extra = alert(9, 9, "R1", "bob", "web", "N/A");
    again.insert(1, extra.clone());
    again.push(extra.clone());
    assert_eq!(store.insert_alerts(&again).await.unwrap(), [extra.alert_id]);

    let counts = store.counts().await.unwrap();
    assert_eq!((counts.events, counts.alerts), (15, 4));
    let raw = db.raw().await;
    let exact: i64 = raw
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(exact, 15);

    let got = store.event(id(3)).await.unwrap().expect("stored");
    assert_eq!(got.event, login(3, 3));
    assert!(got.stored_at > chrono::Utc::now() - chrono::Duration::minutes(5));
    assert!(store.event(id(999)).await.unwrap().is_none());
    let got = store.alert(extra.alert_id).await.unwrap().expect("stored");
    assert_eq!(got.alert, extra);
    assert!(store.alert(Uuid::nil()).await.unwrap().is_none());
}

/// A batch larger than one statement carries (256 rows) is split into
/// several statements in one transaction: still each event once, counted
/// once, also when a duplicate id straddles two statements.
#[tokio::test]
async fn a_batch_of_several_statements_is_stored_once_and_counted_exactly() {
    let db = TestDb::new();
    let store = db.store().await;
    let mut batch: Vec<Event> = (0..600).map(|n| login(n, n as i64)).collect();
    // Sorted by id, ids 255 and 256 border the first two statements; a
    // second copy of 255 makes the duplicate fall on both sides.
    batch.push(login(255, 255));
    batch.push(login(599, 599));
    assert_eq!(store.insert_events(&batch).await.unwrap(), 600);
    assert_eq!(store.insert_events(&batch).await.unwrap(), 0, "redelivery");
    let mut overlapping: Vec<Event> = (500..900).map(|n| login(n, n as i64)).collect();
    overlapping.reverse();
    assert_eq!(store.insert_events(&overlapping).await.unwrap(), 300);
    assert_eq!(store.counts().await.unwrap().events, 900);
    let raw = db.raw().await;
    let exact: i64 = raw
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(exact, 900);
}

#[tokio::test]
async fn unknown_fields_and_both_resource_forms_round_trip() {
    let db = TestDb::new();
    let store = db.store().await;
    let mut a = login(1, 0);
    a.extra
        .insert("tenant".into(), json!({"name": "acme", "tier": 2}));
    a.resource = Some("/etc/shadow".into());
    a.client_ip = Some("10.9.8.7".into());
    a.timestamp += chrono::Duration::microseconds(123_456);
    let mut b = login(2, 0);
    b.details.insert("resource".into(), json!("/etc/passwd"));
    store.insert_events(&[a.clone(), b.clone()]).await.unwrap();
    assert_eq!(store.event(a.event_id).await.unwrap().unwrap().event, a);
    assert_eq!(store.event(b.event_id).await.unwrap().unwrap().event, b);
    for (needle, want) in [("SHADOW", a.event_id), ("passwd", b.event_id)] {
        let page = store
            .events(&EventQuery {
                text: Some(needle.into()),
                ..EventQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(ids_of(&page.items), [want], "{needle}");
    }
    let mut al = alert(1, 0, "R1", "bob", "web", "N/A");
    al.extra.insert("x_custom".into(), json!([1, 2, 3]));
    store
        .insert_alerts(std::slice::from_ref(&al))
        .await
        .unwrap();
    assert_eq!(store.alert(al.alert_id).await.unwrap().unwrap().alert, al);
}

fn ids_of(items: &[StoredEvent]) -> Vec<Uuid> {
    items.iter().map(|e| e.event.event_id).collect()
}

fn alert_ids(items: &[StoredAlert]) -> Vec<Uuid> {
    items.iter().map(|a| a.alert.alert_id).collect()
}

/// A varied population of events.
fn population() -> Vec<Event> {
    let users = ["alice", "bob", "Carol_X", "dave%"];
    let hosts = ["prod-web-01", "prod-db-01", "dev-web-02"];
    let kinds = ["user_login", "file_modified", "sudo_command"];
    (0..120u128)
        .map(|n| {
            let i = n as usize;
            let mut e = event(
                n,
                (n / 4) as i64, // ties: 4 events per second
                users[i % users.len()],
                hosts[i % hosts.len()],
                kinds[i % kinds.len()],
                Severity::ALL[i % 4],
            );
            if i.is_multiple_of(5) {
                e.details
                    .insert("resource".into(), json!(format!("/srv/file_{i}.txt")));
            }
            if i.is_multiple_of(7) {
                e.details.insert("note".into(), json!("Weird 100% Match"));
            }
            e
        })
        .collect()
}

/// The reference: filter and order in memory.
fn expected(events: &[Event], q: &EventQuery) -> Vec<Uuid> {
    let needle = q.text.as_ref().map(|t| t.to_lowercase());
    let mut hits: Vec<&Event> = events
        .iter()
        .filter(|e| q.from.is_none_or(|f| e.timestamp >= f))
        .filter(|e| q.to.is_none_or(|t| e.timestamp < t))
        .filter(|e| q.event_type.as_ref().is_none_or(|v| &e.event_type == v))
        .filter(|e| q.user_id.as_ref().is_none_or(|v| &e.user_id == v))
        .filter(|e| {
            q.server_hostname
                .as_ref()
                .is_none_or(|v| &e.server_hostname == v)
        })
        .filter(|e| q.severity.is_none_or(|v| e.severity == v))
        .filter(|e| {
            needle.as_ref().is_none_or(|n| {
                [
                    e.user_id.clone(),
                    e.server_hostname.clone(),
                    e.event_type.clone(),
                    e.effective_resource().unwrap_or_default().to_string(),
                    serde_json::to_string(&e.details).unwrap(),
                ]
                .iter()
                .any(|s| s.to_lowercase().contains(n))
            })
        })
        .collect();
    hits.sort_by_key(|e| std::cmp::Reverse((e.timestamp, e.event_id)));
    hits.into_iter().map(|e| e.event_id).collect()
}

/// Every page of a listing, following cursors.
async fn all_pages(store: &impl Store, mut q: EventQuery) -> Vec<Uuid> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        let page = store.events(&q).await.unwrap();
        assert!(page.items.len() <= if q.limit == 0 { 100 } else { q.limit as usize });
        out.extend(ids_of(&page.items));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn every_event_filter_and_cursor_pagination_match_the_reference() {
    let db = TestDb::new();
    let store = db.store().await;
    let events = population();
    store.insert_events(&events).await.unwrap();
    let queries = vec![
        EventQuery::default(),
        EventQuery {
            from: Some(at(5)),
            to: Some(at(12)),
            ..Default::default()
        },
        EventQuery {
            from: Some(at(20)),
            ..Default::default()
        },
        EventQuery {
            to: Some(at(3)),
            ..Default::default()
        },
        EventQuery {
            event_type: Some("sudo_command".into()),
            ..Default::default()
        },
        EventQuery {
            user_id: Some("bob".into()),
            ..Default::default()
        },
        EventQuery {
            server_hostname: Some("prod-db-01".into()),
            ..Default::default()
        },
        EventQuery {
            severity: Some(Severity::Critical),
            ..Default::default()
        },
        EventQuery {
            text: Some("carol".into()),
            ..Default::default()
        },
        EventQuery {
            text: Some("DB-01".into()),
            ..Default::default()
        },
        EventQuery {
            text: Some("modified".into()),
            ..Default::default()
        },
        EventQuery {
            text: Some("file_1".into()),
            ..Default::default()
        },
        EventQuery {
            text: Some("100%".into()),
            ..Default::default()
        },
        EventQuery {
            text: Some("e%".into()),
            ..Default::default()
        },
        EventQuery {
            text: Some("nothing-like-this".into()),
            ..Default::default()
        },
        EventQuery {
            user_id: Some("alice".into()),
            severity: Some(Severity::Info),
            from: Some(at(2)),
            text: Some("web".into()),
            ..Default::default()
        },
    ];
    for q in queries {
        let want = expected(&events, &q);
        for limit in [0, 1, 7, 1000] {
            let q = EventQuery { limit, ..q.clone() };
            let got = all_pages(&store, q.clone()).await;
            assert_eq!(got, want, "{q:?}");
            let unique: HashSet<&Uuid> = got.iter().collect();
            assert_eq!(unique.len(), got.len(), "no repeats");
        }
    }
    // Pages respect the limit and the default.
    let page = store.events(&EventQuery::default()).await.unwrap();
    assert_eq!(page.items.len(), 100.min(events.len()));
    assert_eq!(DEFAULT_PAGE, 100);
}

#[tokio::test]
async fn pagination_is_stable_under_concurrent_inserts_with_equal_timestamps() {
    let db = TestDb::new();
    let store = db.store().await;
    // 60 events all at the same instant.
    let events: Vec<Event> = (0..60).map(|n| login(n, 100)).collect();
    store.insert_events(&events).await.unwrap();
    let mut q = EventQuery {
        limit: 8,
        ..EventQuery::default()
    };
    let mut seen = Vec::new();
    let mut page_no = 0;
    loop {
        let page = store.events(&q).await.unwrap();
        seen.extend(ids_of(&page.items));
        // Newer events arriving meanwhile do not shift later pages.
        page_no += 1;
        store
            .insert_events(&[login(1000 + page_no, 200)])
            .await
            .unwrap();
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    let mut want: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    want.sort_by(|a, b| b.cmp(a));
    assert_eq!(
        seen, want,
        "no gaps, no repeats, id order within a timestamp"
    );
}

#[tokio::test]
async fn alert_filters_cursor_and_offset_listing() {
    let db = TestDb::new();
    let store = db.store().await;
    let rules = ["R1", "R2"];
    let users = ["bob", "eve", "mallory"];
    let hosts = ["web", "db"];
    let alerts: Vec<Alert> = (0..30u128)
        .map(|n| {
            let i = n as usize;
            let mut a = alert(
                n,
                (n / 3) as i64,
                rules[i % 2],
                users[i % 3],
                hosts[i % 2],
                "N/A",
            );
            a.severity = Severity::ALL[i % 4];
            a
        })
        .collect();
    store.insert_alerts(&alerts).await.unwrap();
    let mut newest_first = alerts.clone();
    newest_first.sort_by_key(|a| std::cmp::Reverse((a.timestamp, a.alert_id)));
    let model = |keep: &dyn Fn(&Alert) -> bool| -> Vec<Uuid> {
        newest_first
            .iter()
            .filter(|a| keep(a))
            .map(|a| a.alert_id)
            .collect()
    };
    let cases: Vec<(AlertQuery, Vec<Uuid>)> = vec![
        (AlertQuery::default(), model(&|_| true)),
        (
            AlertQuery {
                rule_id: Some("R2".into()),
                ..Default::default()
            },
            model(&|a| a.analysis_rule.rule_id == "R2"),
        ),
        (
            AlertQuery {
                severity: Some(Severity::Error),
                ..Default::default()
            },
            model(&|a| a.severity == Severity::Error),
        ),
        (
            AlertQuery {
                user_id: Some("eve".into()),
                ..Default::default()
            },
            model(&|a| a.triggered_by.actor_id == "eve"),
        ),
        (
            AlertQuery {
                server_hostname: Some("db".into()),
                ..Default::default()
            },
            model(&|a| a.impacted_resource.server_hostname == "db"),
        ),
        (
            AlertQuery {
                correlation_id: Some(alerts[7].correlation_id),
                ..Default::default()
            },
            vec![alerts[7].alert_id],
        ),
        (
            AlertQuery {
                from: Some(at(2)),
                to: Some(at(5)),
                rule_id: Some("R1".into()),
                ..Default::default()
            },
            model(&|a| {
                a.timestamp >= at(2) && a.timestamp < at(5) && a.analysis_rule.rule_id == "R1"
            }),
        ),
    ];
    for (q, want) in cases {
        for limit in [1, 4, 0] {
            let mut q = AlertQuery { limit, ..q.clone() };
            let mut got = Vec::new();
            loop {
                let page = store.alerts(&q).await.unwrap();
                got.extend(alert_ids(&page.items));
                match page.next_cursor {
                    Some(c) => q.cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(got, want, "{q:?}");
        }
    }
    let all = model(&|_| true);
    for (limit, offset) in [(7u32, 0u64), (7, 7), (7, 28), (5, 30), (0, 0), (2000, 3)] {
        let got = alert_ids(&store.alerts_by_offset(limit, offset).await.unwrap());
        let take = if limit == 0 { 100 } else { limit as usize };
        let want: Vec<Uuid> = all
            .iter()
            .skip(offset as usize)
            .take(take)
            .copied()
            .collect();
        assert_eq!(got, want, "limit {limit} offset {offset}");
    }
}

#[tokio::test]
async fn deliveries_are_upserted_per_alert_and_channel() {
    let db = TestDb::new();
    let store = db.store().await;
    let a = Uuid::from_u128(1);
    let now =
        chrono::DateTime::from_timestamp_micros(chrono::Utc::now().timestamp_micros()).unwrap();
    let record = |channel: &str, status, attempts, err: Option<&str>| DeliveryRecord {
        alert_id: a,
        channel: channel.into(),
        status,
        attempts,
        last_error: err.map(str::to_string),
        recorded_at: now,
        next_attempt_at: None,
    };
    store
        .record_delivery(&record("slack", DeliveryStatus::Failed, 5, Some("503")))
        .await
        .unwrap();
    store
        .record_delivery(&record("email", DeliveryStatus::Delivered, 1, None))
        .await
        .unwrap();
    store
        .record_delivery(&record("email", DeliveryStatus::Delivered, 1, None))
        .await
        .unwrap();
    assert_eq!(
        store.deliveries(a).await.unwrap(),
        [
            record("email", DeliveryStatus::Delivered, 1, None),
            record("slack", DeliveryStatus::Failed, 5, Some("503")),
        ]
    );
    // A later outcome overwrites.
    store
        .record_delivery(&record("slack", DeliveryStatus::Delivered, 7, None))
        .await
        .unwrap();
    assert_eq!(
        store.deliveries(a).await.unwrap()[1],
        record("slack", DeliveryStatus::Delivered, 7, None)
    );
    assert!(store
        .deliveries(Uuid::from_u128(2))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn legacy_columns_are_filled_for_sql_readers() {
    let db = TestDb::new();
    let store = db.store().await;
    let na = alert(1, 0, "ANLY-SEC-001", "attacker_bob", "prod-web-01", "N/A");
    let v4 = alert(
        2,
        1,
        "ANLY-SEC-001",
        "attacker_bob",
        "prod-web-01",
        "192.168.1.150",
    );
    let v6 = alert(
        3,
        2,
        "ANLY-SEC-001",
        "attacker_bob",
        "prod-web-01",
        "2001:db8::1",
    );
    let junk = alert(
        4,
        3,
        "ANLY-SEC-001",
        "attacker_bob",
        "prod-web-01",
        "not-an-address",
    );
    store
        .insert_alerts(&[na.clone(), v4.clone(), v6.clone(), junk.clone()])
        .await
        .unwrap();
    let raw = db.raw().await;
    let row = |id: Uuid| {
        let raw = &raw;
        async move {
            raw.query_one(
                "SELECT host(client_ip), correlation_id, timestamp, alert_name, alert_type, severity,
                        rule_id, rule_name, actor_type, actor_id, resource_type, resource_id,
                        server_hostname, action_observed, source_service_name, description,
                        analysis_rule_details, triggered_by_details, impacted_resource_details,
                        metadata, raw_event_data, received_at IS NOT NULL, family(client_ip)
                 FROM alerts WHERE alert_id = $1",
                &[&id],
            )
            .await
            .unwrap()
        }
    };
    let r = row(na.alert_id).await;
    assert_eq!(r.get::<_, Option<String>>(0), None, "N/A is NULL");
    assert_eq!(r.get::<_, Uuid>(1), na.correlation_id);
    assert_eq!(r.get::<_, chrono::DateTime<chrono::Utc>>(2), na.timestamp);
    let texts: Vec<String> = (3..16).map(|i| r.get(i)).collect();
    assert_eq!(
        texts,
        [
            "Multiple Failed Login Attempts",
            "SECURITY",
            "CRITICAL",
            "ANLY-SEC-001",
            "Failed Login Burst Detection",
            "USER",
            "attacker_bob",
            "SERVER",
            "prod-web-01",
            "prod-web-01",
            "LOGIN_FAILURE",
            "audit-event-generator",
            &na.description,
        ]
    );
    let json = |i: usize| r.get::<_, serde_json::Value>(i);
    assert_eq!(json(16), serde_json::to_value(&na.analysis_rule).unwrap());
    assert_eq!(json(17)["client_ip"], "N/A", "details keep the legacy N/A");
    assert_eq!(
        json(18),
        serde_json::to_value(&na.impacted_resource).unwrap()
    );
    assert_eq!(json(19), serde_json::to_value(&na.metadata).unwrap());
    assert_eq!(json(20), na.raw_event_data);
    assert!(r.get::<_, bool>(21));
    let r = row(v4.alert_id).await;
    assert_eq!(
        r.get::<_, Option<String>>(0).as_deref(),
        Some("192.168.1.150")
    );
    assert_eq!(r.get::<_, Option<i32>>(22), Some(4), "an INET");
    let r = row(v6.alert_id).await;
    assert_eq!(
        r.get::<_, Option<String>>(0).as_deref(),
        Some("2001:db8::1")
    );
    assert_eq!(r.get::<_, Option<i32>>(22), Some(6));
    let r = row(junk.alert_id).await;
    assert_eq!(r.get::<_, Option<String>>(0), None, "not an address: NULL");
    // ...but the alert as sent is kept.
    assert_eq!(
        store
            .alert(junk.alert_id)
            .await
            .unwrap()
            .unwrap()
            .alert
            .triggered_by
            .client_ip,
        "not-an-address"
    );
}

#[tokio::test]
async fn constraint_and_data_errors_are_rejected_not_retried() {
    let db = TestDb::new();
    let store = db.store().await;
    // A legacy writer with different ideas: a CHECK our rows violate.
    let raw = db.raw().await;
    raw.batch_execute("ALTER TABLE alerts ADD CONSTRAINT no_eve CHECK (actor_id <> 'eve')")
        .await
        .unwrap();
    let err = store
        .insert_alerts(&[alert(1, 0, "R", "eve", "web", "N/A")])
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("no_eve"), "{err}");
    // A NUL byte cannot be stored in text: a data error (22021).
    let mut bad = login(1, 0);
    bad.user_id = "nul\u{0}byte".into();
    let err = store.insert_events(&[bad]).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    // Nothing was stored by either, and the store still works.
    assert_eq!(store.counts().await.unwrap().events, 0);
    assert_eq!(store.insert_events(&[login(2, 0)]).await.unwrap(), 1);
}

/// `n` alerts of one rule, actor and host, a second apart.
fn bobs_alerts(n: u128) -> Vec<Alert> {
    (0..n)
        .map(|i| {
            alert(
                i,
                i as i64,
                "ANLY-SEC-001",
                "bob",
                "prod-web-01",
                "10.0.0.1",
            )
        })
        .collect()
}

#[tokio::test]
async fn retries_are_claimed_when_due_under_a_lease() {
    let db = TestDb::new();
    let store = db.store().await;
    let alerts = bobs_alerts(4);
    auditflow_core::conformance::retry_claims(&store, &alerts).await;
}

#[tokio::test]
async fn a_batch_of_delivery_records_lands_as_if_recorded_one_by_one() {
    let db = TestDb::new();
    let store = db.store().await;
    let alerts = bobs_alerts(3);
    auditflow_core::conformance::batch_deliveries(&store, &alerts).await;
}

/// Two replicas claiming at once split the due retries: none is claimed twice.
#[tokio::test]
async fn concurrent_claims_do_not_overlap() {
    use chrono::{DateTime, Duration, Utc};
    let db = TestDb::new();
    let store = db.store().await;
    let alerts: Vec<Alert> = (0..40)
        .map(|n| {
            alert(
                n,
                n as i64,
                "ANLY-SEC-001",
                "bob",
                "prod-web-01",
                "10.0.0.1",
            )
        })
        .collect();
    store.insert_alerts(&alerts).await.unwrap();
    let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    for a in &alerts {
        store
            .record_delivery(&DeliveryRecord {
                alert_id: a.alert_id,
                channel: "hook".into(),
                status: DeliveryStatus::Retrying,
                attempts: 1,
                last_error: None,
                recorded_at: now,
                next_attempt_at: Some(now),
            })
            .await
            .unwrap();
    }
    let lease = now + Duration::seconds(60);
    let claim = || store.claim_retries("hook", now, lease, 15);
    let (a, b, c, d) = tokio::join!(claim(), claim(), claim(), claim());
    let mut seen = HashSet::new();
    for claim in [a, b, c, d] {
        for p in claim.unwrap() {
            assert!(seen.insert(p.alert.alert.alert_id), "claimed twice");
        }
    }
    assert_eq!(seen.len(), alerts.len());
}
