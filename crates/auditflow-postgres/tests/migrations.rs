//! Migrations: applied once, idempotent, safe when replicas race, and the
//! alerts table matches the earlier notification service's.

mod common;

use auditflow_core::store::Store;
use auditflow_postgres::migrations::MIGRATIONS;
use auditflow_postgres::{PgConfig, PgPool, PgStore};
use common::*;

#[tokio::test]
async fn migrations_apply_once_and_rerunning_is_a_no_op() {
    let db = TestDb::new();
    let config = PgConfig {
        migrate_on_start: false,
        ..db.config()
    };
    let store = PgStore::connect(config).await.unwrap();
    let all: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(store.migrate().await.unwrap(), all);
    assert_eq!(store.migrate().await.unwrap(), Vec::<i64>::new());
    // A second store connecting with migrate_on_start finds nothing to do.
    let again = PgStore::connect(db.config()).await.unwrap();
    assert_eq!(again.migrate().await.unwrap(), Vec::<i64>::new());
    let raw = db.raw().await;
    let rows = raw
        .query(
            "SELECT version, applied_at IS NOT NULL FROM schema_migrations",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), MIGRATIONS.len());
    assert!(rows.iter().all(|r| r.get::<_, bool>(1)));
    store.check().await.unwrap();
}

#[tokio::test]
async fn concurrent_migrations_from_two_pools_both_succeed() {
    let db = TestDb::new();
    let a = PgPool::new(&db.config()).unwrap();
    let b = PgPool::new(&db.config()).unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        ra.len() + rb.len(),
        MIGRATIONS.len(),
        "exactly one of them applied: {ra:?} {rb:?}"
    );
    let raw = db.raw().await;
    let n: i64 = raw
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, MIGRATIONS.len());
}

/// The columns of the earlier notification service's alerts table.
const LEGACY_ALERT_COLUMNS: [(&str, &str); 23] = [
    ("alert_id", "uuid"),
    ("correlation_id", "uuid"),
    ("timestamp", "timestamp with time zone"),
    ("received_at", "timestamp with time zone"),
    ("alert_name", "text"),
    ("alert_type", "text"),
    ("severity", "text"),
    ("description", "text"),
    ("source_service_name", "text"),
    ("rule_id", "text"),
    ("rule_name", "text"),
    ("actor_type", "text"),
    ("actor_id", "text"),
    ("client_ip", "inet"),
    ("resource_type", "text"),
    ("resource_id", "text"),
    ("server_hostname", "text"),
    ("action_observed", "text"),
    ("analysis_rule_details", "jsonb"),
    ("triggered_by_details", "jsonb"),
    ("impacted_resource_details", "jsonb"),
    ("metadata", "jsonb"),
    ("raw_event_data", "jsonb"),
];

#[tokio::test]
async fn alerts_table_matches_the_legacy_columns_and_types() {
    let db = TestDb::new();
    let _store = db.store().await;
    let raw = db.raw().await;
    let rows = raw
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = 'alerts' ORDER BY ordinal_position",
            &[&db.schema],
        )
        .await
        .unwrap();
    let columns: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let legacy: Vec<(String, String)> = LEGACY_ALERT_COLUMNS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(
        &columns[..legacy.len()],
        &legacy[..],
        "legacy columns first, in order"
    );
    assert_eq!(
        &columns[legacy.len()..],
        &[("alert_json".to_string(), "jsonb".to_string())],
        "plus ours"
    );
    let pk: Vec<String> = raw
        .query(
            "SELECT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = ($1 || '.alerts')::regclass AND i.indisprimary",
            &[&db.schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pk, ["alert_id"]);
}

