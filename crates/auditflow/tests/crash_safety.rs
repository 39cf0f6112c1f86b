//! Crash safety of `auditflow up` under load and repeated `kill -9`.
//!
//! Starts the real binary as a child process on a temporary data directory,
//! sends ~24 000 events from concurrent HTTP clients that retry every request
//! (same body, same event ids) until it is answered 202, SIGKILLs the process
//! at random moments (at least [`MIN_KILLS`] times, while the load runs) and
//! restarts it each time on the same port. Once the load is acknowledged and
//! the pipeline has drained, it checks, against what was acknowledged:
//!
//! 1. every acknowledged event is stored exactly once, and nothing else is;
//! 2. the stored alerts are exactly those an independent oracle of the two
//!    default rules computes from the acknowledged events;
//! 3. the file channel (`<data_dir>/alerts.ndjson`) holds each of those alerts
//!    exactly once and nothing else;
//! 4. nothing was dead-lettered, and a final SIGTERM exits 0.
//!
//! The workload: bursts of 3-5 failed logins of one (user, host) within 60 s
//! (fire once, then cooldown), pairs (no fire), failures spread > 60 s apart
//! (no fire), groups with two bursts > 120 s apart (fire twice), one user on
//! two hosts, failures among successes, out-of-order bursts, the exact window
//! and cooldown boundaries, sensitive and near-miss file modifications, and
//! ~21 000 noise events in arrays / NDJSON of 50-200. Each (user, host) group
//! lives in exactly one request (an array in send order), so its processing
//! order is known to the oracle.
//!
//! The workload is generated from a seed, printed at the start; set
//! `CRASH_SAFETY_SEED=<u64>` to replay it (kill moments still depend on timing).
//! On failure the temporary directory (data, `auditflow.stderr.log`) is kept
//! and its path printed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditflow_core::alert_id_for;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use auditflow_chaos::process::{self, Launch, Platform};
use auditflow_chaos::read_api;
use auditflow_chaos::servers::free_port;
use auditflow_chaos::workload;
use read_api::{get_json, list_all};
use workload::{
    event_id, event_micros, oracle, str_field, Gen, Mix, Request, Unit, RULE_BURST, RULE_FILE,
};

/// Environment variable that fixes the workload seed.
const SEED_VAR: &str = "CRASH_SAFETY_SEED";
/// Concurrent HTTP clients.
const CLIENTS: usize = 12;
/// Kills that must happen while the load still runs.
const MIN_KILLS: usize = 5;
/// Upper bound on kills (the loop stops killing when the load is done).
const MAX_KILLS: usize = 16;
/// The requests are released over this long, so the load overlaps the kills
/// instead of outrunning them, in [`WAVES`] waves: each releases half of its
/// events at once (a backlog for analyze to chew on in big batches) and the
/// other half at an even pace (a steady stream of requests in flight).
const LOAD_PACE: Duration = Duration::from_secs(15);
const WAVES: usize = 6;
/// Time between a restart being ready and the next kill, in milliseconds.
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 500..=2500;
/// The whole load (every request answered 202) must finish within this.
const LOAD_DEADLINE: Duration = Duration::from_secs(150);
/// After the load: queues empty and the stored count stable within this.
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);

const EVENTS_QUEUE: &str = "audit_events";
const ALERTS_QUEUE: &str = "audit_alerts";

// ---------------------------------------------------------------------------
// The platform as a child process

