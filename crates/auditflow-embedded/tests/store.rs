//! Store semantics on real files.

mod common;

use std::collections::HashSet;

use auditflow_core::event::{Event, Severity};
use auditflow_core::store::{
    AlertQuery, DeliveryRecord, DeliveryStatus, EventQuery, Store, StoreCounts, MAX_PAGE,
};
use auditflow_core::Alert;
use common::*;
use uuid::Uuid;

fn sample() -> Vec<Event> {
    let types = ["user_login", "file_modified", "sudo_command"];
    let users = ["alice", "bob", "attacker_bob"];
    let hosts = ["prod-web-01", "prod-db-01"];
    (0..60u128)
        .map(|n| {
            event(
                n,
                // Many equal timestamps: 20 distinct times, 3 events each.
                (n / 3) as i64,
                types[(n % 3) as usize],
                users[(n % 5 % 3) as usize],
                hosts[(n % 2) as usize],
                Severity::ALL[(n % 4) as usize],
            )
        })
        .collect()
}

/// The expected listing: filter, then (timestamp, id) descending.
fn expected(events: &[Event], keep: impl Fn(&Event) -> bool) -> Vec<Uuid> {
    let mut v: Vec<&Event> = events.iter().filter(|e| keep(e)).collect();
    v.sort_by_key(|e| std::cmp::Reverse((e.timestamp, e.event_id)));
    v.into_iter().map(|e| e.event_id).collect()
}