#[tokio::test]
async fn an_existing_legacy_alerts_table_is_adopted_and_its_rows_read() {
    let db = TestDb::new();
    let raw = common::raw_client(&db.url, "public").await;
    // The legacy service's table, created before AuditFlow ever ran.
    raw.batch_execute(&format!(
        "CREATE SCHEMA {s};
         CREATE TABLE {s}.alerts (
            alert_id UUID PRIMARY KEY, correlation_id UUID,
            timestamp TIMESTAMPTZ NOT NULL, received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            alert_name TEXT, alert_type TEXT, severity TEXT, description TEXT,
            source_service_name TEXT, rule_id TEXT, rule_name TEXT, actor_type TEXT,
            actor_id TEXT, client_ip INET, resource_type TEXT, resource_id TEXT,
            server_hostname TEXT, action_observed TEXT, analysis_rule_details JSONB,
            triggered_by_details JSONB, impacted_resource_details JSONB, metadata JSONB,
            raw_event_data JSONB);
         INSERT INTO {s}.alerts VALUES (
            'fc5b2c34-8e0a-4b8e-b0f3-6f7c1d2e3a44', '0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c11',
            '2026-11-22 21:46:29+00:00', '2026-11-22 21:46:29.412233+00:00',
            'Multiple Failed Login Attempts', 'SECURITY', 'CRITICAL',
            '3 or more failed login attempts', 'audit-event-generator', 'ANLY-SEC-001',
            'Failed Login Burst Detection', 'USER', 'attacker_bob', NULL, 'SERVER',
            'prod-web-01', 'prod-web-01', 'LOGIN_FAILURE',
            '{{\"rule_id\": \"ANLY-SEC-001\", \"rule_name\": \"Failed Login Burst Detection\",
              \"rule_description\": \"Detects 3 failed logins within 60 seconds.\"}}',
            '{{\"actor_type\": \"USER\", \"actor_id\": \"attacker_bob\", \"client_ip\": \"N/A\"}}',
            '{{\"resource_type\": \"SERVER\", \"resource_id\": \"prod-web-01\",
              \"server_hostname\": \"prod-web-01\"}}',
            '{{\"tags\": [\"brute-force\"], \"environment\": \"DEVELOPMENT\",
              \"remediation_guidance\": \"Investigate.\", \"playbook_url\": \"https://example.com\"}}',
            '{{\"event_id\": \"0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c11\", \"user_id\": \"attacker_bob\"}}');",
        s = db.schema
    ))
    .await
    .unwrap();
    let store = db.store().await;
    assert_eq!(
        store.counts().await.unwrap().alerts,
        1,
        "counted on adoption"
    );
    let legacy_id = uuid::Uuid::parse_str("fc5b2c34-8e0a-4b8e-b0f3-6f7c1d2e3a44").unwrap();
    let got = store.alert(legacy_id).await.unwrap().expect("legacy alert");
    assert_eq!(got.alert.analysis_rule.rule_id, "ANLY-SEC-001");
    assert_eq!(got.alert.triggered_by.client_ip, "N/A");
    assert_eq!(
        got.alert.timestamp,
        "2026-11-22T21:46:29Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    );
    assert_eq!(got.alert.metadata.tags, ["brute-force"]);
    assert_eq!(got.alert.raw_event_data["user_id"], "attacker_bob");
    assert_eq!(got.received_at.timestamp_subsec_micros(), 412_233);
    // New alerts go in beside it, and listings mix both.
    let new = alert(1, 0, "ANLY-SEC-001", "eve", "prod-db-01", "10.0.0.7");
    assert_eq!(
        store
            .insert_alerts(std::slice::from_ref(&new))
            .await
            .unwrap(),
        [new.alert_id]
    );
    let listed = store.alerts_by_offset(10, 0).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[0].alert.alert_id, new.alert_id,
        "2027 first: newest first"
    );
    assert_eq!(listed[1].alert.alert_id, legacy_id);
}

#[tokio::test]
async fn events_stored_as_jsonb_before_migration_3_read_back_the_same_after_it() {
    let db = TestDb::new();
    let raw = common::raw_client(&db.url, "public").await;
    // A schema as a build with migrations 1 and 2 left it, holding an event
    // in the jsonb column.
    raw.batch_execute(&format!(
        "CREATE SCHEMA {s}; SET search_path TO {s};
         CREATE TABLE schema_migrations (
             version bigint PRIMARY KEY, name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());",
        s = db.schema
    ))
    .await
    .unwrap();
    for m in &MIGRATIONS[..2] {
        raw.batch_execute(m.sql).await.unwrap();
        raw.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .unwrap();
    }
    let before = login(1, 0);
    let text = serde_json::to_string(&before).unwrap();
    raw.execute(
        "INSERT INTO events (event_id, ts, event_type, user_id, server_hostname, severity,
                             source_service, action_result, event_json)
         VALUES ($1, $2, 'user_login', 'attacker_bob', 'prod-web-01', 'WARNING',
                 'audit-event-generator', 'FAILURE', $3::text::jsonb)",
        &[&before.event_id, &before.timestamp, &text],
    )
    .await
    .unwrap();

    let store = db.store().await;
    let column_type: String = raw
        .query_one(
            "SELECT data_type::text FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = 'events' AND column_name = 'event_json'",
            &[&db.schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(column_type, "json");
    let stored = store.event(before.event_id).await.unwrap().expect("kept");
    assert_eq!(stored.event, before);
    // Events written after the migration sit beside it, and text search
    // still looks into `details` of both.
    let after = login(2, 1);
    assert_eq!(
        store
            .insert_events(std::slice::from_ref(&after))
            .await
            .unwrap(),
        1
    );
    let found = store
        .events(&auditflow_core::store::EventQuery {
            text: Some("incorrect pass".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = found.items.iter().map(|e| e.event.event_id).collect();
    assert_eq!(ids, [after.event_id, before.event_id]);
}
