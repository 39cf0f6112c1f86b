//! Throughput of the embedded backends, with `synchronous = FULL`.
//!
//! `cargo run --release -p auditflow-embedded --example throughput [-- <events>]`
//!
//! Phases (each on a fresh data directory in the system temp dir):
//! 1. publish: 32 tasks publishing batches of 64 events;
//! 2. consume + ack: 2 subscriptions (prefetch 2000) taking batches of 500;
//! 3. insert_events: 4 tasks inserting batches of 500;
//! 4. window observe: batches of 500 observations over 1000 groups.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditflow_core::broker::{Broker, Message};
use auditflow_core::event::{Event, Severity};
use auditflow_core::store::Store;
use auditflow_core::window::{Observation, WindowSpec, WindowState};
use auditflow_embedded::{Embedded, EmbeddedOptions};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{json, Map};
use uuid::Uuid;

const Q: &str = "audit_events";

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

fn rate(n: u64, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

async fn run(total: u64) -> Result<[f64; 4], Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let opts = EmbeddedOptions {
        max_queue_depth: total + 1,
        ..EmbeddedOptions::default()
    };
    let e = Embedded::open(dir.path(), opts)?;
    let payloads: Arc<Vec<Bytes>> = Arc::new(
        (0..1000)
            .map(|n| Bytes::from(event(n).to_json_bytes()))
            .collect(),
    );

    // 1. publish
    let broker = e.broker();
    let tasks = 32u64;
    let per_task = total / tasks / 64;
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let b = Arc::clone(&broker);
        let payloads = Arc::clone(&payloads);
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                let batch: Vec<Message> = (0..64)
                    .map(|k| {
                        let n = (t * per_task + i) * 64 + k;
                        let mut headers = auditflow_core::broker::Headers::new();
                        headers.insert("x-correlation-id".to_string(), n.to_string());
                        Message {
                            message_id: n.to_string(),
                            payload: payloads[(n % 1000) as usize].clone(),
                            headers,
                        }
                    })
                    .collect();
                b.publish(Q, &batch).await?;
            }
            Ok::<_, auditflow_core::broker::BrokerError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let published = tasks * per_task * 64;
    let publish = rate(published, start.elapsed());

    // 2. consume + ack
    let start = Instant::now();
    let mut handles = Vec::new();
    let consumed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for _ in 0..2 {
        let mut sub = broker.subscribe(Q, 2000).await?;
        let consumed = Arc::clone(&consumed);
        let b = Arc::clone(&broker);
        handles.push(tokio::spawn(async move {
            loop {
                if b.stats(Q).await?.ready == 0 {
                    return Ok::<_, auditflow_core::broker::BrokerError>(());
                }
                let batch = tokio::select! {
                    batch = sub.next_batch(500) => batch?,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                };
                let tags: Vec<u64> = batch.iter().map(|d| d.tag).collect();
                sub.ack(&tags).await?;
                consumed.fetch_add(tags.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        h.await??;
    }
    broker.check().await?; // acks committed
    let consume = rate(
        consumed.load(std::sync::atomic::Ordering::Relaxed),
        start.elapsed(),
    );

    // 3. insert_events
    let store = e.store();
    let events: Arc<Vec<Event>> = Arc::new((0..total).map(event).collect());
    let start = Instant::now();
    let mut handles = Vec::new();
    let writers = 4u64;
    for t in 0..writers {
        let s = Arc::clone(&store);
        let events = Arc::clone(&events);
        handles.push(tokio::spawn(async move {
            let mut new = 0;
            for chunk in events
                .chunks(500)
                .skip(t as usize)
                .step_by(writers as usize)
            {
                new += s.insert_events(chunk).await?;
            }
            Ok::<_, auditflow_core::store::StoreError>(new)
        }));
    }
    let mut inserted = 0;
    for h in handles {
        inserted += h.await??;
    }
    let insert = rate(inserted, start.elapsed());

    // 4. window observes
    let windows = e.windows();
    let spec = WindowSpec {
        window: Duration::from_secs(60),
        threshold: 5,
        cooldown: Duration::from_secs(300),
    };
    let start = Instant::now();
    let base: DateTime<Utc> = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    for chunk in events.chunks(500) {
        let batch: Vec<Observation> = chunk
            .iter()
            .map(|ev| Observation {
                rule_id: "ANLY-SEC-001".into(),
                group_key: format!("{}\u{1f}{}", ev.user_id, ev.server_hostname),
                event_id: ev.event_id,
                event_time: ev.timestamp.max(base),
                spec,
            })
            .collect();
        windows.observe(&batch).await?;
    }
    let observe = rate(total, start.elapsed());
    Ok([publish, consume, insert, observe])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    for i in 1..=3 {
        let r = rt.block_on(run(total))?;
        println!(
            "run {i}: publish {:>9.0} ev/s | consume+ack {:>9.0} msg/s | insert_events {:>9.0} rows/s | window observe {:>9.0} obs/s",
            r[0], r[1], r[2], r[3]
        );
        runs.push(r);
    }
    let names = [
        "publish (32 tasks x 64/batch)",
        "consume+ack (2 subs, 500/batch)",
        "insert_events (4 tasks x 500/batch)",
        "window observe (500/batch)",
    ];
    println!("median of 3 runs, {total} events each, synchronous=FULL:");
    for (k, name) in names.iter().enumerate() {
        println!(
            "  {name:<38} {:>10.0} /s",
            median(runs.iter().map(|r| r[k]).collect())
        );
    }
    Ok(())
}
