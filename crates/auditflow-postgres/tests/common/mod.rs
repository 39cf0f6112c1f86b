//! Helpers shared by the integration tests: a schema of its own per test
//! on the local PostgreSQL (`AUDITFLOW_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped when the guard drops.
#![allow(dead_code)]

use std::time::Duration;

use auditflow_core::alert::{Alert, AlertMetadata, AnalysisRule, ImpactedResource, TriggeredBy};
use auditflow_core::event::{Event, Severity};
use auditflow_postgres::{PgConfig, PgStore};
use chrono::{DateTime, Utc};
use serde_json::{json, Map};
use uuid::Uuid;

pub fn base_url() -> String {
    std::env::var("AUDITFLOW_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A fresh schema `af_test_<random>`; dropped (CASCADE) on drop.
pub struct TestDb {
    pub schema: String,
    pub url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        TestDb::with_url(base_url())
    }

    pub fn with_url(url: String) -> TestDb {
        let id = Uuid::new_v4().simple().to_string();
        TestDb {
            schema: format!("af_test_{}", &id[..16]),
            url,
        }
    }

    /// Test configuration: small pool, unique application name.
    pub fn config(&self) -> PgConfig {
        PgConfig {
            url: self.url.clone(),
            schema: self.schema.clone(),
            pool_size: 4,
            application_name: format!("{}_app", self.schema),
            ..PgConfig::default()
        }
    }

    pub async fn store(&self) -> PgStore {
        PgStore::connect(self.config()).await.expect("connect")
    }

    /// A plain connection (search_path = the test schema).
    pub async fn raw(&self) -> tokio_postgres::Client {
        raw_client(&self.url, &self.schema).await
    }
}

pub async fn raw_client(url: &str, schema: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("raw connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute(&format!("SET search_path TO {schema}"))
        .await
        .expect("search_path");
    client
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = self.url.clone();
        let schema = self.schema.clone();
        // A runtime of its own: Drop cannot await, and may run while the
        // test's runtime is shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
                if let Ok(Ok((client, conn))) =
                    tokio::time::timeout(Duration::from_secs(5), connect).await
                {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

pub fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid time")
}

pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n)
}

pub fn event(n: u128, secs: i64, user: &str, host: &str, kind: &str, severity: Severity) -> Event {
    let mut details = Map::new();
    details.insert("reason".into(), json!("Incorrect password"));
    details.insert("ip_address".into(), json!("192.168.1.150"));
    Event {
        event_id: id(n),
        timestamp: at(secs),
        source_service: "audit-event-generator".into(),
        server_hostname: host.into(),
        event_type: kind.into(),
        severity,
        user_id: user.into(),
        action_result: "FAILURE".into(),
        details,
        resource: None,
        client_ip: None,
        extra: Map::new(),
    }
}

pub fn login(n: u128, secs: i64) -> Event {
    event(
        n,
        secs,
        "attacker_bob",
        "prod-web-01",
        "user_login",
        Severity::Warning,
    )
}

pub fn alert(n: u128, secs: i64, rule: &str, user: &str, host: &str, ip: &str) -> Alert {
    let trigger = login(n, secs);
    Alert {
        alert_id: auditflow_core::alert_id_for(rule, trigger.event_id),
        timestamp: at(secs),
        alert_name: "Multiple Failed Login Attempts".into(),
        alert_type: "SECURITY".into(),
        severity: Severity::Critical,
        description: format!("3 or more failed login attempts for user '{user}'"),
        source_service_name: "audit-event-generator".into(),
        analysis_rule: AnalysisRule {
            rule_id: rule.into(),
            rule_name: "Failed Login Burst Detection".into(),
            rule_description: "Detects 3 failed logins within 60 seconds.".into(),
        },
        triggered_by: TriggeredBy {
            actor_type: "USER".into(),
            actor_id: user.into(),
            client_ip: ip.into(),
        },
        impacted_resource: ImpactedResource {
            resource_type: "SERVER".into(),
            resource_id: host.into(),
            server_hostname: host.into(),
        },
        action_observed: "LOGIN_FAILURE".into(),
        correlation_id: trigger.event_id,
        raw_event_data: serde_json::to_value(&trigger).expect("event json"),
        metadata: AlertMetadata {
            tags: vec!["brute-force".into()],
            environment: "DEVELOPMENT".into(),
            remediation_guidance: "Investigate.".into(),
            playbook_url: "https://example.com/playbooks/failed_login_burst".into(),
        },
        extra: Map::new(),
    }
}
