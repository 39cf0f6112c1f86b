//! The store interface: events, alerts and notification deliveries.
//!
//! Every write is idempotent on the natural key (`event_id`, `alert_id`,
//! `(alert_id, channel)`), which is what turns at-least-once delivery into
//! exactly-once effects.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::alert::Alert;
use crate::event::{Event, Severity};

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// The event.
    #[serde(flatten)]
    pub event: Event,
    /// When the store first committed it.
    pub stored_at: DateTime<Utc>,
}

/// An alert as stored by notify.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAlert {
    /// The alert.
    #[serde(flatten)]
    pub alert: Alert,
    /// When the store first committed it.
    pub received_at: DateTime<Utc>,
}

/// Outcome of delivering one alert to one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// The channel accepted the alert.
    Delivered,
    /// Failed for good: the channel refused the alert (webhook 4xx, SMTP
    /// 5xx), or it stayed undeliverable for longer than notify retries.
    Failed,
    /// Failed transiently (timeout, 5xx, breaker open, ...); notify tries
    /// again at `next_attempt_at`.
    Retrying,
}

impl DeliveryStatus {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Retrying => "retrying",
        }
    }

    /// Parses [`DeliveryStatus::as_str`]; an unknown name reads as `Failed`
    /// (so a record written by a newer build is never taken for delivered).
    pub fn parse(name: &str) -> DeliveryStatus {
        match name {
            "delivered" => DeliveryStatus::Delivered,
            "retrying" => DeliveryStatus::Retrying,
            _ => DeliveryStatus::Failed,
        }
    }
}

/// One channel's record for one alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRecord {
    /// The alert.
    pub alert_id: Uuid,
    /// The channel's configured name.
    pub channel: String,
    /// Outcome.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Last error, when any attempt failed.
    pub last_error: Option<String>,
    /// When the outcome was recorded.
    pub recorded_at: DateTime<Utc>,
    /// When notify tries again (only while `Retrying`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// What `records`, applied one after another with `record_delivery`'s rule
/// (a `Delivered` record is final), leave for each `(alert_id, channel)`:
/// one record per key, ordered by key. For stores that write a batch in one
/// statement, which cannot touch a row twice, and in one lock order, so two
/// notify replicas writing overlapping batches do not deadlock.
pub fn last_delivery_per_key(records: &[DeliveryRecord]) -> Vec<DeliveryRecord> {
    let mut last: std::collections::BTreeMap<(Uuid, &str), &DeliveryRecord> =
        std::collections::BTreeMap::new();
    for record in records {
        let key = (record.alert_id, record.channel.as_str());
        match last.get(&key) {
            Some(kept)
                if kept.status == DeliveryStatus::Delivered
                    && record.status != DeliveryStatus::Delivered => {}
            _ => {
                last.insert(key, record);
            }
        }
    }
    last.into_values().cloned().collect()
}

/// A delivery notify is to retry: the alert and its record as it was when
/// claimed (before the lease moved `next_attempt_at`), so the caller can
/// derive the next backoff (`next_attempt_at - recorded_at`) and the give-up
/// age (`received_at`) from the store alone, across restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDelivery {
    /// The alert, as stored.
    pub alert: StoredAlert,
    /// Its `Retrying` record for the channel.
    pub record: DeliveryRecord,
}

/// Filters for [`Store::events`]. All present filters must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct EventQuery {
    /// Event time at or after.
    pub from: Option<DateTime<Utc>>,
    /// Event time before.
    pub to: Option<DateTime<Utc>>,
    /// Exact event type.
    pub event_type: Option<String>,
    /// Exact user id.
    pub user_id: Option<String>,
    /// Exact host name.
    pub server_hostname: Option<String>,
    /// Exact severity.
    pub severity: Option<Severity>,
    /// Substring of user id, host, event type, resource or details text.
    pub text: Option<String>,
    /// Continue after this cursor (from a previous [`Page`]).
    pub cursor: Option<Cursor>,
    /// Page size (the store caps it).
    pub limit: u32,
}

/// Filters for [`Store::alerts`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AlertQuery {
    /// Alert time at or after.
    pub from: Option<DateTime<Utc>>,
    /// Alert time before.
    pub to: Option<DateTime<Utc>>,
    /// Rule id.
    pub rule_id: Option<String>,
    /// Alert severity.
    pub severity: Option<Severity>,
    /// Actor id (the triggering user).
    pub user_id: Option<String>,
    /// Host name.
    pub server_hostname: Option<String>,
    /// The triggering event (correlation id).
    pub correlation_id: Option<Uuid>,
    /// Continue after this cursor.
    pub cursor: Option<Cursor>,
    /// Page size (the store caps it).
    pub limit: u32,
}

/// Largest page any store returns.
pub const MAX_PAGE: u32 = 1000;

/// Position in a listing ordered by `(timestamp, id)` descending.
///
/// Rendered as `<unix micros>_<uuid>`: opaque to clients, stable across
/// stores, and stable under concurrent inserts (unlike offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cursor {
    /// Timestamp of the last item returned, in microseconds since the epoch.
    pub micros: i64,
    /// Id of the last item returned.
    pub id: Uuid,
}