/// Starts `auditflow up` on `port` (retrying only when the port could not be
/// bound again yet); returns once it printed its address and `/readyz` is 200.
async fn start_on(
    port: u16,
    data_dir: &Path,
    log: &Path,
    api: &reqwest::Client,
) -> Result<Platform, String> {
    let launch = Launch::up(
        Path::new(env!("CARGO_BIN_EXE_auditflow")),
        data_dir,
        log,
        &[],
    );
    let mut tries = 0;
    loop {
        match process::start(&launch, Some(port), api).await {
            Err(e) if e.contains("binding") && tries < 5 => {
                tries += 1;
                eprintln!("crash_safety: port {port} not free yet, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

// ---------------------------------------------------------------------------
// Load

#[derive(Default)]
struct Counters {
    in_flight: AtomicUsize,
    attempts: AtomicU64,
    retry_connection: AtomicU64,
    retry_5xx: AtomicU64,
    retry_429: AtomicU64,
    acked_events: AtomicUsize,
    acked_requests: AtomicUsize,
}

struct Load {
    requests: Vec<Request>,
    /// When each request may be sent, from `started` (paced by events).
    release: Vec<Duration>,
    started: Instant,
    next: AtomicUsize,
    url: String,
    deadline: Instant,
    counters: Counters,
}

enum Answer {
    Accepted(Vec<Uuid>),
    Retry,
    Fatal(String),
}

async fn post(client: &reqwest::Client, load: &Load, request: &Request) -> Answer {
    let c = &load.counters;
    let sent = client
        .post(&load.url)
        .header(reqwest::header::CONTENT_TYPE, request.content_type)
        .body(request.body.clone())
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(_) => {
            c.retry_connection.fetch_add(1, Ordering::Relaxed);
            return Answer::Retry;
        }
    };
    let status = response.status();
    let Ok(text) = response.text().await else {
        c.retry_connection.fetch_add(1, Ordering::Relaxed);
        return Answer::Retry;
    };
    if status == reqwest::StatusCode::ACCEPTED {
        let ids = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
            v["accepted"]
                .as_array()?
                .iter()
                .map(|id| id.as_str().and_then(|s| Uuid::parse_str(s).ok()))
                .collect::<Option<Vec<Uuid>>>()
        });
        return match ids {
            Some(ids) => Answer::Accepted(ids),
            None => Answer::Fatal(format!("202 with an unexpected body: {text}")),
        };
    }
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        c.retry_429.fetch_add(1, Ordering::Relaxed);
        return Answer::Retry;
    }
    if status.is_server_error() {
        c.retry_5xx.fetch_add(1, Ordering::Relaxed);
        return Answer::Retry;
    }
    Answer::Fatal(format!(
        "{} request answered {status}: {text}",
        request.kind
    ))
}

/// When the request starting at `fraction` of the events may be sent.
fn release_at(fraction: f64) -> Duration {
    let position = fraction * WAVES as f64;
    let wave = position.floor();
    let within = position - wave;
    let paced = if within < 0.5 {
        0.0
    } else {
        (within - 0.5) * 2.0
    };
    LOAD_PACE.mul_f64((wave + paced) / WAVES as f64)
}

/// One client: pulls requests in order and sends each until it is accepted.
/// Request `i` waits for its release time and for kill number
/// `i * (MIN_KILLS + 1) / n`, so the load cannot finish before `MIN_KILLS`
/// kills however fast the machine is, and the kills spread over it.
async fn client(
    load: Arc<Load>,
    mut kills: watch::Receiver<usize>,
    seed: u64,
) -> Result<Vec<Uuid>, String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked = Vec::new();
    let n = load.requests.len();
    let c = &load.counters;
    loop {
        let i = load.next.fetch_add(1, Ordering::SeqCst);
        if i >= n {
            return Ok(acked);
        }
        let gate = i * (MIN_KILLS + 1) / n;
        tokio::time::timeout_at(load.deadline.into(), kills.wait_for(|k| *k >= gate))
            .await
            .map_err(|_| format!("request {i} still waiting for kill #{gate} at the deadline"))?
            .map_err(|_| "kill loop gone".to_string())?;
        tokio::time::sleep_until((load.started + load.release[i]).into()).await;
        let request = &load.requests[i];
        loop {
            c.attempts.fetch_add(1, Ordering::Relaxed);
            c.in_flight.fetch_add(1, Ordering::SeqCst);
            let answer = post(&http, &load, request).await;
            c.in_flight.fetch_sub(1, Ordering::SeqCst);
            match answer {
                Answer::Accepted(ids) if ids == request.ids => {
                    acked.extend(ids);
                    c.acked_events
                        .fetch_add(request.ids.len(), Ordering::SeqCst);
                    c.acked_requests.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Answer::Accepted(ids) => {
                    return Err(format!(
                        "{} request {i}: 202 names {} ids, not the {} sent (or not in order)",
                        request.kind,
                        ids.len(),
                        request.ids.len()
                    ))
                }
                Answer::Fatal(message) => return Err(format!("request {i}: {message}")),
                Answer::Retry => {}
            }
            if Instant::now() > load.deadline {
                return Err(format!(
                    "{} request {i} not accepted before the load deadline",
                    request.kind
                ));
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..=120))).await;
        }
    }
}

