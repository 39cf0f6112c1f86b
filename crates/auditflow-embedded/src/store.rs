//! [`SqliteStore`]: events, alerts and deliveries in `store.sqlite`.
//!
//! Writes go through the group-commit writer (`INSERT OR IGNORE` on the
//! natural key, so redelivered events and alerts are stored once); reads go
//! through a pool of read-only connections on the blocking thread pool.
//! Totals are kept in a `counters` table updated in the same transactions,
//! so [`Store::counts`] is O(1).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use auditflow_core::alert::Alert;
use auditflow_core::event::Event;
use auditflow_core::store::{
    AlertQuery, Cursor, DeliveryRecord, EventQuery, Page, PendingDelivery, Store, StoreCounts,
    StoreError, StoredAlert, StoredEvent,
};
use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, Connection, Row, Transaction};
use uuid::Uuid;

use crate::error::{Context, DbError, EmbeddedError};
use crate::lock::DirLock;
use crate::options::EmbeddedOptions;
use crate::readpool::ReadPool;
use crate::writer::{Failpoints, Writer};

/// File name of the store's database inside the data directory.
pub const STORE_FILE: &str = "store.sqlite";

const FAILPOINTS: Failpoints = Failpoints {
    before_commit: "embedded::store::before_commit",
    after_commit: "embedded::store::after_commit",
};

/// The embedded store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
struct StoreInner {
    writer: Writer,
    reads: Arc<ReadPool>,
    _lock: Arc<DirLock>,
}

/// An event prepared for insertion (JSON encoded by the caller's task, not
/// by the writer thread).
struct EventRow {
    id: [u8; 16],
    ts: i64,
    event_type: String,
    user_id: String,
    server_hostname: String,
    severity: &'static str,
    resource: Option<String>,
    body: String,
}

impl EventRow {
    fn new(e: &Event) -> Result<EventRow, StoreError> {
        Ok(EventRow {
            id: *e.event_id.as_bytes(),
            ts: e.timestamp.timestamp_micros(),
            event_type: e.event_type.clone(),
            user_id: e.user_id.clone(),
            server_hostname: e.server_hostname.clone(),
            severity: e.severity.as_str(),
            resource: e.effective_resource().map(str::to_string),
            body: serde_json::to_string(e).map_err(|err| {
                StoreError::Refused(format!("event {} cannot be encoded: {err}", e.event_id))
            })?,
        })
    }
}

/// An alert prepared for insertion: the legacy columns plus the full JSON.
struct AlertRow {
    id: Uuid,
    values: Vec<rusqlite::types::Value>,
}

fn json_text<T: serde::Serialize>(id: Uuid, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Refused(format!("alert {id} cannot be encoded: {e}")))
}

impl AlertRow {
    fn new(a: &Alert) -> Result<AlertRow, StoreError> {
        use rusqlite::types::Value::{Integer, Null, Text};
        let id = a.alert_id;
        let values = vec![
            Text(id.hyphenated().to_string()),
            Text(a.correlation_id.hyphenated().to_string()),
            Integer(a.timestamp.timestamp_micros()),
            Text(a.alert_name.clone()),
            Text(a.alert_type.clone()),
            Text(a.severity.as_str().to_string()),
            Text(a.description.clone()),
            Text(a.source_service_name.clone()),
            Text(a.analysis_rule.rule_id.clone()),
            Text(a.analysis_rule.rule_name.clone()),
            Text(a.triggered_by.actor_type.clone()),
            Text(a.triggered_by.actor_id.clone()),
            a.client_ip().map_or(Null, |ip| Text(ip.to_string())),
            Text(a.impacted_resource.resource_type.clone()),
            Text(a.impacted_resource.resource_id.clone()),
            Text(a.impacted_resource.server_hostname.clone()),
            Text(a.action_observed.clone()),
            Text(json_text(id, &a.analysis_rule)?),
            Text(json_text(id, &a.triggered_by)?),
            Text(json_text(id, &a.impacted_resource)?),
            Text(json_text(id, &a.metadata)?),
            Text(json_text(id, &a.raw_event_data)?),
            Text(json_text(id, a)?),
        ];
        Ok(AlertRow { id, values })
    }
}

const INSERT_ALERT: &str = "INSERT OR IGNORE INTO alerts (
    alert_id, correlation_id, timestamp, alert_name, alert_type, severity, description,
    source_service_name, rule_id, rule_name, actor_type, actor_id, client_ip, resource_type,
    resource_id, server_hostname, action_observed, analysis_rule_details, triggered_by_details,
    impacted_resource_details, metadata, raw_event_data, body, received_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24)";

