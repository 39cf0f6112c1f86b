//! Delivery records in `store.sqlite`: the upsert, the per-alert read, and
//! the retry outbox (claiming due `retrying` records under a lease).
//!
//! Times are unix microseconds. The partial index `deliveries_retry_due`
//! (migration 2) holds only `retrying` rows, so the outbox query costs the
//! size of the backlog, not of the delivery history.

use auditflow_core::store::{DeliveryRecord, DeliveryStatus, PendingDelivery, StoredAlert};
use auditflow_core::Alert;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Row, Transaction};
use uuid::Uuid;

use crate::error::{Context, DbError};

fn micros(t: &DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// Inserts or overwrites `(alert_id, channel)`, except that a `delivered`
/// record is never overwritten by anything but `delivered`: once a channel
/// took an alert, a late failure report (a retry whose lease ran out while a
/// replica delivered it) must not schedule it again.
pub(crate) fn upsert(tx: &Transaction<'_>, r: &DeliveryRecord) -> Result<(), DbError> {
    tx.prepare_cached(
        "INSERT INTO deliveries
           (alert_id, channel, status, attempts, last_error, recorded_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (alert_id, channel) DO UPDATE SET
           status = excluded.status, attempts = excluded.attempts,
           last_error = excluded.last_error, recorded_at = excluded.recorded_at,
           next_attempt_at = excluded.next_attempt_at
         WHERE deliveries.status <> 'delivered' OR excluded.status = 'delivered'",
    )
    .ctx("cannot prepare delivery upsert")?
    .execute(params![
        r.alert_id.hyphenated().to_string(),
        r.channel,
        r.status.as_str(),
        r.attempts,
        r.last_error,
        micros(&r.recorded_at),
        r.next_attempt_at.as_ref().map(micros),
    ])
    .ctx("cannot record delivery")?;
    Ok(())
}

/// Columns 0..=5 of a delivery row: channel, status, attempts, last_error,
/// recorded_at, next_attempt_at.
fn record(alert_id: Uuid, row: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let status: String = row.get(1)?;
    let next: Option<i64> = row.get(5)?;
    Ok(DeliveryRecord {
        alert_id,
        channel: row.get(0)?,
        status: DeliveryStatus::parse(&status),
        attempts: row.get(2)?,
        last_error: row.get(3)?,
        recorded_at: time(row.get(4)?),
        next_attempt_at: next.map(time),
    })
}

/// Every channel's record of one alert, by channel name.
pub(crate) fn of_alert(conn: &Connection, alert_id: Uuid) -> Result<Vec<DeliveryRecord>, DbError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT channel, status, attempts, last_error, recorded_at, next_attempt_at
             FROM deliveries WHERE alert_id = ?1 ORDER BY channel",
        )
        .ctx("cannot prepare delivery query")?;
    let rows = stmt
        .query_map([alert_id.hyphenated().to_string()], |row| {
            record(alert_id, row)
        })
        .ctx("delivery query failed")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("cannot read delivery")?;
    Ok(rows)
}

/// Claims due `retrying` records of `channel` (see `Store::claim_retries`).
/// Runs in the writer's transaction, so select and lease are atomic.
pub(crate) fn claim(
    tx: &Transaction<'_>,
    channel: &str,
    due_before: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<PendingDelivery>, DbError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut select = tx
        .prepare_cached(
            "SELECT d.channel, d.status, d.attempts, d.last_error, d.recorded_at,
                    d.next_attempt_at, d.alert_id, a.body, a.received_at
             FROM deliveries d JOIN alerts a ON a.alert_id = d.alert_id
             WHERE d.channel = ?1 AND d.status = 'retrying' AND d.next_attempt_at <= ?2
             ORDER BY d.next_attempt_at LIMIT ?3",
        )
        .ctx("cannot prepare retry claim")?;
    let rows = select
        .query_map(params![channel, micros(&due_before), limit], |row| {
            let id: String = row.get(6)?;
            let body: String = row.get(7)?;
            let received_at: i64 = row.get(8)?;
            Ok((id, body, received_at, row_record(row)?))
        })
        .ctx("retry claim failed")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("cannot read a retry")?;
    let mut lease = tx
        .prepare_cached(
            "UPDATE deliveries SET next_attempt_at = ?3 WHERE alert_id = ?1 AND channel = ?2",
        )
        .ctx("cannot prepare retry lease")?;
    let mut claimed = Vec::with_capacity(rows.len());
    for (id, body, received_at, record) in rows {
        lease
            .execute(params![id, channel, micros(&lease_until)])
            .ctx("cannot lease a retry")?;
        let alert = Alert::from_slice(body.as_bytes())
            .map_err(|e| DbError::Other(format!("stored alert {id} is not valid: {e}")))?;
        claimed.push(PendingDelivery {
            record: DeliveryRecord {
                alert_id: alert.alert_id,
                ..record
            },
            alert: StoredAlert {
                alert,
                received_at: time(received_at),
            },
        });
    }
    Ok(claimed)
}

/// A record whose alert id is filled in by the caller.
fn row_record(row: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    record(Uuid::nil(), row)
}

/// How many `retrying` records `channel` has.
pub(crate) fn backlog(conn: &Connection, channel: &str) -> Result<u64, DbError> {
    let count: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM deliveries WHERE channel = ?1 AND status = 'retrying'",
        )
        .ctx("cannot prepare retry count")?
        .query_row([channel], |row| row.get(0))
        .ctx("cannot count retries")?;
    Ok(u64::try_from(count).unwrap_or(0))
}
