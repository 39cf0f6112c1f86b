//! Delivery records in PostgreSQL: the upsert, the per-alert read, and the
//! retry outbox (claiming due `retrying` records under a lease).

use auditflow_core::store::{DeliveryRecord, DeliveryStatus, PendingDelivery, StoredAlert};
use auditflow_core::Alert;
use std::sync::LazyLock;

use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::PgError;
use crate::query::ALERT_COLUMNS;

/// Upserts a batch of delivery records (one row per `(alert_id, channel)`,
/// see `auditflow_core::store::last_delivery_per_key`: an `ON CONFLICT DO
/// UPDATE` statement cannot touch a row twice). A `delivered` record is
/// final: only another `delivered` overwrites it, so a late failure report
/// (a retry whose lease ran out while another replica delivered the alert)
/// cannot schedule it again.
pub(crate) const UPSERT: &str = "INSERT INTO deliveries
       (alert_id, channel, status, attempts, last_error, recorded_at, next_attempt_at)
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[],
                          $6::timestamptz[], $7::timestamptz[])
     ON CONFLICT (alert_id, channel) DO UPDATE SET
       status = excluded.status, attempts = excluded.attempts,
       last_error = excluded.last_error, recorded_at = excluded.recorded_at,
       next_attempt_at = excluded.next_attempt_at
     WHERE deliveries.status <> 'delivered' OR excluded.status = 'delivered'";

pub(crate) const OF_ALERT: &str =
    "SELECT channel, status, attempts, last_error, recorded_at, next_attempt_at
     FROM deliveries WHERE alert_id = $1 ORDER BY channel";

/// Selects the due rows with `FOR UPDATE SKIP LOCKED` (two replicas claiming
/// at once split the due rows instead of queueing on each other), moves
/// their `next_attempt_at` to the lease end, and returns them with the
/// value they had before, and their alerts (read as every alert read does,
/// legacy rows included).
pub(crate) static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH due AS (
           SELECT alert_id, next_attempt_at AS was_next FROM deliveries
           WHERE channel = $1 AND status = 'retrying' AND next_attempt_at <= $2
           ORDER BY next_attempt_at LIMIT $4
           FOR UPDATE SKIP LOCKED
         ), leased AS (
           UPDATE deliveries d SET next_attempt_at = $3
           FROM due WHERE d.alert_id = due.alert_id AND d.channel = $1
           RETURNING d.channel, d.status, d.attempts, d.last_error, d.recorded_at,
                     due.was_next, d.alert_id
         )
         SELECT l.channel, l.status, l.attempts, l.last_error, l.recorded_at, l.was_next,
                l.alert_id, a.body, a.received_at
         FROM leased l
         JOIN LATERAL (SELECT {ALERT_COLUMNS} FROM alerts WHERE alerts.alert_id = l.alert_id)
           AS a (body, received_at) ON true
         ORDER BY l.was_next"
    )
});

pub(crate) const BACKLOG: &str =
    "SELECT count(*) FROM deliveries WHERE channel = $1 AND status = 'retrying'";

/// Columns 0..=5: channel, status, attempts, last_error, recorded_at,
/// next_attempt_at.
pub(crate) fn record(alert_id: Uuid, row: &Row) -> Result<DeliveryRecord, PgError> {
    let err = || PgError::db("cannot read delivery");
    let status: &str = row.try_get(1).map_err(err())?;
    let attempts: i64 = row.try_get(2).map_err(err())?;
    Ok(DeliveryRecord {
        alert_id,
        channel: row.try_get(0).map_err(err())?,
        status: DeliveryStatus::parse(status),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_error: row.try_get(3).map_err(err())?,
        recorded_at: row.try_get(4).map_err(err())?,
        next_attempt_at: row.try_get(5).map_err(err())?,
    })
}

/// A row of [`CLAIM`].
pub(crate) fn pending(row: &Row) -> Result<PendingDelivery, PgError> {
    let err = || PgError::db("cannot read a retry");
    let alert_id: Uuid = row.try_get(6).map_err(err())?;
    let body: &str = row.try_get(7).map_err(err())?;
    let alert = Alert::from_slice(body.as_bytes())
        .map_err(|e| PgError::Data(format!("stored alert {alert_id} is not valid: {e}")))?;
    Ok(PendingDelivery {
        record: record(alert_id, row)?,
        alert: StoredAlert {
            alert,
            received_at: row.try_get(8).map_err(err())?,
        },
    })
}
