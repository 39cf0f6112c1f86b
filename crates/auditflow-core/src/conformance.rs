//! Checks every [`Store`] implementation must pass, shared by the backends'
//! own test suites (feature `test-support`), so that the embedded and the
//! PostgreSQL store are held to one definition instead of two copies.
//! They panic on a violation, like any test assertion.

use chrono::{DateTime, Duration, Utc};

use crate::alert::Alert;
use crate::store::{DeliveryRecord, DeliveryStatus, PendingDelivery, Store};

/// The retry outbox: only `retrying` records of the channel, only when
/// due, oldest due first, leased so a second claim skips them until the
/// lease ends; and a `delivered` record is final.
pub async fn retry_claims(s: &dyn Store, alerts: &[Alert]) {
    s.insert_alerts(alerts).await.unwrap();
    let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let rec = |i: usize, channel: &str, status, next: Option<DateTime<Utc>>| DeliveryRecord {
        alert_id: alerts[i].alert_id,
        channel: channel.into(),
        status,
        attempts: 2,
        last_error: Some("webhook answered 503".into()),
        recorded_at: now - Duration::seconds(30),
        next_attempt_at: next,
    };
    let due = rec(
        0,
        "hook",
        DeliveryStatus::Retrying,
        Some(now - Duration::seconds(10)),
    );
    let later = rec(
        1,
        "hook",
        DeliveryStatus::Retrying,
        Some(now + Duration::hours(1)),
    );
    for r in [
        due.clone(),
        later.clone(),
        rec(2, "hook", DeliveryStatus::Delivered, None),
        rec(3, "hook", DeliveryStatus::Failed, None),
        rec(
            0,
            "mail",
            DeliveryStatus::Retrying,
            Some(now - Duration::seconds(5)),
        ),
    ] {
        s.record_delivery(&r).await.unwrap();
    }
    assert_eq!(s.retry_backlog("hook").await.unwrap(), 2);
    assert_eq!(s.retry_backlog("nobody").await.unwrap(), 0);

    let lease = now + Duration::seconds(60);
    let claimed = s.claim_retries("hook", now, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    let PendingDelivery { alert, record } = &claimed[0];
    assert_eq!(alert.alert, alerts[0]);
    assert_eq!(record, &due, "the record as it was before the claim");
    // Leased: nothing due for another claimer until the lease ends.
    assert!(s
        .claim_retries("hook", now, lease, 10)
        .await
        .unwrap()
        .is_empty());
    let after = lease + Duration::seconds(1);
    let again = s
        .claim_retries("hook", after, after + Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].record.next_attempt_at, Some(lease));

    // Oldest due first, at most `limit`.
    let far = now + Duration::hours(2);
    let first = s.claim_retries("hook", far, far, 1).await.unwrap();
    assert_eq!(first[0].alert.alert.alert_id, alerts[0].alert_id);
    let second = s.claim_retries("hook", far, far, 1).await.unwrap();
    assert_eq!(second[0].record, later);

    // Delivered is final: a late `retrying` report does not reopen it.
    s.record_delivery(&rec(2, "hook", DeliveryStatus::Retrying, Some(now)))
        .await
        .unwrap();
    let records = s.deliveries(alerts[2].alert_id).await.unwrap();
    assert_eq!(records[0].status, DeliveryStatus::Delivered);
    // A delivery resolves the retry.
    s.record_delivery(&rec(0, "hook", DeliveryStatus::Delivered, None))
        .await
        .unwrap();
    assert_eq!(s.retry_backlog("hook").await.unwrap(), 1);
    let rest = s
        .claim_retries("hook", far + Duration::hours(1), far, 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].alert.alert.alert_id, alerts[1].alert_id);
    // Channels are separate.
    let mail = s.claim_retries("mail", now, lease, 10).await.unwrap();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].record.channel, "mail");
}

/// `record_deliveries` has the effect of `record_delivery` on each record
/// in turn: the last record of an `(alert_id, channel)` wins, except over a
/// `delivered` one, whether stored before or earlier in the same batch; an
/// empty batch writes nothing. Needs three alerts.
pub async fn batch_deliveries(s: &dyn Store, alerts: &[Alert]) {
    use DeliveryStatus::*;
    s.insert_alerts(&alerts[..3]).await.unwrap();
    let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let rec = |i: usize, channel: &str, status, attempts| DeliveryRecord {
        alert_id: alerts[i].alert_id,
        channel: channel.into(),
        status,
        attempts,
        last_error: (status != Delivered).then(|| format!("attempt {attempts} failed")),
        recorded_at: now - Duration::seconds(i64::from(10 - attempts)),
        next_attempt_at: (status == Retrying).then(|| now + Duration::seconds(30)),
    };
    s.record_delivery(&rec(0, "log", Delivered, 1))
        .await
        .unwrap();
    s.record_deliveries(&[]).await.unwrap();
    s.record_deliveries(&[
        rec(0, "log", Retrying, 2),
        rec(1, "log", Retrying, 1),
        rec(1, "log", Failed, 2),
        rec(2, "file", Delivered, 1),
        rec(2, "file", Retrying, 2),
        rec(0, "file", Failed, 1),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.deliveries(alerts[0].alert_id).await.unwrap(),
        vec![rec(0, "file", Failed, 1), rec(0, "log", Delivered, 1)],
        "a stored delivered record stays"
    );
    assert_eq!(
        s.deliveries(alerts[1].alert_id).await.unwrap(),
        vec![rec(1, "log", Failed, 2)],
        "the last record of a key wins"
    );
    assert_eq!(
        s.deliveries(alerts[2].alert_id).await.unwrap(),
        vec![rec(2, "file", Delivered, 1)],
        "a delivered record earlier in the batch stays"
    );
    assert_eq!(s.retry_backlog("log").await.unwrap(), 0);
    assert_eq!(s.retry_backlog("file").await.unwrap(), 0);
}