fn bump(tx: &Transaction<'_>, counter: &str, by: u64) -> Result<(), DbError> {
    if by > 0 {
        tx.prepare_cached("UPDATE counters SET value = value + ?2 WHERE name = ?1")
            .ctx("cannot prepare counter update")?
            .execute(params![counter, i64::try_from(by).unwrap_or(i64::MAX)])
            .ctx("cannot update counter")?;
    }
    Ok(())
}

fn micros_to_time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

fn stored_event(row: &Row<'_>) -> rusqlite::Result<Result<StoredEvent, DbError>> {
    let body: String = row.get(0)?;
    let stored_at: i64 = row.get(1)?;
    Ok(serde_json::from_str::<Event>(&body)
        .map(|event| StoredEvent {
            event,
            stored_at: micros_to_time(stored_at),
        })
        .map_err(|e| DbError::Other(format!("stored event is not valid JSON: {e}"))))
}

fn stored_alert(row: &Row<'_>) -> rusqlite::Result<Result<StoredAlert, DbError>> {
    let body: String = row.get(0)?;
    let received_at: i64 = row.get(1)?;
    Ok(Alert::from_slice(body.as_bytes())
        .map(|alert| StoredAlert {
            alert,
            received_at: micros_to_time(received_at),
        })
        .map_err(|e| DbError::Other(format!("stored alert is not valid: {e}"))))
}

fn collect<T>(
    conn: &Connection,
    sql: &str,
    params: Vec<rusqlite::types::Value>,
    map: fn(&Row<'_>) -> rusqlite::Result<Result<T, DbError>>,
) -> Result<Vec<T>, DbError> {
    let mut stmt = conn.prepare_cached(sql).ctx("cannot prepare query")?;
    let rows = stmt
        .query_map(params_from_iter(params), map)
        .ctx("query failed")?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.ctx("cannot read row")??);
    }
    Ok(out)
}

fn paginate<T>(mut items: Vec<T>, page: u32, key: impl Fn(&T) -> Cursor) -> Page<T> {
    let more = items.len() > page as usize;
    items.truncate(page as usize);
    let next_cursor = if more { items.last().map(key) } else { None };
    Page { items, next_cursor }
}

