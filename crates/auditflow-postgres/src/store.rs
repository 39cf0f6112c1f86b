//! [`PgStore`]: events, alerts and deliveries in PostgreSQL.
//!
//! Each write is ONE statement: rows go in as arrays
//! (`INSERT ... SELECT * FROM unnest($1::uuid[], ...) ON CONFLICT DO
//! NOTHING`), sorted by id so that concurrent batches with overlapping ids
//! lock in the same order instead of deadlocking, and the same statement
//! adds the number of new rows to a counter shard (a data-modifying CTE), so
//! [`Store::counts`] is exact and reads 32 rows whatever the table sizes.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use auditflow_core::alert::Alert;
use auditflow_core::event::Event;
use auditflow_core::store::{
    last_delivery_per_key, AlertQuery, Cursor, DeliveryRecord, EventQuery, Page, PendingDelivery,
    Store, StoreCounts, StoreError, StoredAlert, StoredEvent,
};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use crate::config::PgConfig;
use crate::deliveries;
use crate::error::PgError;
use crate::pool::PgPool;
use crate::query::{self, Listing, ALERT_COLUMNS, EVENT_COLUMNS};

/// Counter shards per total (see the `counters` table).
const COUNTER_SHARDS: usize = 16;

/// The PostgreSQL store. Cheap to clone.
///
/// - Events: indexed columns for the read API's filters (`ts`, `event_type`,
///   `user_id`, `server_hostname`, `severity`, each leading an index that
///   ends in `(ts, event_id)`), the whole event as `event_json` (JSON, the
///   text as AuditFlow serialized it: cheaper to write than JSONB, which
///   PostgreSQL would parse into its binary form; see migration 0003), and
///   `stored_at`.
///   Text search is `ILIKE '%text%'` (escaped) over `user_id`,
///   `server_hostname`, `event_type`, the effective resource and the JSON
///   text of `details`, unindexed: it filters while scanning newest first.
/// - Alerts: the legacy notification service's columns, plus `alert_json`
///   (the alert as received, unknown fields included). `client_ip` is an
///   INET: `N/A`, and anything that is not an IP address, is stored as NULL
///   (the value as sent stays in `triggered_by_details` and `alert_json`).
///   Rows written by the legacy service (`alert_json` NULL) are read back by
///   rebuilding the alert from the legacy columns.
/// - Counts: exact, from 16 counter shards per total updated by the
///   inserting statements. Measured at 1 000 000 events (2-core machine,
///   PostgreSQL 15): `counts()` 0.5-1.5 ms against 70-120 ms for
///   `SELECT count(*)` (index-only scan after VACUUM, and growing linearly).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    next_shard: Arc<AtomicUsize>,
}

const INSERT_EVENTS: &str = "WITH new AS (
    INSERT INTO events (event_id, ts, event_type, user_id, server_hostname, severity,
                        source_service, action_result, resource, event_json, stored_at)
    SELECT i, t, et, u, h, s, ss, ar, r, j::json, now()
    FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::text[])
         AS x(i, t, et, u, h, s, ss, ar, r, j)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING 1
), bump AS (
    UPDATE counters SET value = value + (SELECT count(*) FROM new)
    WHERE name = 'events' AND shard = $11 AND EXISTS (SELECT 1 FROM new)
)
SELECT count(*) FROM new";

/// Runs the batched event insert for one chunk; the number of new events.
async fn insert_event_chunk(
    client: &impl GenericClient,
    stmt: &Statement,
    c: &EventColumns,
    shard: i16,
) -> Result<u64, PgError> {
    let row = client
        .query_one(
            stmt,
            &[
                &c.ids,
                &c.ts,
                &c.event_type,
                &c.user_id,
                &c.host,
                &c.severity,
                &c.source_service,
                &c.action_result,
                &c.resource,
                &c.json,
                &shard,
            ],
        )
        .await
        .map_err(PgError::db("cannot insert events"))?;
    let new: i64 = row.get(0);
    Ok(u64::try_from(new).unwrap_or(0))
}

