//! Schemas of the three database files and their migrations.
//!
//! Each file records its schema version in `PRAGMA user_version`. Opening a
//! file applies, in one transaction, every migration newer than that version;
//! a file from a newer build is refused rather than misread. Append new
//! migrations to the end of a list; never edit a released one.

use std::path::Path;

use rusqlite::Connection;

use crate::error::EmbeddedError;

/// Migrations of `broker.sqlite`.
pub(crate) const BROKER: &[&str] = &[
    // 1: durable queues and dead letters.
    "CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        message_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        headers TEXT NOT NULL,
        delivery_count INTEGER NOT NULL DEFAULT 0,
        enqueued_at INTEGER NOT NULL
     );
     CREATE TABLE dead_letters (
        id TEXT PRIMARY KEY,
        queue TEXT NOT NULL,
        message_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        headers TEXT NOT NULL,
        reason TEXT NOT NULL,
        delivery_count INTEGER NOT NULL,
        failed_at INTEGER NOT NULL
     );
     CREATE INDEX dead_letters_by_queue ON dead_letters (queue, failed_at, id);",
    // 2: delivery counts in a table of their own. Recording a delivery in
    // `messages` rewrote the 4 KiB page holding the message (about 600 bytes
    // of WAL per event, measured); a row here is a dozen bytes. The count
    // of a message is the larger of its column (rows from before this
    // migration) and its row here.
    "CREATE TABLE deliveries (
        seq INTEGER PRIMARY KEY NOT NULL,
        count INTEGER NOT NULL
     );",
];

/// Migrations of `store.sqlite`.
pub(crate) const STORE: &[&str] = &[
    // 1: events, alerts (legacy columns + full JSON), deliveries, counters.
    "CREATE TABLE events (
        event_id BLOB PRIMARY KEY NOT NULL,
        ts INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        user_id TEXT NOT NULL,
        server_hostname TEXT NOT NULL,
        severity TEXT NOT NULL,
        resource TEXT,
        stored_at INTEGER NOT NULL,
        body TEXT NOT NULL
     );
     CREATE INDEX events_by_time ON events (ts, event_id);
     CREATE INDEX events_by_user ON events (user_id, ts, event_id);
     CREATE INDEX events_by_host ON events (server_hostname, ts, event_id);
     CREATE TABLE alerts (
        alert_id TEXT PRIMARY KEY NOT NULL,
        correlation_id TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        alert_name TEXT NOT NULL,
        alert_type TEXT NOT NULL,
        severity TEXT NOT NULL,
        description TEXT NOT NULL,
        source_service_name TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        rule_name TEXT NOT NULL,
        actor_type TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        client_ip TEXT,
        resource_type TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        server_hostname TEXT NOT NULL,
        action_observed TEXT NOT NULL,
        analysis_rule_details TEXT NOT NULL,
        triggered_by_details TEXT NOT NULL,
        impacted_resource_details TEXT NOT NULL,
        metadata TEXT NOT NULL,
        raw_event_data TEXT NOT NULL,
        body TEXT NOT NULL
     );
     CREATE INDEX alerts_by_time ON alerts (timestamp, alert_id);
     CREATE INDEX alerts_by_rule ON alerts (rule_id, timestamp, alert_id);
     CREATE INDEX alerts_by_actor ON alerts (actor_id, timestamp, alert_id);
     CREATE INDEX alerts_by_host ON alerts (server_hostname, timestamp, alert_id);
     CREATE INDEX alerts_by_severity ON alerts (severity, timestamp, alert_id);
     CREATE INDEX alerts_by_correlation ON alerts (correlation_id);
     CREATE TABLE deliveries (
        alert_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT,
        recorded_at INTEGER NOT NULL,
        PRIMARY KEY (alert_id, channel)
     ) WITHOUT ROWID;
     CREATE TABLE counters (
        name TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO counters (name, value) VALUES ('events', 0), ('alerts', 0);",
    // 2: the retry outbox: when a `retrying` delivery is due (or leased
    // until), indexed over the retrying rows only.
    "ALTER TABLE deliveries ADD COLUMN next_attempt_at INTEGER;
     CREATE INDEX deliveries_retry_due ON deliveries (channel, next_attempt_at)
        WHERE status = 'retrying';",
];

/// Migrations of `window.sqlite`.
pub(crate) const WINDOW: &[&str] = &[
    // 1: members of every (rule, group) window with their recorded decisions.
    "CREATE TABLE window_members (
        rule_id TEXT NOT NULL,
        group_key TEXT NOT NULL,
        micros INTEGER NOT NULL,
        event_id BLOB NOT NULL,
        fire INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (rule_id, group_key, micros, event_id)
     ) WITHOUT ROWID;",
    // 2: when each member was first observed (processing time), so recorded
    // decisions outlive event-time pruning until any redelivery is over.
    "ALTER TABLE window_members ADD COLUMN observed_micros INTEGER NOT NULL DEFAULT 0;",
];

/// Brings `conn` to the newest version of `migrations`.
pub(crate) fn migrate(
    conn: &mut Connection,
    path: &Path,
    migrations: &[&str],
) -> Result<(), EmbeddedError> {
    let err = |context: &'static str| {
        let path = path.to_path_buf();
        move |source| EmbeddedError::Sqlite {
            context,
            path,
            source,
        }
    };
    let supported = migrations.len() as i64;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err("cannot start migration"))?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(err("cannot read schema version"))?;
    if found > supported {
        return Err(EmbeddedError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    let start = usize::try_from(found).unwrap_or(0);
    for sql in &migrations[start..] {
        tx.execute_batch(sql).map_err(err("migration failed"))?;
    }
    if found != supported {
        tx.pragma_update(None, "user_version", supported)
            .map_err(err("cannot record schema version"))?;
    }
    tx.commit().map_err(err("cannot commit migration"))
}
