//! Throughput of `RedisWindowState::observe`: batches of 500 observations
//! spread over 1000 groups, one analyzer, median of 3 runs.
//!
//! ```text
//! cargo run --release -p auditflow-redis --example throughput [-- redis://127.0.0.1:6379 [events per run]]
//! ```
//!
//! Each run uses its own key prefix and deletes its keys afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auditflow_core::window::{
    Member, Observation, WindowError, WindowSource, WindowSpec, WindowState,
};
use auditflow_redis::{RedisConfig, RedisWindowState};
use chrono::{DateTime, Utc};
use uuid::Uuid;

const BATCH: usize = 500;
const GROUPS: u64 = 1000;
const RUNS: usize = 3;

/// No event store here: the first touch of each group after the epoch is
/// created queries this (empty) source once.
struct NoEvents;

#[async_trait]
impl WindowSource for NoEvents {
    async fn members(
        &self,
        _: &str,
        _: &str,
        _: DateTime<Utc>,
    ) -> Result<Vec<Member>, WindowError> {
        Ok(Vec::new())
    }
}

fn cleanup(url: &str, prefix: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_connection().unwrap();
    let keys: Vec<Vec<u8>> =
        redis::Commands::scan_match::<_, Vec<u8>>(&mut conn, format!("{prefix}*"))
            .unwrap()
            .filter_map(Result::ok)
            .collect();
    for chunk in keys.chunks(1000) {
        let _: () = redis::cmd("DEL").arg(chunk).query(&mut conn).unwrap();
    }
}

async fn run(url: &str, events: usize) -> (f64, usize) {
    let prefix = format!("auditflow-bench:{}:", Uuid::new_v4().simple());
    let config = RedisConfig {
        url: url.to_string(),
        key_prefix: prefix.clone(),
        command_timeout: Duration::from_secs(5),
        ..RedisConfig::default()
    };
    let state = RedisWindowState::new(config, Arc::new(NoEvents)).unwrap();
    state.check().await.unwrap();
    let spec = WindowSpec {
        window: Duration::from_secs(60),
        threshold: 5,
        cooldown: Duration::from_secs(60),
    };
    let start_time = Utc::now() - chrono::Duration::hours(1);
    let mut rng = xorshift(42);
    let observations: Vec<Observation> = (0..events)
        .map(|i| Observation {
            rule_id: "ANLY-SEC-001".to_string(),
            group_key: format!("user{}\u{1f}prod-web-01", rng() % GROUPS),
            event_id: Uuid::new_v4(),
            event_time: start_time + chrono::Duration::milliseconds(i as i64),
            spec,
        })
        .collect();
    // Warm-up (groups' first touch under the new epoch reads the source).
    let warm: Vec<Observation> = (0..GROUPS)
        .map(|g| Observation {
            group_key: format!("user{g}\u{1f}prod-web-01"),
            event_id: Uuid::new_v4(),
            event_time: start_time - chrono::Duration::hours(1),
            ..observations[0].clone()
        })
        .collect();
    for batch in warm.chunks(BATCH) {
        state.observe(batch).await.unwrap();
    }

    let started = Instant::now();
    let mut fired = 0;
    for batch in observations.chunks(BATCH) {
        fired += state
            .observe(batch)
            .await
            .unwrap()
            .iter()
            .filter(|d| d.fire)
            .count();
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    cleanup(url, &prefix);
    (rate, fired)
}

/// A tiny xorshift, to keep the example free of extra dependencies.
fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_string());
    let events: usize = args.next().map_or(100_000, |n| n.parse().unwrap());
    let mut rates = Vec::new();
    for i in 0..RUNS {
        let (rate, fired) = run(&url, events).await;
        println!(
            "run {}: {events} observations, {rate:.0} obs/s, {fired} fired",
            i + 1
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "median of {RUNS}: {:.0} observations/s (batches of {BATCH} across {GROUPS} groups)",
        rates[RUNS / 2]
    );
}