/// Walks every page of `query` with page size `limit`.
async fn walk(store: &dyn Store, mut query: EventQuery, limit: u32) -> Vec<Uuid> {
    query.limit = limit;
    let mut out = Vec::new();
    for _ in 0..1000 {
        let page = store.events(&query).await.unwrap();
        assert!(page.items.len() <= limit as usize);
        out.extend(page.items.iter().map(|e| e.event.event_id));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => return out,
        }
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn inserts_are_idempotent_and_count_new_rows() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let s = e.store();
    let ev = sample();
    assert_eq!(s.insert_events(&ev[0..2]).await.unwrap(), 2);
    assert_eq!(
        s.insert_events(&[ev[0].clone(), ev[2].clone()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.insert_events(&[ev[3].clone(), ev[3].clone()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.insert_events(&[]).await.unwrap(), 0);
    assert_eq!(
        s.counts().await.unwrap(),
        StoreCounts {
            events: 4,
            alerts: 0
        }
    );
    let stored = s.event(ev[2].event_id).await.unwrap().unwrap();
    assert_eq!(stored.event, ev[2]);
    assert!(s.event(Uuid::from_u128(999_999)).await.unwrap().is_none());
    s.check().await.unwrap();
    // Concurrent duplicate inserts (in one group commit or not) store once.
    let (a, b) = tokio::join!(s.insert_events(&ev[4..10]), s.insert_events(&ev[4..10]));
    assert_eq!(a.unwrap() + b.unwrap(), 6);
    drop((s, e));
    let e = open_with(dir.path(), fast());
    assert_eq!(e.store().counts().await.unwrap().events, 10);
}

#[tokio::test]
async fn every_filter_and_cursor_pagination_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let s = e.store();
    let ev = sample();
    s.insert_events(&ev).await.unwrap();

    type Case = (EventQuery, Box<dyn Fn(&Event) -> bool>);
    let cases: Vec<Case> = vec![
        (EventQuery::default(), Box::new(|_| true)),
        (
            EventQuery {
                event_type: Some("user_login".into()),
                ..Default::default()
            },
            Box::new(|e| e.event_type == "user_login"),
        ),
        (
            EventQuery {
                user_id: Some("bob".into()),
                ..Default::default()
            },
            Box::new(|e| e.user_id == "bob"),
        ),
        (
            EventQuery {
                server_hostname: Some("prod-db-01".into()),
                ..Default::default()
            },
            Box::new(|e| e.server_hostname == "prod-db-01"),
        ),
        (
            EventQuery {
                severity: Some(Severity::Critical),
                ..Default::default()
            },
            Box::new(|e| e.severity == Severity::Critical),
        ),
        (
            EventQuery {
                from: Some(at(5)),
                to: Some(at(12)),
                ..Default::default()
            },
            Box::new(|e| e.timestamp >= at(5) && e.timestamp < at(12)),
        ),
        (
            EventQuery {
                user_id: Some("alice".into()),
                server_hostname: Some("prod-web-01".into()),
                from: Some(at(3)),
                ..Default::default()
            },
            Box::new(|e| {
                e.user_id == "alice" && e.server_hostname == "prod-web-01" && e.timestamp >= at(3)
            }),
        ),
        (
            // Text: substring of user id (case-insensitive).
            EventQuery {
                text: Some("ATTACKER".into()),
                ..Default::default()
            },
            Box::new(|e| e.user_id.contains("attacker")),
        ),
        (
            // Text: substring of details.
            EventQuery {
                text: Some("detail-1".into()),
                ..Default::default()
            },
            Box::new(|e| e.details["reason"].as_str().unwrap().contains("detail-1")),
        ),
        (
            // Text: substring of the resource; `_` is literal, not a wildcard.
            EventQuery {
                text: Some("file-4".into()),
                ..Default::default()
            },
            Box::new(|e| e.resource.as_deref().is_some_and(|r| r.contains("file-4"))),
        ),
        (
            EventQuery {
                text: Some("user_l".into()),
                ..Default::default()
            },
            Box::new(|e| e.event_type.contains("user_l")),
        ),
        (
            EventQuery {
                text: Some("user%l".into()),
                ..Default::default()
            },
            Box::new(|_| false),
        ),
    ];
    for (i, (query, keep)) in cases.into_iter().enumerate() {
        let want = expected(&ev, keep);
        for limit in [1, 4, 7, 100] {
            let got = walk(&*s, query.clone(), limit).await;
            assert_eq!(got, want, "case {i}, limit {limit}");
            assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len());
        }
    }
    // Page size: 0 means the default; huge is capped.
    let page = s.events(&EventQuery::default()).await.unwrap();
    assert_eq!(page.items.len(), 60);
    assert!(page.next_cursor.is_none());
    let page = s
        .events(&EventQuery {
            limit: MAX_PAGE * 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 60);
    // A page that ends exactly at the last item has no next cursor.
    let page = s
        .events(&EventQuery {
            limit: 60,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page.next_cursor.is_none());
}

#[tokio::test]
async fn alerts_are_idempotent_queryable_and_keep_legacy_columns() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let s = e.store();
    let alerts: Vec<_> = (0..12u128)
        .map(|n| {
            alert(
                n,
                (n / 2) as i64,
                if n % 3 == 0 {
                    "ANLY-SEC-001"
                } else {
                    "ANLY-SEC-002"
                },
                if n % 2 == 0 { "attacker_bob" } else { "eve" },
                if n == 0 { "N/A" } else { "10.0.0.1" },
            )
        })
        .collect();
    let new = s.insert_alerts(&alerts[0..3]).await.unwrap();
    assert_eq!(
        new,
        alerts[0..3].iter().map(|a| a.alert_id).collect::<Vec<_>>()
    );
    let new = s.insert_alerts(&alerts).await.unwrap();
    assert_eq!(
        new,
        alerts[3..].iter().map(|a| a.alert_id).collect::<Vec<_>>()
    );
    assert!(s.insert_alerts(&alerts[5..6]).await.unwrap().is_empty());
    assert_eq!(s.counts().await.unwrap().alerts, 12);

    let got = s.alert(alerts[4].alert_id).await.unwrap().unwrap();
    assert_eq!(got.alert, alerts[4]);

    let mut sorted = alerts.clone();
    sorted.sort_by_key(|a| std::cmp::Reverse((a.timestamp, a.alert_id)));
    let by_offset = s.alerts_by_offset(5, 0).await.unwrap();
    assert_eq!(
        by_offset
            .iter()
            .map(|a| a.alert.alert_id)
            .collect::<Vec<_>>(),
        sorted[0..5].iter().map(|a| a.alert_id).collect::<Vec<_>>()
    );
    let tail = s.alerts_by_offset(100, 10).await.unwrap();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[1].alert.alert_id, sorted[11].alert_id);
    assert!(s.alerts_by_offset(10, 50).await.unwrap().is_empty());

    // Filters + cursor pagination.
    let mut query = AlertQuery {
        rule_id: Some("ANLY-SEC-002".into()),
        limit: 3,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = s.alerts(&query).await.unwrap();
        seen.extend(page.items.iter().map(|a| a.alert.alert_id));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    let want: Vec<Uuid> = sorted
        .iter()
        .filter(|a| a.analysis_rule.rule_id == "ANLY-SEC-002")
        .map(|a| a.alert_id)
        .collect();
    assert_eq!(seen, want);
    let q = AlertQuery {
        user_id: Some("eve".into()),
        from: Some(at(2)),
        to: Some(at(4)),
        limit: 100,
        ..Default::default()
    };
    let got: Vec<Uuid> = s
        .alerts(&q)
        .await
        .unwrap()
        .items
        .iter()
        .map(|a| a.alert.alert_id)
        .collect();
    let want: Vec<Uuid> = sorted
        .iter()
        .filter(|a| a.triggered_by.actor_id == "eve" && a.timestamp >= at(2) && a.timestamp < at(4))
        .map(|a| a.alert_id)
        .collect();
    assert_eq!(got, want);
    let q = AlertQuery {
        correlation_id: Some(alerts[7].correlation_id),
        ..Default::default()
    };
    let got = s.alerts(&q).await.unwrap();
    assert_eq!(got.items.len(), 1);
    assert_eq!(got.items[0].alert.alert_id, alerts[7].alert_id);
    let q = AlertQuery {
        severity: Some(Severity::Info),
        server_hostname: Some("prod-web-01".into()),
        ..Default::default()
    };
    assert!(s.alerts(&q).await.unwrap().items.is_empty());

    // The legacy columns are there to be served.
    drop((s, e));
    let conn = rusqlite::Connection::open(dir.path().join(auditflow_embedded::STORE_FILE)).unwrap();
    let (ip, actor, rule, raw): (Option<String>, String, String, String) = conn
        .query_row(
            "SELECT client_ip, actor_id, rule_id, raw_event_data FROM alerts WHERE alert_id = ?1",
            [alerts[0].alert_id.hyphenated().to_string()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (ip, actor.as_str(), rule.as_str()),
        (None, "attacker_bob", "ANLY-SEC-001")
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&raw).unwrap(),
        alerts[0].raw_event_data
    );
    let ip: Option<String> = conn
        .query_row(
            "SELECT client_ip FROM alerts WHERE alert_id = ?1",
            [alerts[1].alert_id.hyphenated().to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ip.as_deref(), Some("10.0.0.1"));
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
}

#[tokio::test]
async fn delivery_records_upsert_per_channel() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let s = e.store();
    let id = Uuid::from_u128(42);
    let mut rec = DeliveryRecord {
        alert_id: id,
        channel: "slack".into(),
        status: DeliveryStatus::Failed,
        attempts: 3,
        last_error: Some("timeout".into()),
        recorded_at: at(1),
        next_attempt_at: None,
    };
    s.record_delivery(&rec).await.unwrap();
    rec.status = DeliveryStatus::Delivered;
    rec.attempts = 4;
    rec.last_error = None;
    rec.recorded_at = at(2);
    s.record_delivery(&rec).await.unwrap();
    let email = DeliveryRecord {
        channel: "email".into(),
        ..rec.clone()
    };
    s.record_delivery(&email).await.unwrap();
    let got = s.deliveries(id).await.unwrap();
    assert_eq!(got, vec![email, rec]);
    assert!(s.deliveries(Uuid::from_u128(43)).await.unwrap().is_empty());
}

#[tokio::test]
async fn retries_are_claimed_when_due_under_a_lease() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let alerts: Vec<Alert> = (0..4)
        .map(|n| alert(n, n as i64, "ANLY-SEC-001", "bob", "10.0.0.1"))
        .collect();
    auditflow_core::conformance::retry_claims(e.store().as_ref(), &alerts).await;
}

#[tokio::test]
async fn a_batch_of_delivery_records_lands_as_if_recorded_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let alerts: Vec<Alert> = (0..3)
        .map(|n| alert(n, n as i64, "ANLY-SEC-001", "bob", "10.0.0.1"))
        .collect();
    auditflow_core::conformance::batch_deliveries(e.store().as_ref(), &alerts).await;
}

#[tokio::test]
async fn retry_state_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let a = alert(1, 1, "ANLY-SEC-001", "bob", "10.0.0.1");
    let next =
        chrono::DateTime::from_timestamp_micros(chrono::Utc::now().timestamp_micros()).unwrap();
    let record = DeliveryRecord {
        alert_id: a.alert_id,
        channel: "hook".into(),
        status: DeliveryStatus::Retrying,
        attempts: 1,
        last_error: Some("timed out".into()),
        recorded_at: next,
        next_attempt_at: Some(next),
    };
    {
        let e = open_with(dir.path(), fast());
        e.store()
            .insert_alerts(std::slice::from_ref(&a))
            .await
            .unwrap();
        e.store().record_delivery(&record).await.unwrap();
    }
    let e = open_with(dir.path(), fast());
    assert_eq!(
        e.store().deliveries(a.alert_id).await.unwrap(),
        std::slice::from_ref(&record)
    );
    let claimed = e
        .store()
        .claim_retries("hook", next, next, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].record, record);
}
