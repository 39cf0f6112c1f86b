//! Versioned schema migrations.
//!
//! Migrations are SQL files embedded in the binary (`migrations/NNNN_*.sql`),
//! applied in order. The versions applied are recorded in
//! `<schema>.schema_migrations(version, name, applied_at)`. Migrating ([`crate::PgStore::migrate`]) runs
//! in ONE transaction holding a transaction-scoped advisory lock, so replicas
//! starting together serialize: the first applies, the others then find
//! nothing to do. Lock waits are bounded by `lock_timeout` (60 s); the DDL
//! itself is not bounded by the connection's `statement_timeout`.
//!
//! A schema migrated by a newer build (a version this build does not know)
//! is refused with [`PgError::SchemaTooNew`] rather than misread. Append new
//! migrations to [`MIGRATIONS`]; never edit a released one.

use deadpool_postgres::Object;

use crate::error::PgError;

/// One migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its version (strictly increasing, from 1).
    pub version: i64,
    /// Short name.
    pub name: &'static str,
    /// The SQL, run with `search_path` set to the target schema.
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "delivery_retries",
        sql: include_str!("../migrations/0002_delivery_retries.sql"),
    },
    Migration {
        version: 3,
        name: "event_json_as_json",
        sql: include_str!("../migrations/0003_event_json_as_json.sql"),
    },
];

/// Advisory lock (two-key form, so it cannot collide with the single-key
/// locks of the window state) held while migrating: `('AF', 1)`.
const LOCK_CLASS: i32 = 0x4146;
const LOCK_MIGRATE: i32 = 1;

/// Brings `schema` to the newest version. Returns the versions applied now.
pub(crate) async fn migrate(client: &mut Object, schema: &str) -> Result<Vec<i64>, PgError> {
    let tx = client
        .transaction()
        .await
        .map_err(PgError::db("cannot start the migration transaction"))?;
    // `schema` was validated as a plain identifier by the configuration.
    tx.batch_execute("SET LOCAL lock_timeout = '60s'; SET LOCAL statement_timeout = 0")
        .await
        .map_err(PgError::db("cannot set migration timeouts"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &LOCK_MIGRATE],
    )
    .await
    .map_err(PgError::db("cannot take the migration lock"))?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         SET LOCAL search_path TO \"{schema}\";
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version    bigint PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(PgError::db("cannot create the migrations table"))?;
    let found: i64 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(PgError::db("cannot read the schema version"))?
        .get(0);
    let supported = MIGRATIONS.last().map_or(0, |m| m.version);
    if found > supported {
        return Err(PgError::SchemaTooNew {
            schema: schema.to_string(),
            found,
            supported,
        });
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.batch_execute(m.sql)
            .await
            .map_err(PgError::db("migration failed"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(PgError::db("cannot record the migration"))?;
        applied.push(m.version);
    }
    tx.commit()
        .await
        .map_err(PgError::db("cannot commit the migration"))?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
        }
    }
}
