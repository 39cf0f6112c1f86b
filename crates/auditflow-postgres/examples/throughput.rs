//! Throughput of the PostgreSQL backends against a real server.
//!
//! `cargo run --release -p auditflow-postgres --example throughput [-- <events> [count]]`
//!
//! Server: `AUDITFLOW_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! each run uses a fresh schema `af_bench_<random>`, dropped afterwards.
//! Phases, each run 3 times (the median is reported):
//! 1. insert_events: 4 tasks inserting batches of 500 new events;
//! 2. window observe: 1 task, batches of 500 observations over 1000 groups;
//! 3. window observe: 4 competing tasks (separate pools), same groups.
//!
//! With `count` as the second argument, also loads 1 000 000 events and
//! compares `counts()` (sharded counters) with `SELECT count(*)`.

use std::time::{Duration, Instant};

use auditflow_core::event::{Event, Severity};
use auditflow_core::store::Store;
use auditflow_core::window::{Observation, WindowSpec, WindowState};
use auditflow_postgres::{PgConfig, PgPool, PgStore, PgWindowState};
use chrono::DateTime;
use serde_json::{json, Map};
use uuid::Uuid;

const BATCH: usize = 500;

fn event(n: u64) -> Event {
    let mut details = Map::new();
    details.insert("reason".into(), json!("Incorrect password"));
    details.insert(
        "ip_address".into(),
        json!(format!("10.0.{}.{}", n % 256, n % 200)),
    );
    details.insert("protocol".into(), json!("ssh"));
    Event {
        event_id: Uuid::now_v7(),
        timestamp: DateTime::from_timestamp(1_800_000_000 + (n / 100) as i64, 0)
            .unwrap_or_default(),
        source_service: "audit-event-generator".into(),
        server_hostname: format!("prod-web-{:02}", n % 20),
        event_type: ["user_login", "file_modified", "sudo_command"][(n % 3) as usize].into(),
        severity: Severity::ALL[(n % 4) as usize],
        user_id: format!("user_{}", n % 500),
        action_result: "FAILURE".into(),
        details,
        resource: None,
        client_ip: None,
        extra: Map::new(),
    }
}

fn config(schema: &str) -> PgConfig {
    PgConfig {
        url: std::env::var("AUDITFLOW_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        schema: schema.into(),
        pool_size: 8,
        application_name: "auditflow-throughput".into(),
        ..PgConfig::default()
    }
}

async fn drop_schema(store: &PgStore) -> Result<(), Box<dyn std::error::Error>> {
    let client = store.pool().get().await?;
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            store.pool().schema()
        ))
        .await?;
    Ok(())
}

fn rate(n: u64, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

async fn inserts(store: &PgStore, total: u64) -> Result<f64, Box<dyn std::error::Error>> {
    let per_task = total / 4;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = t * per_task;
            let end = n + per_task;
            while n < end {
                let batch: Vec<Event> = (n..(n + BATCH as u64).min(end)).map(event).collect();
                n += batch.len() as u64;
                store.insert_events(&batch).await?;
            }
            Ok::<_, auditflow_core::store::StoreError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let took = started.elapsed();
    let stored = store.counts().await?.events;
    assert_eq!(stored, per_task * 4, "every event stored once");
    Ok(rate(stored, took))
}

const SPEC: WindowSpec = WindowSpec {
    window: Duration::from_secs(60),
    threshold: 5,
    cooldown: Duration::from_secs(60),
};

fn observation(n: u64) -> Observation {
    Observation {
        rule_id: "ANLY-SEC-001".into(),
        group_key: format!("user_{}\u{1f}prod-web-{:02}", n % 1000, n % 20),
        event_id: Uuid::from_u64_pair(0x0190_0000_0000_7000, n),
        event_time: DateTime::from_timestamp(1_800_000_000 + (n / 50) as i64, 0)
            .unwrap_or_default(),
        spec: SPEC,
    }
}

async fn observes(states: &[PgWindowState], total: u64) -> Result<f64, Box<dyn std::error::Error>> {
    let tasks_n = states.len() as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (t, w) in states.iter().enumerate() {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            // Task t takes every tasks_n-th batch of the stream.
            let mut b = t as u64;
            while b * BATCH as u64 <= total.saturating_sub(1) {
                let start = b * BATCH as u64;
                let batch: Vec<Observation> = (start..(start + BATCH as u64).min(total))
                    .map(observation)
                    .collect();
                w.observe(&batch).await?;
                b += tasks_n;
            }
            Ok::<_, auditflow_core::window::WindowError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(rate(total, started.elapsed()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn count_comparison() -> Result<(), Box<dyn std::error::Error>> {
    let schema = format!("af_bench_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let store = PgStore::connect(config(&schema)).await?;
    let total = 1_000_000u64;
    let started = Instant::now();
    inserts(&store, total).await?;
    println!("loaded {total} events in {:.1?}", started.elapsed());
    let client = store.pool().get().await?;
    client.batch_execute("VACUUM ANALYZE events").await?;
    for _ in 0..3 {
        let t = Instant::now();
        let c = store.counts().await?;
        let counters = t.elapsed();
        let t = Instant::now();
        let n: i64 = client
            .query_one("SELECT count(*) FROM events", &[])
            .await?
            .get(0);
        let exact = t.elapsed();
        println!(
            "counts() = {} in {counters:.2?}; SELECT count(*) = {n} in {exact:.2?}",
            c.events
        );
    }
    drop_schema(&store).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let total: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let observations = total / 2;
    let (mut ins, mut obs1, mut obs4) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=3 {
        let schema = format!("af_bench_{}", &Uuid::new_v4().simple().to_string()[..12]);
        let store = PgStore::connect(config(&schema)).await?;
        let r = inserts(&store, total).await?;
        let one = [PgWindowState::new(store.pool().clone())];
        let o1 = observes(&one, observations).await?;
        // A fresh rule stream for the competing phase: other event ids.
        let client = store.pool().get().await?;
        client.batch_execute("TRUNCATE window_members").await?;
        drop(client);
        let four: Vec<PgWindowState> = (0..4)
            .map(|_| PgPool::new(&config(&schema)).map(PgWindowState::new))
            .collect::<Result<_, _>>()?;
        let o4 = observes(&four, observations).await?;
        println!(
            "run {run}: insert_events {r:>9.0} events/s | observe (1 task) {o1:>8.0}/s | observe (4 tasks) {o4:>8.0}/s"
        );
        ins.push(r);
        obs1.push(o1);
        obs4.push(o4);
        drop_schema(&store).await?;
    }
    println!(
        "median of 3: insert_events {:.0} events/s ({} per run, 4 tasks, batches of {BATCH}); \
         window observe {:.0}/s (1 task), {:.0}/s (4 competing tasks) ({} per run, 1000 groups)",
        median(ins),
        total,
        median(obs1),
        median(obs4),
        observations
    );
    if args.get(2).map(String::as_str) == Some("count") {
        count_comparison().await?;
    }
    Ok(())
}