// ---------------------------------------------------------------------------
// Read API

#[derive(Debug, Clone, Copy, Default)]
struct QueueStats {
    ready: u64,
    unacked: u64,
    dead_lettered: u64,
}

async fn queue_stats(
    api: &reqwest::Client,
    base: &str,
) -> Result<HashMap<String, QueueStats>, String> {
    let body = get_json(api, &format!("{base}/v1/queues")).await?;
    let mut out = HashMap::new();
    for q in body["queues"].as_array().cloned().unwrap_or_default() {
        let n = |key: &str| q[key].as_u64().unwrap_or(u64::MAX);
        out.insert(
            q["queue"].as_str().unwrap_or_default().to_string(),
            QueueStats {
                ready: n("ready"),
                unacked: n("unacked"),
                dead_lettered: n("dead_lettered"),
            },
        );
    }
    for queue in [EVENTS_QUEUE, ALERTS_QUEUE] {
        if !out.contains_key(queue) {
            return Err(format!("/v1/queues does not report {queue}: {body}"));
        }
    }
    Ok(out)
}

/// Polls until both queues are empty (nothing ready, nothing unacked) and the
/// stored event count is the same on two consecutive looks; returns the events.
async fn wait_drained(api: &reqwest::Client, base: &str) -> Result<Vec<Value>, String> {
    let deadline = Instant::now() + DRAIN_DEADLINE;
    let mut previous: Option<usize> = None;
    loop {
        let stats = queue_stats(api, base).await?;
        let empty = stats.values().all(|q| q.ready == 0 && q.unacked == 0);
        let last = if empty {
            let events = list_all(api, base, "/v1/events", "").await?;
            if previous == Some(events.len()) {
                return Ok(events);
            }
            previous = Some(events.len());
            format!("queues empty, {} events stored", events.len())
        } else {
            previous = None;
            format!("{stats:?}")
        };
        if Instant::now() > deadline {
            return Err(format!(
                "not drained within {DRAIN_DEADLINE:?}; last seen: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------
// Checks

fn ids_of(items: &[Value], key: &str) -> Vec<Uuid> {
    items
        .iter()
        .map(|item| {
            item[key]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .unwrap_or_default()
        })
        .collect()
}

fn duplicates(ids: &[Uuid]) -> Vec<(Uuid, usize)> {
    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for id in ids {
        *counts.entry(*id).or_default() += 1;
    }
    let mut dups: Vec<(Uuid, usize)> = counts.into_iter().filter(|(_, n)| *n > 1).collect();
    dups.sort();
    dups
}

fn sample<T: std::fmt::Debug>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<T> = items.into_iter().collect();
    let shown: Vec<&T> = items.iter().take(5).collect();
    format!("{} (e.g. {shown:?})", items.len())
}

/// A unit's failed logins with their times and who fired, for failure reports.
fn describe_unit(unit: &Unit, expected: &[Uuid], stored: &HashSet<Uuid>) -> String {
    let t0 = unit.events.iter().map(event_micros).min().unwrap_or(0);
    let rows: Vec<String> = unit
        .events
        .iter()
        .map(|e| {
            let id = event_id(e);
            let alert = alert_id_for(RULE_BURST, id);
            format!(
                "{} {}@{} +{:.6}s {} oracle_fires={} platform_fired={}",
                id,
                str_field(e, "user_id"),
                str_field(e, "server_hostname"),
                (event_micros(e) - t0) as f64 / 1e6,
                str_field(e, "action_result"),
                expected.contains(&id),
                stored.contains(&alert)
            )
        })
        .collect();
    format!("unit {}:\n      {}", unit.kind, rows.join("\n      "))
}

/// Keeps the temporary directory (data and stderr log) for a post-mortem.
fn keep_dir_and_panic(dir: tempfile::TempDir, seed: u64, message: String) -> ! {
    let path: PathBuf = dir.keep();
    panic!(
        "{message}\n(seed {seed}; data and stderr log kept in {})",
        path.display()
    );
}

// ---------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_event_and_alert_survives_repeated_kill_9_under_load() {
    let test_started = Instant::now();
    let seed = match std::env::var(SEED_VAR) {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{SEED_VAR}={s:?}: {e}")),
        Err(_) => rand::rng().random(),
    };
    println!("crash_safety: seed {seed} (replay the workload with {SEED_VAR}={seed})");

    let units = workload::generate(&mut Gen::new(seed), &Mix::CRASH_SAFETY);
    let expected = oracle(&units);
    let requests: Vec<Request> = units.iter().map(Unit::request).collect();
    let sent_events: HashMap<Uuid, &Value> = units
        .iter()
        .flat_map(|u| u.events.iter().map(|e| (event_id(e), e)))
        .collect();
    let total_events: usize = units.iter().map(|u| u.events.len()).sum();
    assert_eq!(sent_events.len(), total_events, "generated ids are unique");
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for unit in &units {
        match kinds.iter_mut().find(|(k, _)| *k == unit.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((unit.kind, 1)),
        }
    }
    kinds.sort();
    println!(
        "crash_safety: workload {total_events} events in {} requests; units {kinds:?}; \
         expected alerts {RULE_BURST} {} + {RULE_FILE} {}",
        requests.len(),
        expected.burst_alerts,
        expected.file_alerts
    );
    assert!(total_events >= 20_000);

    let dir = tempfile::Builder::new()
        .prefix("auditflow-crash-safety-")
        .tempdir()
        .expect("temp dir");
    let data_dir = dir.path().join("data");
    let log = dir.path().join("auditflow.stderr.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let api = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");

    let mut server = match start_on(port, &data_dir, &log, &api).await {
        Ok(server) => server,
        Err(e) => keep_dir_and_panic(dir, seed, e),
    };

    // --- Load, with kills -------------------------------------------------
    let load_started = Instant::now();
    let mut release = Vec::with_capacity(requests.len());
    let mut before = 0;
    for request in &requests {
        release.push(release_at(before as f64 / total_events as f64));
        before += request.ids.len();
    }
    let load = Arc::new(Load {
        requests,
        release,
        started: load_started,
        next: AtomicUsize::new(0),
        url: format!("{base}/v1/events"),
        deadline: load_started + LOAD_DEADLINE,
        counters: Counters::default(),
    });
    let (kills_tx, kills_rx) = watch::channel(0usize);
    let load_done = CancellationToken::new();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(client(
                Arc::clone(&load),
                kills_rx.clone(),
                seed.wrapping_add(1 + c as u64),
            ))
        })
        .collect();
    let loader = {
        let done = load_done.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            for handle in clients {
                results.push(
                    handle
                        .await
                        .unwrap_or_else(|e| Err(format!("client task failed: {e}"))),
                );
            }
            done.cancel();
            results
        })
    };

    let mut problems: Vec<String> = Vec::new();
    let mut kill_rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut kill_log: Vec<String> = Vec::new();
    let mut kills_in_flight = 0;
    let mut kills = 0;
    while kills < MAX_KILLS {
        let delay = Duration::from_millis(kill_rng.random_range(KILL_AFTER_MS));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = load_done.cancelled() => break,
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            problems.push(format!(
                "auditflow exited on its own ({status}) before kill #{}",
                kills + 1
            ));
        }
        // What the pipeline holds just before the kill (best effort, for the report).
        let backlog = match tokio::time::timeout(
            Duration::from_millis(200),
            queue_stats(&api, &base),
        )
        .await
        {
            Ok(Ok(stats)) => [EVENTS_QUEUE, ALERTS_QUEUE]
                .map(|q| {
                    let s = stats[q];
                    format!("{q} {}+{}", s.ready, s.unacked)
                })
                .join(", "),
            _ => "queues unknown".to_string(),
        };
        if kills % 2 == 0 {
            // Every other kill waits (briefly) for a request to be in flight.
            let until = Instant::now() + Duration::from_secs(1);
            while load.counters.in_flight.load(Ordering::SeqCst) == 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let in_flight = load.counters.in_flight.load(Ordering::SeqCst);
        let acked = load.counters.acked_events.load(Ordering::SeqCst);
        server.kill9().await;
        kills += 1;
        if in_flight > 0 {
            kills_in_flight += 1;
        }
        let killed_at = load_started.elapsed();
        let restarted = Instant::now();
        server = match start_on(port, &data_dir, &log, &api).await {
            Ok(server) => server,
            Err(e) => keep_dir_and_panic(dir, seed, format!("after kill #{kills}: {e}")),
        };
        kill_log.push(format!(
            "#{kills} at {:.1}s: {in_flight} requests in flight, {acked} events acked, \
             {backlog} ready+unacked; ready again in {:.2}s",
            killed_at.as_secs_f64(),
            restarted.elapsed().as_secs_f64()
        ));
        kills_tx.send_replace(kills);
    }
    let results = loader.await.expect("loader task");
    let load_time = load_started.elapsed();
    let mut acked: Vec<Uuid> = Vec::new();
    for result in results {
        match result {
            Ok(ids) => acked.extend(ids),
            Err(e) => problems.push(format!("client: {e}")),
        }
    }
    let c = &load.counters;
    println!(
        "crash_safety: load {:.1}s: {} of {} requests / {} events acked; {} attempts \
         (retries: {} connection, {} 5xx, {} 429)",
        load_time.as_secs_f64(),
        c.acked_requests.load(Ordering::SeqCst),
        load.requests.len(),
        acked.len(),
        c.attempts.load(Ordering::SeqCst),
        c.retry_connection.load(Ordering::SeqCst),
        c.retry_5xx.load(Ordering::SeqCst),
        c.retry_429.load(Ordering::SeqCst),
    );
    println!("crash_safety: {kills} kills ({kills_in_flight} with requests in flight):");
    for line in &kill_log {
        println!("  {line}");
    }
    if !problems.is_empty() {
        let _ = server.sigterm_and_wait().await;
        keep_dir_and_panic(
            dir,
            seed,
            format!("load failed:\n  {}", problems.join("\n  ")),
        );
    }
    if kills < MIN_KILLS {
        problems.push(format!(
            "only {kills} kills during the load, wanted {MIN_KILLS}"
        ));
    }
    if kills_in_flight == 0 {
        problems.push("no kill landed while requests were in flight".into());
    }

    // --- Drain --------------------------------------------------------------
    let drain_started = Instant::now();
    let stored_events = match wait_drained(&api, &base).await {
        Ok(events) => events,
        Err(e) => {
            let _ = server.sigterm_and_wait().await;
            keep_dir_and_panic(dir, seed, e);
        }
    };
    let drain_time = drain_started.elapsed();
    let stored_alerts = list_all(&api, &base, "/v1/alerts", "").await;
    let stats = queue_stats(&api, &base).await;

    // 1. Every acked event stored exactly once, nothing else.
    let acked_set: HashSet<Uuid> = acked.iter().copied().collect();
    if acked_set.len() != acked.len() {
        problems.push(format!(
            "an event id was acked by two requests: {}",
            sample(duplicates(&acked))
        ));
    }
    if acked_set.len() != sent_events.len() {
        problems.push(format!(
            "{} events sent but {} acked",
            sent_events.len(),
            acked_set.len()
        ));
    }
    let stored_ids = ids_of(&stored_events, "event_id");
    let stored_set: HashSet<Uuid> = stored_ids.iter().copied().collect();
    let dups = duplicates(&stored_ids);
    if !dups.is_empty() {
        problems.push(format!("events stored more than once: {}", sample(dups)));
    }
    let missing: Vec<&Uuid> = acked_set.difference(&stored_set).collect();
    if !missing.is_empty() {
        problems.push(format!("acked events not stored: {}", sample(missing)));
    }
    let extra: Vec<&Uuid> = stored_set.difference(&acked_set).collect();
    if !extra.is_empty() {
        problems.push(format!("stored events never acked: {}", sample(extra)));
    }
    let altered: Vec<Uuid> = stored_events
        .iter()
        .filter(|stored| {
            let id = event_id(stored);
            sent_events.get(&id).is_some_and(|sent| {
                event_micros(stored) != event_micros(sent)
                    || ["user_id", "server_hostname", "event_type", "action_result"]
                        .iter()
                        .any(|k| str_field(stored, k) != str_field(sent, k))
            })
        })
        .map(event_id)
        .collect();
    if !altered.is_empty() {
        problems.push(format!(
            "stored events differ from those sent: {}",
            sample(altered)
        ));
    }

    // 2. Stored alerts are exactly the oracle's.
    let expected_ids: HashSet<Uuid> = expected.alerts.keys().copied().collect();
    let mut stored_alert_count = 0;
    let mut stored_alert_set = HashSet::new();
    match &stored_alerts {
        Ok(alerts) => {
            stored_alert_count = alerts.len();
            let ids = ids_of(alerts, "alert_id");
            stored_alert_set = ids.iter().copied().collect();
            let dups = duplicates(&ids);
            if !dups.is_empty() {
                problems.push(format!("alerts stored more than once: {}", sample(dups)));
            }
            let wrong: Vec<Uuid> = alerts
                .iter()
                .filter(|a| {
                    let id = a["alert_id"].as_str().and_then(|s| Uuid::parse_str(s).ok());
                    id.and_then(|id| expected.alerts.get(&id))
                        .is_some_and(|(rule, event)| {
                            a["analysis_rule"]["rule_id"].as_str() != Some(rule)
                                || a["correlation_id"].as_str() != Some(event.to_string().as_str())
                        })
                })
                .map(|a| {
                    a["alert_id"]
                        .as_str()
                        .and_then(|s| Uuid::parse_str(s).ok())
                        .unwrap_or_default()
                })
                .collect();
            if !wrong.is_empty() {
                problems.push(format!(
                    "alerts with the wrong rule or correlation id: {}",
                    sample(wrong)
                ));
            }
        }
        Err(e) => problems.push(format!("listing alerts: {e}")),
    }
    if stored_alerts.is_ok() {
        let missing: Vec<(&str, Uuid)> = expected_ids
            .difference(&stored_alert_set)
            .map(|id| (expected.alerts[id].0, expected.alerts[id].1))
            .collect();
        let extra: Vec<&Uuid> = stored_alert_set.difference(&expected_ids).collect();
        if !missing.is_empty() || !extra.is_empty() {
            // Name the units involved, with each failed login's decision.
            let mut suspects: Vec<usize> = Vec::new();
            let by_alert: HashMap<Uuid, Uuid> = sent_events
                .keys()
                .map(|e| (alert_id_for(RULE_BURST, *e), *e))
                .collect();
            let extra_events: HashSet<Uuid> = extra
                .iter()
                .filter_map(|a| by_alert.get(*a).copied())
                .collect();
            for (u, unit) in units.iter().enumerate() {
                let involved = unit.events.iter().any(|e| {
                    let id = event_id(e);
                    missing
                        .iter()
                        .any(|(rule, ev)| *rule == RULE_BURST && *ev == id)
                        || extra_events.contains(&id)
                });
                if involved && suspects.len() < 5 {
                    suspects.push(u);
                }
            }
            let described: Vec<String> = suspects
                .iter()
                .map(|&u| describe_unit(&units[u], &expected.fired[u], &stored_alert_set))
                .collect();
            problems.push(format!(
                "stored alerts differ from the oracle: missing {} ({RULE_FILE}: {}), extra {}\n    {}",
                sample(&missing),
                missing.iter().filter(|(r, _)| *r == RULE_FILE).count(),
                sample(&extra),
                described.join("\n    ")
            ));
        }
    }

    // 3. The file channel wrote each expected alert exactly once, nothing else.
    let file = data_dir.join("alerts.ndjson");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let mut file_ids = Vec::new();
    let mut bad_lines = 0;
    for line in text.lines() {
        match serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v["alert_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()))
        {
            Some(id) => file_ids.push(id),
            None => bad_lines += 1,
        }
    }
    if bad_lines > 0 || !(text.is_empty() || text.ends_with('\n')) {
        problems.push(format!(
            "{}: {bad_lines} lines are not alerts, ends with newline: {}",
            file.display(),
            text.ends_with('\n')
        ));
    }
    let file_dups = duplicates(&file_ids);
    if !file_dups.is_empty() {
        problems.push(format!(
            "alerts written to the file more than once: {}",
            sample(file_dups)
        ));
    }
    let file_set: HashSet<Uuid> = file_ids.iter().copied().collect();
    let missing: Vec<&Uuid> = expected_ids.difference(&file_set).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "alerts never written to the file: {}",
            sample(missing)
        ));
    }
    let extra: Vec<&Uuid> = file_set.difference(&expected_ids).collect();
    if !extra.is_empty() {
        problems.push(format!("unexpected alerts in the file: {}", sample(extra)));
    }

    // 4. Nothing dead-lettered.
    match &stats {
        Ok(stats) => {
            let dead: Vec<(&String, u64)> = stats
                .iter()
                .filter(|(_, q)| q.dead_lettered > 0)
                .map(|(name, q)| (name, q.dead_lettered))
                .collect();
            if !dead.is_empty() {
                let letters = get_json(&api, &format!("{base}/v1/dead-letters?limit=5"))
                    .await
                    .map(|v| {
                        v["items"]
                            .as_array()
                            .map(|items| {
                                items
                                    .iter()
                                    .map(|i| {
                                        format!(
                                            "{} {}: {}",
                                            i["queue"], i["message_id"], i["reason"]
                                        )
                                    })
                                    .collect::<Vec<_>>()
                            })
                            .unwrap_or_default()
                    })
                    .unwrap_or_default();
                problems.push(format!("dead letters: {dead:?}; e.g. {letters:?}"));
            }
        }
        Err(e) => problems.push(format!("queue stats: {e}")),
    }

    // 5. Graceful shutdown.
    match server.sigterm_and_wait().await {
        Ok(status) if status.success() => {}
        Ok(status) => problems.push(format!(
            "SIGTERM: auditflow exited with {status}; stderr:\n{}",
            server.log_tail()
        )),
        Err(e) => problems.push(format!("SIGTERM: {e}")),
    }

    println!(
        "crash_safety: drained in {:.1}s; stored {} events, {} alerts (expected {}), \
         {} file lines; {} starts; total {:.1}s",
        drain_time.as_secs_f64(),
        stored_events.len(),
        stored_alert_count,
        expected_ids.len(),
        file_ids.len(),
        kills + 1,
        test_started.elapsed().as_secs_f64()
    );
    if !problems.is_empty() {
        keep_dir_and_panic(
            dir,
            seed,
            format!("crash safety violated:\n  {}", problems.join("\n  ")),
        );
    }
}