/// Most rows one batched statement carries. tokio-postgres encodes a whole
/// statement into one buffer, and its connection keeps its write buffer at
/// the largest size it has seen: a 1,024-event statement left several MiB
/// resident per pooled connection. Batches larger than this are split into
/// statements of this size inside one transaction (one commit per batch).
/// 256 rows still made encoding a statement 1.3 MB of analyze's 10.3 MB
/// peak heap (heaptrack, 2026-12-07); 128 lowered analyze's peak RSS by
/// 0.3 to 2.7 MB in three alternating runs of `scripts/bench.py
/// --distributed`, with end-to-end throughput inside the runs' noise.
const ROWS_PER_STATEMENT: usize = 128;

const INSERT_ALERTS: &str = "WITH new AS (
    INSERT INTO alerts (alert_id, correlation_id, timestamp, received_at, alert_name, alert_type,
                        severity, description, source_service_name, rule_id, rule_name,
                        actor_type, actor_id, client_ip, resource_type, resource_id,
                        server_hostname, action_observed, analysis_rule_details,
                        triggered_by_details, impacted_resource_details, metadata,
                        raw_event_data, alert_json)
    SELECT a, c, t, now(), an, aty, sev, d, ssn, ri, rn, act, aci, ip, rt, rid, h, ao,
           ard::jsonb, tbd::jsonb, ird::jsonb, md::jsonb, red::jsonb, j::jsonb
    FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                $13::inet[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[],
                $19::text[], $20::text[], $21::text[], $22::text[], $23::text[])
         AS x(a, c, t, an, aty, sev, d, ssn, ri, rn, act, aci, ip, rt, rid, h, ao,
              ard, tbd, ird, md, red, j)
    ON CONFLICT (alert_id) DO NOTHING
    RETURNING alert_id
), bump AS (
    UPDATE counters SET value = value + (SELECT count(*) FROM new)
    WHERE name = 'alerts' AND shard = $24 AND EXISTS (SELECT 1 FROM new)
)
SELECT alert_id FROM new";

fn encode<T: serde::Serialize>(what: &str, id: Uuid, value: &T) -> Result<String, PgError> {
    serde_json::to_string(value)
        .map_err(|e| PgError::Data(format!("{what} {id} cannot be encoded: {e}")))
}

/// Events as column arrays.
#[derive(Default)]
struct EventColumns {
    ids: Vec<Uuid>,
    ts: Vec<DateTime<Utc>>,
    event_type: Vec<String>,
    user_id: Vec<String>,
    host: Vec<String>,
    severity: Vec<&'static str>,
    source_service: Vec<String>,
    action_result: Vec<String>,
    resource: Vec<Option<String>>,
    json: Vec<String>,
}

impl EventColumns {
    fn new(events: &[&Event]) -> Result<EventColumns, PgError> {
        let mut c = EventColumns::default();
        for e in events {
            c.json.push(encode("event", e.event_id, e)?);
            c.ids.push(e.event_id);
            c.ts.push(e.timestamp);
            c.event_type.push(e.event_type.clone());
            c.user_id.push(e.user_id.clone());
            c.host.push(e.server_hostname.clone());
            c.severity.push(e.severity.as_str());
            c.source_service.push(e.source_service.clone());
            c.action_result.push(e.action_result.clone());
            c.resource.push(e.effective_resource().map(str::to_string));
        }
        Ok(c)
    }
}

/// Alerts as column arrays: the legacy columns plus the full JSON.
#[derive(Default)]
struct AlertColumns {
    ids: Vec<Uuid>,
    correlation: Vec<Uuid>,
    ts: Vec<DateTime<Utc>>,
    text: [Vec<String>; 13],
    client_ip: Vec<Option<IpAddr>>,
    json: [Vec<String>; 6],
}