impl Cursor {
    /// The cursor that continues after an item with this time and id.
    pub fn after(ts: &DateTime<Utc>, id: Uuid) -> Cursor {
        Cursor {
            micros: ts.timestamp_micros(),
            id,
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.micros, self.id.simple())
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (micros, id) = s.split_once('_').ok_or("malformed cursor")?;
        Ok(Cursor {
            micros: micros.parse().map_err(|_| "malformed cursor")?,
            id: Uuid::try_parse(id).map_err(|_| "malformed cursor")?,
        })
    }
}

impl TryFrom<String> for Cursor {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Cursor> for String {
    fn from(c: Cursor) -> String {
        c.to_string()
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

/// Totals for dashboards and health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreCounts {
    /// Stored events.
    pub events: u64,
    /// Stored alerts.
    pub alerts: u64,
}

/// Store failures, classified so callers know whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or failed transiently (busy, connection
    /// lost, serialization failure); retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refuses the write for good (disk full, a schema or
    /// permission problem): retrying, or the next request, fails the same.
    #[error("store rejected the request: {0}")]
    Rejected(String),
    /// The store refuses a value in this write for good (it cannot hold it,
    /// or a constraint forbids it): the item is the problem, not the store,
    /// so the other items of a batch can still be written one at a time.
    #[error("store refused the data: {0}")]
    Refused(String),
}

impl StoreError {
    /// True for failures worth retrying.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Durable storage of events, alerts and deliveries.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts events, ignoring ids already stored. Returns how many were new.
    async fn insert_events(&self, events: &[Event]) -> Result<u64, StoreError>;

    /// Inserts alerts, ignoring ids already stored. Returns the ids that were new.
    async fn insert_alerts(&self, alerts: &[Alert]) -> Result<Vec<Uuid>, StoreError>;

    /// Records (or overwrites) the delivery outcome of `(alert_id, channel)`.
    /// A `Delivered` record is final: a later non-delivered outcome (a
    /// replica whose retry lease ran out recording its failure) leaves it.
    async fn record_delivery(&self, record: &DeliveryRecord) -> Result<(), StoreError>;

    /// Records several outcomes with the effect of `record_delivery` on
    /// each in turn (so a `Delivered` record also stays final against a
    /// later record for the same key in `records`). This default does just
    /// that, one write after another; stores that can write them all in
    /// one transaction override it, which matters to notify, whose every
    /// batch records an outcome per alert and channel.
    async fn record_deliveries(&self, records: &[DeliveryRecord]) -> Result<(), StoreError> {
        for record in records {
            self.record_delivery(record).await?;
        }
        Ok(())
    }

    /// Claims up to `limit` of `channel`'s `Retrying` deliveries due at
    /// `due_before` (oldest due first): atomically moves their
    /// `next_attempt_at` to `lease_until`, so another notify replica does
    /// not claim them too until the lease runs out (the claimer crashed, or
    /// its delivery took longer than the lease). Returns them as they were
    /// before the claim.
    async fn claim_retries(
        &self,
        channel: &str,
        due_before: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StoreError>;

    /// How many of `channel`'s deliveries are `Retrying` (due or not).
    async fn retry_backlog(&self, channel: &str) -> Result<u64, StoreError>;

    /// Delivery records of one alert.
    async fn deliveries(&self, alert_id: Uuid) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// One event by id.
    async fn event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError>;

    /// Events matching `query`, newest event time first.
    async fn events(&self, query: &EventQuery) -> Result<Page<StoredEvent>, StoreError>;

    /// One alert by id.
    async fn alert(&self, alert_id: Uuid) -> Result<Option<StoredAlert>, StoreError>;

    /// Alerts matching `query`, newest alert time first.
    async fn alerts(&self, query: &AlertQuery) -> Result<Page<StoredAlert>, StoreError>;

    /// Alerts by offset, newest first (the legacy `/alerts?limit=&offset=` API).
    async fn alerts_by_offset(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<StoredAlert>, StoreError>;

    /// Totals.
    async fn counts(&self) -> Result<StoreCounts, StoreError>;

    /// A cheap round trip proving the store works (for readiness).
    async fn check(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(alert: u128, channel: &str, status: DeliveryStatus, attempts: u32) -> DeliveryRecord {
        DeliveryRecord {
            alert_id: Uuid::from_u128(alert),
            channel: channel.into(),
            status,
            attempts,
            last_error: None,
            recorded_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            next_attempt_at: None,
        }
    }

    #[test]
    fn last_delivery_per_key_keeps_the_last_record_of_each_key_in_key_order() {
        use DeliveryStatus::*;
        let records = [
            record(2, "log", Retrying, 1),
            record(1, "log", Failed, 1),
            record(2, "log", Retrying, 2),
            record(1, "file", Delivered, 1),
        ];
        let kept = last_delivery_per_key(&records);
        assert_eq!(
            kept,
            vec![
                record(1, "file", Delivered, 1),
                record(1, "log", Failed, 1),
                record(2, "log", Retrying, 2),
            ]
        );
    }

    #[test]
    fn last_delivery_per_key_keeps_delivered_final_as_record_delivery_does() {
        use DeliveryStatus::*;
        let records = [
            record(1, "log", Delivered, 1),
            record(1, "log", Retrying, 2),
            record(3, "log", Retrying, 1),
            record(3, "log", Delivered, 2),
        ];
        let kept = last_delivery_per_key(&records);
        assert_eq!(
            kept,
            vec![
                record(1, "log", Delivered, 1),
                record(3, "log", Delivered, 2)
            ]
        );
    }
}
