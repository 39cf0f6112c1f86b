//! In-process fault injection (run with `--features failpoints`).
#![cfg(feature = "failpoints")]

mod common;

use std::time::Duration;

use auditflow_core::broker::{Broker, BrokerError};
use auditflow_core::event::Severity;
use auditflow_core::store::{Store, StoreError};
use auditflow_core::window::{
    InMemoryWindowState, Observation, WindowError, WindowSpec, WindowState,
};
use common::*;

const Q: &str = "audit_events";

fn obs(n: u128, secs: i64) -> Observation {
    Observation {
        rule_id: "R".into(),
        group_key: "g".into(),
        event_id: uuid::Uuid::from_u128(n + 1),
        event_time: at(secs),
        spec: WindowSpec {
            window: Duration::from_secs(60),
            threshold: 2,
            cooldown: Duration::ZERO,
        },
    }
}

/// One test: failpoints are process-global.
#[tokio::test]
async fn failures_around_commits() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let (b, s, w) = (e.broker(), e.store(), e.windows());

    // Broker: a failed commit is reported and nothing is queued.
    fail::cfg("embedded::broker::before_commit", "1*return").unwrap();
    let err = b.publish(Q, &[msg("lost")]).await.unwrap_err();
    assert!(matches!(err, BrokerError::Unavailable(_)), "{err}");
    assert_eq!(b.stats(Q).await.unwrap().ready, 0);
    // A commit whose confirm is lost: the caller sees an error, the message is queued.
    fail::cfg("embedded::broker::after_commit", "1*return").unwrap();
    assert!(b.publish(Q, &[msg("kept")]).await.is_err());
    let mut sub = b.subscribe(Q, 10).await.unwrap();
    assert_eq!(ids(&next(&mut sub, 10).await), ["kept"]);

    // Store: lost confirm, then the retry is idempotent.
    let ev = vec![event(1, 0, "user_login", "bob", "web", Severity::Info)];
    fail::cfg("embedded::store::after_commit", "1*return").unwrap();
    assert!(matches!(
        s.insert_events(&ev).await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(s.insert_events(&ev).await.unwrap(), 0, "already stored");
    fail::cfg("embedded::store::before_commit", "1*return").unwrap();
    let ev2 = vec![event(2, 0, "user_login", "bob", "web", Severity::Info)];
    assert!(s.insert_events(&ev2).await.is_err());
    assert_eq!(
        s.insert_events(&ev2).await.unwrap(),
        1,
        "rolled back, so new on retry"
    );

    // Window: a failed commit rolls the cache back...
    let reference = InMemoryWindowState::default();
    let want = reference.observe(&[obs(1, 0), obs(2, 1)]).await.unwrap();
    w.observe(&[obs(1, 0)]).await.unwrap();
    fail::cfg("embedded::window::before_commit", "1*return").unwrap();
    let err = w.observe(&[obs(9, 1)]).await.unwrap_err();
    assert!(matches!(err, WindowError::Unavailable(_)));
    // ...so event 9 was never counted: event 2 sees only event 1.
    assert_eq!(w.observe(&[obs(2, 1)]).await.unwrap()[0], want[1]);
    // A decision committed but not confirmed is recorded: redelivery gets it back.
    fail::cfg("embedded::window::after_commit", "1*return").unwrap();
    assert!(w.observe(&[obs(3, 2)]).await.is_err());
    let again = w.observe(&[obs(3, 2)]).await.unwrap();
    assert_eq!(again[0].count, 3);
    scenario.teardown();
}
