//! Throughput of [`RabbitBroker`] against a real RabbitMQ.
//!
//! `cargo run --release -p auditflow-rabbitmq --example throughput`
//! (`AMQP_URL` overrides the default local guest URL; `TOPOLOGY=compat`
//! measures classic queues). Publishes with confirms from 32 concurrent
//! publishers in batches of 100, then consumes and acks everything; prints
//! the median of 3 runs. Each run uses a fresh queue, deleted afterwards.

use std::time::{Duration, Instant};

use auditflow_core::broker::{Broker, Message};
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
            Ok::<_, auditflow_core::broker::BrokerError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let publish_rate = total as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut sub = broker.subscribe(queue, 1000).await?;
    let mut seen = 0;
    while seen < total {
        let batch = sub.next_batch(500).await?;
        seen += batch.len();
        let tags: Vec<u64> = batch.iter().map(|d| d.tag).collect();
        sub.ack(&tags).await?;
    }
    let consume_rate = total as f64 / started.elapsed().as_secs_f64();
    drop(sub);

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