impl AlertColumns {
    fn new(alerts: &[Alert]) -> Result<AlertColumns, PgError> {
        let mut sorted: Vec<&Alert> = alerts.iter().collect();
        sorted.sort_by_key(|a| a.alert_id);
        let mut c = AlertColumns::default();
        for a in sorted {
            let id = a.alert_id;
            let json = [
                encode("alert", id, &a.analysis_rule)?,
                encode("alert", id, &a.triggered_by)?,
                encode("alert", id, &a.impacted_resource)?,
                encode("alert", id, &a.metadata)?,
                encode("alert", id, &a.raw_event_data)?,
                encode("alert", id, a)?,
            ];
            for (column, value) in c.json.iter_mut().zip(json) {
                column.push(value);
            }
            let text = [
                &a.alert_name,
                &a.alert_type,
                a.severity.as_str(),
                &a.description,
                &a.source_service_name,
                &a.analysis_rule.rule_id,
                &a.analysis_rule.rule_name,
                &a.triggered_by.actor_type,
                &a.triggered_by.actor_id,
                // client_ip goes between actor_id and resource_type.
                &a.impacted_resource.resource_type,
                &a.impacted_resource.resource_id,
                &a.impacted_resource.server_hostname,
                &a.action_observed,
            ];
            for (column, value) in c.text.iter_mut().zip(text) {
                column.push(value.to_string());
            }
            c.ids.push(id);
            c.correlation.push(a.correlation_id);
            c.ts.push(a.timestamp);
            // `N/A` (and anything that is not an address, which the legacy
            // INET column could not hold) is stored as NULL; the value as
            // sent stays in triggered_by_details and alert_json.
            c.client_ip
                .push(a.client_ip().and_then(|ip| ip.trim().parse().ok()));
        }
        Ok(c)
    }
}

fn stored_event(row: &Row) -> Result<StoredEvent, PgError> {
    let body: &str = row.try_get(0).map_err(PgError::db("cannot read event"))?;
    let stored_at = row.try_get(1).map_err(PgError::db("cannot read event"))?;
    let event = serde_json::from_str::<Event>(body)
        .map_err(|e| PgError::Data(format!("stored event is not valid: {e}")))?;
    Ok(StoredEvent { event, stored_at })
}

fn stored_alert(row: &Row) -> Result<StoredAlert, PgError> {
    let body: &str = row.try_get(0).map_err(PgError::db("cannot read alert"))?;
    let received_at = row.try_get(1).map_err(PgError::db("cannot read alert"))?;
    let alert = Alert::from_slice(body.as_bytes())
        .map_err(|e| PgError::Data(format!("stored alert is not valid: {e}")))?;
    Ok(StoredAlert { alert, received_at })
}

fn paginate<T>(mut items: Vec<T>, page: u32, key: impl Fn(&T) -> Cursor) -> Page<T> {
    let more = items.len() > page as usize;
    items.truncate(page as usize);
    let next_cursor = if more { items.last().map(key) } else { None };
    Page { items, next_cursor }
}