impl SqliteStore {
    /// Opens (creating or migrating) `store.sqlite` in `dir`.
    pub(crate) fn open(
        dir: &Path,
        opts: &EmbeddedOptions,
        lock: Arc<DirLock>,
    ) -> Result<SqliteStore, EmbeddedError> {
        let path = dir.join(STORE_FILE);
        let mut conn = crate::conn::open_writer(&path, opts)?;
        crate::schema::migrate(&mut conn, &path, crate::schema::STORE)?;
        let reads = ReadPool::open(&path, opts, opts.read_pool_size)?;
        let checkpointer =
            crate::checkpoint::Checkpointer::attach(&mut conn, &path, opts, "ckpt-store")?;
        let writer = Writer::spawn(
            "auditflow-store-writer",
            conn,
            checkpointer,
            opts.max_group_commit,
            FAILPOINTS,
        )
        .map_err(|source| EmbeddedError::Io {
            context: "cannot start writer thread for",
            path: path.clone(),
            source,
        })?;
        Ok(SqliteStore {
            inner: Arc::new(StoreInner {
                writer,
                reads,
                _lock: lock,
            }),
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_events(&self, events: &[Event]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let rows = events
            .iter()
            .map(EventRow::new)
            .collect::<Result<Vec<_>, _>>()?;
        let inserted = self
            .inner
            .writer
            .call(move |tx| {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO events
                         (event_id, ts, event_type, user_id, server_hostname, severity, resource, stored_at, body)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )
                    .ctx("cannot prepare event insert")?;
                let now = Utc::now().timestamp_micros();
                let mut new = 0u64;
                for r in &rows {
                    new += stmt
                        .execute(params![
                            &r.id[..],
                            r.ts,
                            r.event_type,
                            r.user_id,
                            r.server_hostname,
                            r.severity,
                            r.resource,
                            now,
                            r.body
                        ])
                        .ctx("cannot insert event")? as u64;
                }
                bump(tx, "events", new)?;
                Ok(new)
            })
            .await?;
        Ok(inserted)
    }

    async fn insert_alerts(&self, alerts: &[Alert]) -> Result<Vec<Uuid>, StoreError> {
        if alerts.is_empty() {
            return Ok(Vec::new());
        }
        let rows = alerts
            .iter()
            .map(AlertRow::new)
            .collect::<Result<Vec<_>, _>>()?;
        let new = self
            .inner
            .writer
            .call(move |tx| {
                let mut stmt = tx
                    .prepare_cached(INSERT_ALERT)
                    .ctx("cannot prepare alert insert")?;
                let now = rusqlite::types::Value::Integer(Utc::now().timestamp_micros());
                let mut new = Vec::new();
                for r in &rows {
                    let changed = stmt
                        .execute(params_from_iter(r.values.iter().chain([&now])))
                        .ctx("cannot insert alert")?;
                    if changed > 0 {
                        new.push(r.id);
                    }
                }
                bump(tx, "alerts", new.len() as u64)?;
                Ok(new)
            })
            .await?;
        Ok(new)
    }

    async fn record_delivery(&self, record: &DeliveryRecord) -> Result<(), StoreError> {
        let r = record.clone();
        self.inner
            .writer
            .call(move |tx| crate::deliveries::upsert(tx, &r))
            .await?;
        Ok(())
    }

    async fn record_deliveries(&self, records: &[DeliveryRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let records = records.to_vec();
        // One transaction, the upserts in order: the same effect as
        // `record_delivery` on each, with one commit.
        self.inner
            .writer
            .call(move |tx| {
                records
                    .iter()
                    .try_for_each(|r| crate::deliveries::upsert(tx, r))
            })
            .await?;
        Ok(())
    }

    async fn claim_retries(
        &self,
        channel: &str,
        due_before: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let channel = channel.to_string();
        let claimed = self
            .inner
            .writer
            .call(move |tx| crate::deliveries::claim(tx, &channel, due_before, lease_until, limit))
            .await?;
        Ok(claimed)
    }

    async fn retry_backlog(&self, channel: &str) -> Result<u64, StoreError> {
        let channel = channel.to_string();
        let count = self
            .inner
            .reads
            .run(move |conn| crate::deliveries::backlog(conn, &channel))
            .await?;
        Ok(count)
    }

    async fn deliveries(&self, alert_id: Uuid) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = self
            .inner
            .reads
            .run(move |conn| crate::deliveries::of_alert(conn, alert_id))
            .await?;
        Ok(rows)
    }

    async fn event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let mut found = self
            .inner
            .reads
            .run(move |conn| {
                collect(
                    conn,
                    "SELECT body, stored_at FROM events WHERE event_id = ?1",
                    vec![rusqlite::types::Value::Blob(event_id.as_bytes().to_vec())],
                    stored_event,
                )
            })
            .await?;
        Ok(found.pop())
    }

    async fn events(&self, query: &EventQuery) -> Result<Page<StoredEvent>, StoreError> {
        let (sql, params, page) = crate::query::events(query);
        let items = self
            .inner
            .reads
            .run(move |conn| collect(conn, &sql, params, stored_event))
            .await?;
        Ok(paginate(items, page, |e| {
            Cursor::after(&e.event.timestamp, e.event.event_id)
        }))
    }

    async fn alert(&self, alert_id: Uuid) -> Result<Option<StoredAlert>, StoreError> {
        let mut found = self
            .inner
            .reads
            .run(move |conn| {
                collect(
                    conn,
                    "SELECT body, received_at FROM alerts WHERE alert_id = ?1",
                    vec![rusqlite::types::Value::Text(
                        alert_id.hyphenated().to_string(),
                    )],
                    stored_alert,
                )
            })
            .await?;
        Ok(found.pop())
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Page<StoredAlert>, StoreError> {
        let (sql, params, page) = crate::query::alerts(query);
        let items = self
            .inner
            .reads
            .run(move |conn| collect(conn, &sql, params, stored_alert))
            .await?;
        Ok(paginate(items, page, |a| {
            Cursor::after(&a.alert.timestamp, a.alert.alert_id)
        }))
    }

    async fn alerts_by_offset(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<StoredAlert>, StoreError> {
        let limit = i64::from(crate::query::page_size(limit));
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let items = self
            .inner
            .reads
            .run(move |conn| {
                collect(
                    conn,
                    "SELECT body, received_at FROM alerts
                     ORDER BY timestamp DESC, alert_id DESC LIMIT ?1 OFFSET ?2",
                    vec![limit.into(), offset.into()],
                    stored_alert,
                )
            })
            .await?;
        Ok(items)
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let counts = self
            .inner
            .reads
            .run(|conn| {
                let mut counts = StoreCounts::default();
                let mut stmt = conn
                    .prepare_cached("SELECT name, value FROM counters")
                    .ctx("cannot prepare counts")?;
                let mut rows = stmt.query([]).ctx("cannot read counts")?;
                while let Some(row) = rows.next().ctx("cannot read counts")? {
                    let name: String = row.get(0).ctx("bad counter")?;
                    let value: i64 = row.get(1).ctx("bad counter")?;
                    let value = u64::try_from(value).unwrap_or(0);
                    match name.as_str() {
                        "events" => counts.events = value,
                        "alerts" => counts.alerts = value,
                        _ => {}
                    }
                }
                Ok(counts)
            })
            .await?;
        Ok(counts)
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.inner.writer.barrier().await?;
        self.inner
            .reads
            .run(|conn| {
                conn.query_row("SELECT 1", [], |_| Ok(()))
                    .ctx("read check failed")
            })
            .await?;
        Ok(())
    }
}
