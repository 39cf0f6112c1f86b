//! Throughput of [`RabbitBroker`] against a real RabbitMQ.
//!
//! `cargo run --release -p auditflow-rabbitmq --example throughput`
//! (`AMQP_URL` overrides the default local guest URL; `TOPOLOGY=compat`
//! measures classic queues). Publishes with confirms from 32 concurrent
//! publishers in batches of 100, then consumes and acks everything; prints
//! the median of 3 runs, and RabbitMQ's CPU time per message when it runs
//! on this machine. `STREAM=1` consumes while publishing (as analyze does)
//! and measures both together. Each run uses a fresh queue, deleted
//! afterwards.

use std::time::{Duration, Instant};

use auditflow_core::broker::{Broker, BrokerError, Message};
use auditflow_rabbitmq::{RabbitBroker, RabbitConfig, Topology};
use bytes::Bytes;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};

const PUBLISHERS: usize = 32;
const BATCHES: usize = 20;
const BATCH: usize = 100;
const RUNS: usize = 3;

fn payload(i: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"event_id":"{i:032x}","event_type":"user_login_failure","user_id":"u{}","source_ip":"10.0.0.{}","timestamp":"2024-05-01T12:00:00Z","details":{{"reason":"bad password"}}}}"#,
        i % 97,
        i % 250
    ))
}

async fn run(config: &RabbitConfig, queue: &str) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let broker = RabbitBroker::connect(config.clone(), Duration::from_secs(10)).await?;
    let total = PUBLISHERS * BATCHES * BATCH;
    let streaming = std::env::var("STREAM").as_deref() == Ok("1");
    let consumer =
        streaming.then(|| tokio::spawn(consume(broker.clone(), queue.to_string(), total)));
    let cpu_before = rabbitmq_cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let broker = broker.clone();
        let queue = queue.to_string();
        tasks.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let msgs: Vec<Message> = (0..BATCH)
                    .map(|i| {
                        let n = (p * BATCHES + b) * BATCH + i;
                        Message {
                            message_id: format!("{n:032x}"),
                            payload: payload(n),
                            headers: [("x-correlation-id".to_string(), format!("c{n}"))].into(),
                        }
                    })
                    .collect();
                broker.publish(&queue, &msgs).await?;
            }
            Ok::<_, BrokerError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let publish_rate = total as f64 / started.elapsed().as_secs_f64();
    let cpu_published = rabbitmq_cpu_seconds();

    let consume_rate = match consumer {
        Some(consumer) => {
            consumer.await??;
            total as f64 / started.elapsed().as_secs_f64()
        }
        None => {
            let started = Instant::now();
            consume(broker.clone(), queue.to_string(), total).await?;
            total as f64 / started.elapsed().as_secs_f64()
        }
    };
    if let (Some(before), Some(published), Some(after)) =
        (cpu_before, cpu_published, rabbitmq_cpu_seconds())
    {
        let per_message = |seconds: f64| seconds / total as f64 * 1e6;
        if streaming {
            println!(
                "RabbitMQ CPU per message, published and consumed together: {:.1} us",
                per_message(after - before)
            );
        } else {
            println!(
                "RabbitMQ CPU per message: publish {:.1} us, consume+ack {:.1} us",
                per_message(published - before),
                per_message(after - published)
            );
        }
    }

    // Clean up with a plain client.
    let conn =
        lapin::Connection::connect(&config.url, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    for q in [queue.to_string(), format!("{queue}.dlq")] {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    if config.topology == Topology::Quorum {
        ch.exchange_delete(
            format!("{queue}.dlx").as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await?;
    }
    conn.close(200, "done".into()).await?;
    broker.close();
    Ok((publish_rate, consume_rate))
}

/// Consumes and acks `total` messages of `queue` (prefetch 2048, batches of
/// up to 1024: analyze's defaults on RabbitMQ).
async fn consume(broker: RabbitBroker, queue: String, total: usize) -> Result<(), BrokerError> {
    let mut sub = broker.subscribe(&queue, 2048).await?;
    let mut seen = 0;
    while seen < total {
        let batch = sub.next_batch(1024).await?;
        seen += batch.len();
        let tags: Vec<u64> = batch.iter().map(|d| d.tag).collect();
        sub.ack(&tags).await?;
    }
    sub.flush().await
}

/// CPU seconds used so far by the local RabbitMQ (every `beam.smp`
/// process), or `None` where there is none to read (a remote server).
fn rabbitmq_cpu_seconds() -> Option<f64> {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let path = entry.path();
        let is_beam =
            std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == "beam.smp");
        let Some(stat) = is_beam
            .then(|| std::fs::read_to_string(path.join("stat")).ok())
            .flatten()
        else {
            continue;
        };
        // Fields after the command name; utime and stime are the 12th and 13th.
        let after_name = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let used: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        *total.get_or_insert(0.0) += used / ticks;
    }
    total
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = RabbitConfig {
        publish_timeout: Duration::from_secs(30),
        ..RabbitConfig::default()
    };
    if let Ok(url) = std::env::var("AMQP_URL") {
        config.url = url;
    }
    if std::env::var("TOPOLOGY").as_deref() == Ok("compat") {
        config.topology = Topology::Compat;
    }
    println!(
        "{:?} topology, {PUBLISHERS} publishers x {BATCHES} batches x {BATCH} messages, {RUNS} runs",
        config.topology
    );
    let mut publish = Vec::new();
    let mut consume = Vec::new();
    for r in 0..RUNS {
        let queue = format!("auditflow-throughput-{}-{r}", std::process::id());
        let (p, c) = run(&config, &queue).await?;
        println!("run {r}: publish {p:>9.0} msg/s   consume+ack {c:>9.0} msg/s");
        publish.push(p);
        consume.push(c);
    }
    println!(
        "median: publish (confirmed) {:.0} msg/s, consume+ack {:.0} msg/s",
        median(publish),
        median(consume)
    );
    Ok(())
}