impl PgStore {
    /// Builds the pool and, when `config.migrate_on_start`, applies pending
    /// migrations (which also proves the database is reachable). Without
    /// migrations no connection is opened until the first call.
    pub async fn connect(config: PgConfig) -> Result<PgStore, PgError> {
        let store = PgStore::from_pool(PgPool::new(&config)?);
        if config.migrate_on_start {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// A store on an existing pool (e.g. one shared with [`crate::PgWindowState`]).
    pub fn from_pool(pool: PgPool) -> PgStore {
        PgStore {
            pool,
            next_shard: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations (`auditflow migrate`). Returns the versions
    /// applied now; re-running is a no-op.
    pub async fn migrate(&self) -> Result<Vec<i64>, PgError> {
        self.pool.migrate().await
    }

    fn shard(&self) -> i16 {
        (self.next_shard.fetch_add(1, Ordering::Relaxed) % COUNTER_SHARDS) as i16
    }

    async fn list<T>(
        &self,
        what: &'static str,
        listing: Listing,
        map: fn(&Row) -> Result<T, PgError>,
    ) -> Result<(Vec<T>, u32), PgError> {
        self.pool
            .run(what, |client| async move {
                let stmt = client
                    .prepare_cached(&listing.sql)
                    .await
                    .map_err(PgError::db("cannot prepare listing"))?;
                let rows = client
                    .query(&stmt, &listing.param_refs())
                    .await
                    .map_err(PgError::db("listing failed"))?;
                let items = rows.iter().map(map).collect::<Result<Vec<_>, _>>()?;
                Ok((items, listing.page))
            })
            .await
    }

    async fn insert_events_inner(&self, events: &[Event]) -> Result<u64, PgError> {
        // Sorted by id so that concurrent batches take row locks in one order.
        let mut sorted: Vec<&Event> = events.iter().collect();
        sorted.sort_by_key(|e| e.event_id);
        let chunks = sorted
            .chunks(ROWS_PER_STATEMENT)
            .map(EventColumns::new)
            .collect::<Result<Vec<_>, _>>()?;
        let shard = self.shard();
        self.pool
            .run("insert_events", |mut client| async move {
                let stmt = client
                    .prepare_cached(INSERT_EVENTS)
                    .await
                    .map_err(PgError::db("cannot prepare event insert"))?;
                if let [only] = chunks.as_slice() {
                    return insert_event_chunk(&client, &stmt, only, shard).await;
                }
                // One transaction, so a batch costs one commit however many
                // statements it takes.
                let tx = client
                    .transaction()
                    .await
                    .map_err(PgError::db("cannot begin event insert"))?;
                let mut new = 0;
                for c in &chunks {
                    new += insert_event_chunk(&tx, &stmt, c, shard).await?;
                }
                tx.commit()
                    .await
                    .map_err(PgError::db("cannot commit event insert"))?;
                Ok(new)
            })
            .await
    }

    async fn insert_alerts_inner(&self, alerts: &[Alert]) -> Result<Vec<Uuid>, PgError> {
        let c = AlertColumns::new(alerts)?;
        let shard = self.shard();
        let new: HashSet<Uuid> = self
            .pool
            .run("insert_alerts", |client| async move {
                let stmt = client
                    .prepare_cached(INSERT_ALERTS)
                    .await
                    .map_err(PgError::db("cannot prepare alert insert"))?;
                let [name, kind, severity, description, service, rule_id, rule_name, actor_type, actor_id, resource_type, resource_id, host, action] =
                    &c.text;
                let [rule, triggered_by, resource, metadata, raw, whole] = &c.json;
                let rows = client
                    .query(
                        &stmt,
                        &[
                            &c.ids,
                            &c.correlation,
                            &c.ts,
                            name,
                            kind,
                            severity,
                            description,
                            service,
                            rule_id,
                            rule_name,
                            actor_type,
                            actor_id,
                            &c.client_ip,
                            resource_type,
                            resource_id,
                            host,
                            action,
                            rule,
                            triggered_by,
                            resource,
                            metadata,
                            raw,
                            whole,
                            &shard,
                        ],
                    )
                    .await
                    .map_err(PgError::db("cannot insert alerts"))?;
                Ok(rows.iter().map(|r| r.get::<_, Uuid>(0)).collect())
            })
            .await?;
        // In input order, each id once.
        let mut seen = HashSet::new();
        Ok(alerts
            .iter()
            .map(|a| a.alert_id)
            .filter(|id| new.contains(id) && seen.insert(*id))
            .collect())
    }
}

#[async_trait]
impl Store for PgStore {
    async fn insert_events(&self, events: &[Event]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        Ok(self.insert_events_inner(events).await?)
    }

    async fn insert_alerts(&self, alerts: &[Alert]) -> Result<Vec<Uuid>, StoreError> {
        if alerts.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.insert_alerts_inner(alerts).await?)
    }

    async fn record_delivery(&self, record: &DeliveryRecord) -> Result<(), StoreError> {
        self.record_deliveries(std::slice::from_ref(record)).await
    }

    async fn record_deliveries(&self, records: &[DeliveryRecord]) -> Result<(), StoreError> {
        let records = last_delivery_per_key(records);
        if records.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = records.iter().map(|r| r.alert_id).collect();
        let channels: Vec<&str> = records.iter().map(|r| r.channel.as_str()).collect();
        let statuses: Vec<&str> = records.iter().map(|r| r.status.as_str()).collect();
        let attempts: Vec<i64> = records.iter().map(|r| i64::from(r.attempts)).collect();
        let errors: Vec<Option<&str>> = records.iter().map(|r| r.last_error.as_deref()).collect();
        let recorded: Vec<DateTime<Utc>> = records.iter().map(|r| r.recorded_at).collect();
        let next: Vec<Option<DateTime<Utc>>> = records.iter().map(|r| r.next_attempt_at).collect();
        let (ids, channels, statuses, attempts, errors, recorded, next) = (
            &ids, &channels, &statuses, &attempts, &errors, &recorded, &next,
        );
        self.pool
            .run("record_deliveries", |client| async move {
                let stmt = client
                    .prepare_cached(deliveries::UPSERT)
                    .await
                    .map_err(PgError::db("cannot prepare delivery upsert"))?;
                client
                    .execute(
                        &stmt,
                        &[ids, channels, statuses, attempts, errors, recorded, next],
                    )
                    .await
                    .map_err(PgError::db("cannot record deliveries"))?;
                Ok(())
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .pool
            .run("claim_retries", |client| async move {
                let stmt = client
                    .prepare_cached(&deliveries::CLAIM)
                    .await
                    .map_err(PgError::db("cannot prepare retry claim"))?;
                client
                    .query(&stmt, &[&channel, &due_before, &lease_until, &limit])
                    .await
                    .map_err(PgError::db("retry claim failed"))
            })
            .await?;
        Ok(rows
            .iter()
            .map(deliveries::pending)
            .collect::<Result<_, _>>()?)
    }

    async fn retry_backlog(&self, channel: &str) -> Result<u64, StoreError> {
        let row = self
            .pool
            .run("retry_backlog", |client| async move {
                let stmt = client
                    .prepare_cached(deliveries::BACKLOG)
                    .await
                    .map_err(PgError::db("cannot prepare retry count"))?;
                client
                    .query_one(&stmt, &[&channel])
                    .await
                    .map_err(PgError::db("retry count failed"))
            })
            .await?;
        let count: i64 = row
            .try_get(0)
            .map_err(PgError::db("cannot read retry count"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn deliveries(&self, alert_id: Uuid) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = self
            .pool
            .run("deliveries", |client| async move {
                let stmt = client
                    .prepare_cached(deliveries::OF_ALERT)
                    .await
                    .map_err(PgError::db("cannot prepare delivery query"))?;
                client
                    .query(&stmt, &[&alert_id])
                    .await
                    .map_err(PgError::db("delivery query failed"))
            })
            .await?;
        Ok(rows
            .iter()
            .map(|row| deliveries::record(alert_id, row))
            .collect::<Result<_, _>>()?)
    }

    async fn event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let row = self
            .pool
            .run("event", |client| async move {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1"
                    ))
                    .await
                    .map_err(PgError::db("cannot prepare event query"))?;
                client
                    .query_opt(&stmt, &[&event_id])
                    .await
                    .map_err(PgError::db("event query failed"))
            })
            .await?;
        Ok(row.as_ref().map(stored_event).transpose()?)
    }

    async fn events(&self, query: &EventQuery) -> Result<Page<StoredEvent>, StoreError> {
        let (items, page) = self
            .list("events", query::events(query), stored_event)
            .await?;
        Ok(paginate(items, page, |e| {
            Cursor::after(&e.event.timestamp, e.event.event_id)
        }))
    }

    async fn alert(&self, alert_id: Uuid) -> Result<Option<StoredAlert>, StoreError> {
        let row = self
            .pool
            .run("alert", |client| async move {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {ALERT_COLUMNS} FROM alerts WHERE alert_id = $1"
                    ))
                    .await
                    .map_err(PgError::db("cannot prepare alert query"))?;
                client
                    .query_opt(&stmt, &[&alert_id])
                    .await
                    .map_err(PgError::db("alert query failed"))
            })
            .await?;
        Ok(row.as_ref().map(stored_alert).transpose()?)
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Page<StoredAlert>, StoreError> {
        let (items, page) = self
            .list("alerts", query::alerts(query), stored_alert)
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
        let limit = i64::from(query::page_size(limit));
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let rows = self
            .pool
            .run("alerts_by_offset", |client| async move {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {ALERT_COLUMNS} FROM alerts
                         ORDER BY timestamp DESC, alert_id DESC LIMIT $1 OFFSET $2"
                    ))
                    .await
                    .map_err(PgError::db("cannot prepare alert query"))?;
                client
                    .query(&stmt, &[&limit, &offset])
                    .await
                    .map_err(PgError::db("alert query failed"))
            })
            .await?;
        Ok(rows.iter().map(stored_alert).collect::<Result<_, _>>()?)
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let rows = self
            .pool
            .run("counts", |client| async move {
                let stmt = client
                    .prepare_cached("SELECT name, sum(value)::bigint FROM counters GROUP BY name")
                    .await
                    .map_err(PgError::db("cannot prepare counts"))?;
                client
                    .query(&stmt, &[])
                    .await
                    .map_err(PgError::db("cannot read counts"))
            })
            .await?;
        let mut counts = StoreCounts::default();
        for row in rows {
            let name: &str = row.get(0);
            let value = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
            match name {
                "events" => counts.events = value,
                "alerts" => counts.alerts = value,
                _ => {}
            }
        }
        Ok(counts)
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(self.pool.check().await?)
    }
}
