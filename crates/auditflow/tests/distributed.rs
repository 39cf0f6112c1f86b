//! AuditFlow split into one process per role on the real backends
//! (RabbitMQ, PostgreSQL, Redis), as it is deployed.
//!
//! Each test gets its own RabbitMQ vhost, PostgreSQL schema and Redis key
//! prefix (`af_test_<tag>_<random>`), passed to the processes through
//! `AUDITFLOW_POSTGRES__SCHEMA` and `AUDITFLOW_REDIS__KEY_PREFIX`; all three
//! are removed at the end by a drop guard (also on failure, when the
//! temporary directory with every process's stderr log is kept instead).
//!
//! 1. `split_roles_...`: 1 ingest, 2 analyze (single active consumer: one
//!    works, one stands by), 2 notify (competing), 1 api. ~22 000 events from
//!    concurrent HTTP clients; midway the active analyze replica and one
//!    notify replica are SIGKILLed. Checked against the independent oracle
//!    of `crash_safety.rs`: every acked event stored once, the stored alerts
//!    are exactly the oracle's, each notify replica's `alerts.ndjson` holds
//!    each alert at most once and their union holds every one; an alert in
//!    both files must involve the killed replica (written just before its
//!    kill, before the delivery record).
//! 2. `legacy_python_generator_...`: compat topology; events published the
//!    way the earlier Python generator does are analysed and notified.
//! 3. `poison_messages_...`: undecodable, oversize or unstorable (U+0000)
//!    events published straight to the quorum queue are dead-lettered with a
//!    reason, counted, and never block the good events around them;
//!    `poison_alerts_...`: the same for alerts reaching notify.
//!
//! `DISTRIBUTED_SEED=<u64>` replays the workload of test 1.

use auditflow_chaos::read_api;
use auditflow_chaos::workload;
mod split_support;
use read_api::{get_json, list_all};
use split_support::{
    free_port, http_client, log_tail, start, stop_all, try_start, Isolation, Proc,
};

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditflow_core::alert_id_for;
use futures::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;
use workload::{Request, RULE_BURST, RULE_FILE};

const EVENTS_QUEUE: &str = "audit_events";
const ALERTS_QUEUE: &str = "audit_alerts";
/// Environment variable that fixes the workload seed of test 1.
const SEED_VAR: &str = "DISTRIBUTED_SEED";
/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(150);

// ---------------------------------------------------------------------------
// HTTP helpers

/// `/v1/queues` of the api process: queue -> (ready, unacked, dead_lettered).
async fn api_queues(
    http: &reqwest::Client,
    base: &str,
) -> Result<HashMap<String, (u64, u64, u64)>, String> {
    let body = get_json(http, &format!("{base}/v1/queues")).await?;
    let mut out = HashMap::new();
    for q in body["queues"].as_array().cloned().unwrap_or_default() {
        let n = |key: &str| q[key].as_u64().unwrap_or(u64::MAX);
        out.insert(
            q["queue"].as_str().unwrap_or_default().to_string(),
            (n("ready"), n("unacked"), n("dead_lettered")),
        );
    }
    for queue in [EVENTS_QUEUE, ALERTS_QUEUE] {
        if !out.contains_key(queue) {
            return Err(format!("/v1/queues does not report {queue}: {body}"));
        }
    }
    Ok(out)
}

/// Sum of the samples of metric `name` (e.g. `auditflow_events_processed_total`)
/// whose labels include every `labels` pair; 0 when there is none.
async fn metric(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> Result<f64, String> {
    let url = format!("{base}/metrics");
    let text = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
        .text()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.split_once("} ") {
                Some(parts) => parts,
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(value) => ("", value),
                None => continue,
            },
        };
        if labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            sum += value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    Ok(sum)
}

async fn processed(http: &reqwest::Client, proc: &Proc, result: &str) -> u64 {
    metric(
        http,
        &proc.base,
        "auditflow_events_processed_total",
        &[("result", result)],
    )
    .await
    .unwrap_or(0.0) as u64
}

async fn file_deliveries(http: &reqwest::Client, proc: &Proc) -> u64 {
    metric(
        http,
        &proc.base,
        "auditflow_notifications_total",
        &[("channel", "file"), ("result", "delivered")],
    )
    .await
    .unwrap_or(0.0) as u64
}

// ---------------------------------------------------------------------------
// Checks

fn uuid_of(item: &Value, key: &str) -> Uuid {
    item[key]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_default()
}

fn ids_of(items: &[Value], key: &str) -> Vec<Uuid> {
    items.iter().map(|item| uuid_of(item, key)).collect()
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

/// The alert ids of an `alerts.ndjson`, in file order, and the number of
/// lines that are not alerts (a missing file is empty).
fn read_alert_file(path: &Path) -> (Vec<Uuid>, usize, bool) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut ids = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        match serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v["alert_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()))
        {
            Some(id) => ids.push(id),
            None => bad += 1,
        }
    }
    (ids, bad, text.is_empty() || text.ends_with('\n'))
}

/// A request's events with their times and which fired ANLY-SEC-001 per the
/// oracle and per the platform, for failure reports.
fn describe_unit(
    unit: &workload::Unit,
    expected: &HashSet<Uuid>,
    stored: &HashSet<Uuid>,
) -> String {
    let t0 = unit
        .events
        .iter()
        .map(workload::event_micros)
        .min()
        .unwrap_or(0);
    let rows: Vec<String> = unit
        .events
        .iter()
        .map(|e| {
            let alert = alert_id_for(RULE_BURST, workload::event_id(e));
            format!(
                "{} {}@{} +{:.6}s {} oracle_fires={} platform_fired={}",
                workload::event_id(e),
                workload::str_field(e, "user_id"),
                workload::str_field(e, "server_hostname"),
                (workload::event_micros(e) - t0) as f64 / 1e6,
                workload::str_field(e, "action_result"),
                expected.contains(&alert),
                stored.contains(&alert)
            )
        })
        .collect();
    format!("{} request:\n      {}", unit.kind, rows.join("\n      "))
}

// ---------------------------------------------------------------------------
// Raw AMQP publishing

/// How a raw message is put on the wire.
enum Wire {
    /// Like the earlier Python generator: declares the durable classic queue
    /// with no arguments, then default exchange, delivery mode 2, nothing
    /// else, no publisher confirms.
    Legacy,
    /// Like AuditFlow's own publisher, to the queue AuditFlow declared (not
    /// declared here): persistent, JSON, message id and correlation header,
    /// confirmed.
    Ours,
}

/// Publishes `(message id, body)` pairs to `queue` on the default exchange.
async fn publish_raw(url: &str, queue: &str, wire: Wire, messages: &[(String, Vec<u8>)]) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("AMQP connection");
    let ch = conn.create_channel().await.expect("AMQP channel");
    match wire {
        Wire::Legacy => {
            ch.queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("the legacy declaration (classic, durable, no arguments) is accepted");
            for (_, body) in messages {
                ch.basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .expect("publish");
            }
        }
        Wire::Ours => {
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("confirm mode");
            for (id, body) in messages {
                let mut headers = FieldTable::default();
                headers.insert(
                    "x-correlation-id".into(),
                    AMQPValue::LongString(LongString::from(id.as_str())),
                );
                let confirm = ch
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        body,
                        BasicProperties::default()
                            .with_delivery_mode(2)
                            .with_content_type("application/json".into())
                            .with_message_id(id.as_str().into())
                            .with_headers(headers),
                    )
                    .await
                    .expect("publish")
                    .await
                    .expect("confirm");
                assert!(
                    matches!(confirm, Confirmation::Ack(None)),
                    "publish of {id} not acked (or returned): {confirm:?}"
                );
            }
        }
    }
    conn.close(200, "bye".into()).await.expect("AMQP close");
}

fn arguments_of(row: &Value) -> Vec<(String, Value)> {
    row["arguments"]
        .as_array()
        .map(|args| {
            args.iter()
                .map(|a| (a[0].as_str().unwrap_or_default().to_string(), a[2].clone()))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Test 1: split roles under kill -9

/// Concurrent HTTP clients.
const CLIENTS: usize = 8;
/// The requests are released evenly (by events) over this long, so the kills
/// land while the load runs.
const LOAD_PACE: Duration = Duration::from_secs(12);
/// Every request answered 202 within this.
const LOAD_DEADLINE: Duration = Duration::from_secs(75);
/// Kill the active analyze replica once this fraction of the events is processed.
const ANALYZE_KILL_AT: f64 = 0.35;
/// Kill a notify replica once this fraction of the expected alerts is delivered.
const NOTIFY_KILL_AT: f64 = 0.35;
/// After the load: queues empty and the stored counts stable within this.
const DRAIN_DEADLINE: Duration = Duration::from_secs(90);

#[derive(Default)]
struct Counters {
    attempts: AtomicU64,
    retries: AtomicU64,
    acked_events: AtomicUsize,
}

struct Load {
    requests: Vec<Request>,
    release: Vec<Duration>,
    started: Instant,
    next: AtomicUsize,
    url: String,
    counters: Counters,
}

/// One client: pulls requests in order and sends each (same body, same ids)
/// until it is answered 202; the ids acked.
async fn client(load: Arc<Load>, seed: u64) -> Result<Vec<Uuid>, String> {
    use rand::SeedableRng;
    let http = http_client();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let deadline = load.started + LOAD_DEADLINE;
    let mut acked = Vec::new();
    let c = &load.counters;
    loop {
        let i = load.next.fetch_add(1, Ordering::SeqCst);
        let Some(request) = load.requests.get(i) else {
            return Ok(acked);
        };
        tokio::time::sleep_until((load.started + load.release[i]).into()).await;
        loop {
            c.attempts.fetch_add(1, Ordering::Relaxed);
            let sent = http
                .post(&load.url)
                .header(reqwest::header::CONTENT_TYPE, request.content_type)
                .body(request.body.clone())
                .send()
                .await;
            let answer = match sent {
                Ok(response) => {
                    let status = response.status();
                    response.text().await.ok().map(|text| (status, text))
                }
                Err(_) => None,
            };
            match answer {
                Some((status, text)) if status == reqwest::StatusCode::ACCEPTED => {
                    let ids = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                        v["accepted"]
                            .as_array()?
                            .iter()
                            .map(|id| id.as_str().and_then(|s| Uuid::parse_str(s).ok()))
                            .collect::<Option<Vec<Uuid>>>()
                    });
                    if ids.as_ref() != Some(&request.ids) {
                        return Err(format!(
                            "{} request {i}: 202 does not name the ids sent: {text}",
                            request.kind
                        ));
                    }
                    acked.extend(&request.ids);
                    c.acked_events
                        .fetch_add(request.ids.len(), Ordering::SeqCst);
                    break;
                }
                Some((status, text))
                    if !(status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS) =>
                {
                    return Err(format!(
                        "{} request {i} answered {status}: {text}",
                        request.kind
                    ));
                }
                _ => {}
            }
            c.retries.fetch_add(1, Ordering::Relaxed);
            if Instant::now() > deadline {
                return Err(format!(
                    "{} request {i} not accepted within {LOAD_DEADLINE:?}",
                    request.kind
                ));
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..=120))).await;
        }
    }
}

/// What happened at one kill.
#[derive(Debug)]
struct Kill {
    victim: String,
    at: Duration,
    acked: usize,
    /// Events processed (ok) by each analyze replica, or alerts delivered to
    /// the file by each notify replica, just before the kill.
    counts: Vec<(String, u64)>,
}

impl std::fmt::Display for Kill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SIGKILL {} at {:.1}s ({} events acked by ingest; just before: {:?})",
            self.victim,
            self.at.as_secs_f64(),
            self.acked,
            self.counts
        )
    }
}

/// Polls until both queues are empty per the api process's `/v1/queues` and
/// per RabbitMQ itself (the api process's `unacked` only counts its own
/// deliveries), and the stored event and alert counts are the same on two
/// consecutive looks; returns (events, alerts, observations).
async fn wait_drained(
    http: &reqwest::Client,
    api: &str,
    iso: &Isolation,
) -> Result<(Vec<Value>, Vec<Value>, Vec<String>), String> {
    let deadline = Instant::now() + DRAIN_DEADLINE;
    let mut previous: Option<(usize, usize)> = None;
    let mut observations = Vec::new();
    for _ in 0..10_000 {
        let ours = api_queues(http, api).await?;
        let rabbit = iso.queues().await?;
        let n = |q: &str, key: &str| rabbit.get(q).and_then(|r| r[key].as_u64()).unwrap_or(0);
        for q in [EVENTS_QUEUE, ALERTS_QUEUE] {
            let (api_unacked, rabbit_unacked) = (ours[q].1, n(q, "messages_unacknowledged"));
            if rabbit_unacked > 0 && api_unacked == 0 && observations.len() < 3 {
                observations.push(format!(
                    "{q}: /v1/queues said unacked 0 while RabbitMQ had {rabbit_unacked} unacked \
                     (ready {} / {})",
                    ours[q].0,
                    n(q, "messages_ready")
                ));
            }
        }
        let empty = [EVENTS_QUEUE, ALERTS_QUEUE].iter().all(|q| {
            ours[*q].0 == 0
                && ours[*q].1 == 0
                && n(q, "messages_ready") == 0
                && n(q, "messages_unacknowledged") == 0
        });
        let last = if empty {
            let events = list_all(http, api, "/v1/events", "").await?;
            let alerts = list_all(http, api, "/v1/alerts", "").await?;
            let counts = (events.len(), alerts.len());
            if previous == Some(counts) {
                return Ok((events, alerts, observations));
            }
            previous = Some(counts);
            format!("queues empty, {counts:?} events/alerts stored")
        } else {
            previous = None;
            format!("api {ours:?}; rabbit {rabbit:?}")
        };
        if Instant::now() > deadline {
            return Err(format!(
                "not drained within {DRAIN_DEADLINE:?}; last seen: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err("drain loop bound".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_roles_two_analyzers_two_notifiers_lose_nothing_and_duplicate_nothing() {
    let test_started = Instant::now();
    let seed = match std::env::var(SEED_VAR) {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{SEED_VAR}={s:?}: {e}")),
        Err(_) => rand::rng().random(),
    };
    println!("distributed: seed {seed} (replay the workload with {SEED_VAR}={seed})");
    let units = workload::generate(&mut workload::Gen::new(seed), &workload::Mix::SPLIT_ROLES);
    let expected = workload::oracle(&units);
    let requests: Vec<Request> = units.iter().map(workload::Unit::request).collect();
    let sent_events: HashMap<Uuid, &Value> = units
        .iter()
        .flat_map(|u| u.events.iter().map(|e| (workload::event_id(e), e)))
        .collect();
    let total_events: usize = units.iter().map(|u| u.events.len()).sum();
    assert_eq!(sent_events.len(), total_events, "generated ids are unique");
    assert!(total_events >= 20_000, "{total_events} events");
    let expected_ids: HashSet<Uuid> = expected.alerts.keys().copied().collect();
    println!(
        "distributed: workload {total_events} events in {} requests; expected alerts \
         {RULE_BURST} {} + {RULE_FILE} {}",
        requests.len(),
        expected.burst_alerts,
        expected.file_alerts
    );

    let iso = Isolation::new("split");
    let http = http_client();
    // analyze-a first, so that it is the active consumer and the topology
    // and the schema exist; then everything else at once.
    let mut procs = vec![start(&iso, "analyze", "analyze-a", &[], &http).await];
    let rest = [
        ("analyze", "analyze-b"),
        ("ingest", "ingest"),
        ("notify", "notify-1"),
        ("notify", "notify-2"),
        ("api", "api"),
    ];
    procs.extend(
        join_all(
            rest.iter()
                .map(|(role, name)| start(&iso, role, name, &[], &http)),
        )
        .await,
    );
    let index = |name: &str| {
        procs
            .iter()
            .position(|p| p.name == name)
            .expect("known process")
    };
    let (ingest, api) = (
        procs[index("ingest")].base.clone(),
        procs[index("api")].base.clone(),
    );
    println!(
        "distributed: 6 processes ready in {:.1}s",
        test_started.elapsed().as_secs_f64()
    );
    let mut problems: Vec<String> = Vec::new();
    match iso.queues().await {
        Ok(queues) => {
            let sac = queues
                .get(EVENTS_QUEUE)
                .map(arguments_of)
                .unwrap_or_default()
                .into_iter()
                .any(|(k, v)| k == "x-single-active-consumer" && v == json!(true));
            if !sac {
                problems.push(format!(
                    "{EVENTS_QUEUE} is not declared with x-single-active-consumer: {:?}",
                    queues.get(EVENTS_QUEUE)
                ));
            }
        }
        Err(e) => problems.push(e),
    }

    // --- Load, with one kill of each kind ---------------------------------
    let load_started = Instant::now();
    let mut release = Vec::with_capacity(requests.len());
    let mut before = 0;
    for request in &requests {
        release.push(LOAD_PACE.mul_f64(before as f64 / total_events as f64));
        before += request.ids.len();
    }
    let load = Arc::new(Load {
        requests,
        release,
        started: load_started,
        next: AtomicUsize::new(0),
        url: format!("{ingest}/v1/events"),
        counters: Counters::default(),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(client(Arc::clone(&load), seed.wrapping_add(1 + c as u64))))
        .collect();
    let loader = tokio::spawn(join_all(clients));

    let analyzers = [index("analyze-a"), index("analyze-b")];
    let notifiers = [index("notify-1"), index("notify-2")];
    let mut analyze_kill: Option<(Kill, usize)> = None;
    let mut notify_kill: Option<(Kill, usize)> = None;
    let mut last_deliveries = [0u64; 2];
    let kill_deadline = load_started + LOAD_DEADLINE;
    while analyze_kill.is_none() || notify_kill.is_none() {
        if Instant::now() > kill_deadline {
            problems.push(format!(
                "kills not done within {LOAD_DEADLINE:?}: analyze {:?}, notify {:?}",
                analyze_kill.as_ref().map(|k| &k.0),
                notify_kill.as_ref().map(|k| &k.0)
            ));
            break;
        }
        tokio::time::sleep(POLL).await;
        let acked = load.counters.acked_events.load(Ordering::SeqCst);
        if analyze_kill.is_none() {
            let mut counts = Vec::new();
            for &i in &analyzers {
                counts.push(processed(&http, &procs[i], "ok").await);
            }
            let done: u64 = counts.iter().sum();
            if done as f64 >= ANALYZE_KILL_AT * total_events as f64 {
                // The active replica is the one that has processed events.
                let active = if counts[0] >= counts[1] { 0 } else { 1 };
                let victim = analyzers[active];
                procs[victim].kill9().await;
                analyze_kill = Some((
                    Kill {
                        victim: procs[victim].name.clone(),
                        at: load_started.elapsed(),
                        acked,
                        counts: analyzers
                            .iter()
                            .zip(&counts)
                            .map(|(&i, &n)| (procs[i].name.clone(), n))
                            .collect(),
                    },
                    active,
                ));
            }
        }
        if notify_kill.is_none() {
            let mut counts = Vec::new();
            for &i in &notifiers {
                counts.push(file_deliveries(&http, &procs[i]).await);
            }
            let done: u64 = counts.iter().sum();
            if done as f64 >= NOTIFY_KILL_AT * expected_ids.len() as f64 {
                // The replica busiest since the last look, likely mid-batch.
                let delta = |k: usize| counts[k].saturating_sub(last_deliveries[k]);
                let busy = if (delta(0), counts[0]) >= (delta(1), counts[1]) {
                    0
                } else {
                    1
                };
                let victim = notifiers[busy];
                procs[victim].kill9().await;
                notify_kill = Some((
                    Kill {
                        victim: procs[victim].name.clone(),
                        at: load_started.elapsed(),
                        acked,
                        counts: notifiers
                            .iter()
                            .zip(&counts)
                            .map(|(&i, &n)| (procs[i].name.clone(), n))
                            .collect(),
                    },
                    busy,
                ));
            }
            last_deliveries = [counts[0], counts[1]];
        }
    }
    let mut acked: Vec<Uuid> = Vec::new();
    for result in loader.await.expect("loader task") {
        match result {
            Ok(Ok(ids)) => acked.extend(ids),
            Ok(Err(e)) => problems.push(format!("client: {e}")),
            Err(e) => problems.push(format!("client task: {e}")),
        }
    }
    let c = &load.counters;
    println!(
        "distributed: load {:.1}s: {} of {total_events} events acked; {} attempts, {} retries",
        load_started.elapsed().as_secs_f64(),
        acked.len(),
        c.attempts.load(Ordering::Relaxed),
        c.retries.load(Ordering::Relaxed),
    );
    for (kill, _) in analyze_kill.iter().chain(&notify_kill) {
        println!("distributed: {kill}");
    }
    if !problems.is_empty() {
        let failures = stop_all(&mut procs).await;
        panic!(
            "load failed:\n  {}\n  {}",
            problems.join("\n  "),
            failures.join("\n  ")
        );
    }
    let (analyze_kill, active) = analyze_kill.expect("analyze kill");
    let (notify_kill, _) = notify_kill.expect("notify kill");
    // A hot standby consumes nothing while the active replica lives.
    if analyze_kill.counts[1 - active].1 != 0 {
        problems.push(format!(
            "the standby analyze replica processed events while the active one lived \
             (x-single-active-consumer not in effect): {:?}",
            analyze_kill.counts
        ));
    }

    // --- Drain --------------------------------------------------------------
    let drain_started = Instant::now();
    let (stored_events, stored_alerts, observations) = match wait_drained(&http, &api, &iso).await {
        Ok(drained) => drained,
        Err(e) => {
            let failures = stop_all(&mut procs).await;
            panic!("{e}\n  {}", failures.join("\n  "));
        }
    };
    let drain_time = drain_started.elapsed();
    for observation in &observations {
        println!("distributed: observed: {observation}");
    }
    let standby = procs[analyzers[1 - active]].name.clone();
    let standby_done = processed(&http, &procs[analyzers[1 - active]], "ok").await;
    if standby_done == 0 {
        problems.push(format!(
            "the standby analyze replica {standby} never took over"
        ));
    }

    // 1. Every acked event stored exactly once, nothing else, unaltered.
    let acked_set: HashSet<Uuid> = acked.iter().copied().collect();
    if acked_set.len() != acked.len() {
        problems.push(format!(
            "an event id was acked twice: {}",
            sample(duplicates(&acked))
        ));
    }
    if acked_set.len() != total_events {
        problems.push(format!(
            "{total_events} events sent but {} acked",
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
            let id = uuid_of(stored, "event_id");
            sent_events.get(&id).is_some_and(|sent| {
                workload::event_micros(stored) != workload::event_micros(sent)
                    || ["user_id", "server_hostname", "event_type", "action_result"]
                        .iter()
                        .any(|k| workload::str_field(stored, k) != workload::str_field(sent, k))
            })
        })
        .map(|e| uuid_of(e, "event_id"))
        .collect();
    if !altered.is_empty() {
        problems.push(format!(
            "stored events differ from those sent: {}",
            sample(altered)
        ));
    }

    // 2. The stored alerts are exactly the oracle's.
    let alert_ids = ids_of(&stored_alerts, "alert_id");
    let alert_set: HashSet<Uuid> = alert_ids.iter().copied().collect();
    let dups = duplicates(&alert_ids);
    if !dups.is_empty() {
        problems.push(format!("alerts stored more than once: {}", sample(dups)));
    }
    let wrong: Vec<Uuid> = stored_alerts
        .iter()
        .filter(|a| {
            expected
                .alerts
                .get(&uuid_of(a, "alert_id"))
                .is_some_and(|(rule, event)| {
                    a["analysis_rule"]["rule_id"].as_str() != Some(rule)
                        || a["correlation_id"].as_str() != Some(event.to_string().as_str())
                })
        })
        .map(|a| uuid_of(a, "alert_id"))
        .collect();
    if !wrong.is_empty() {
        problems.push(format!(
            "alerts with the wrong rule or correlation id: {}",
            sample(wrong)
        ));
    }
    let missing: Vec<(&str, Uuid)> = expected_ids
        .difference(&alert_set)
        .map(|id| expected.alerts[id])
        .collect();
    let extra: Vec<&Uuid> = alert_set.difference(&expected_ids).collect();
    if !missing.is_empty() || !extra.is_empty() {
        // Name the requests involved, with each failed login's decision.
        let by_alert: HashMap<Uuid, Uuid> = sent_events
            .keys()
            .map(|e| (alert_id_for(RULE_BURST, *e), *e))
            .collect();
        let involved: HashSet<Uuid> = missing
            .iter()
            .map(|(_, event)| *event)
            .chain(extra.iter().filter_map(|a| by_alert.get(*a).copied()))
            .collect();
        let described: Vec<String> = units
            .iter()
            .filter(|u| {
                u.events
                    .iter()
                    .any(|e| involved.contains(&workload::event_id(e)))
            })
            .take(4)
            .map(|u| describe_unit(u, &expected_ids, &alert_set))
            .collect();
        problems.push(format!(
            "stored alerts differ from the oracle: missing {} ({RULE_FILE}: {}), extra {}\n    {}",
            sample(&missing),
            missing.iter().filter(|(r, _)| *r == RULE_FILE).count(),
            sample(&extra),
            described.join("\n    ")
        ));
    }

    // 3. The union of both notify replicas' files: each expected alert at
    //    least once, each file without duplicates. Deliveries are recorded per
    //    (alert, channel name) in the shared store, so the replicas do not
    //    both write an alert, except in one case the file channel cannot
    //    close across replicas: the killed replica appended an alert and died
    //    before recording the delivery, and the other replica, receiving it
    //    again, wrote it to its own file. Such a duplicate must involve the
    //    killed replica's file; any other is a failure.
    let mut union: Vec<Uuid> = Vec::new();
    let mut per_file: Vec<(String, usize)> = Vec::new();
    let mut in_file: HashMap<Uuid, Vec<String>> = HashMap::new();
    for &i in &notifiers {
        let path = procs[i].alerts_file();
        let (ids, bad, terminated) = read_alert_file(&path);
        if bad > 0 || !terminated {
            problems.push(format!(
                "{}: {bad} lines are not alerts; ends with a newline: {terminated}",
                path.display()
            ));
        }
        let dups = duplicates(&ids);
        if !dups.is_empty() {
            problems.push(format!(
                "{}: alerts written twice to the same file: {}",
                procs[i].name,
                sample(dups)
            ));
        }
        for id in &ids {
            in_file.entry(*id).or_default().push(procs[i].name.clone());
        }
        per_file.push((procs[i].name.clone(), ids.len()));
        union.extend(ids);
    }
    let union_set: HashSet<Uuid> = union.iter().copied().collect();
    let all_dups: Vec<(Uuid, usize)> = duplicates(&union);
    let (explained, cross): (Vec<_>, Vec<_>) = all_dups
        .into_iter()
        .partition(|(id, _)| in_file[id].contains(&notify_kill.victim));
    if !explained.is_empty() {
        println!(
            "distributed: {} alert(s) in both files, written by the killed replica {} just before its kill",
            explained.len(),
            notify_kill.victim
        );
    }
    if !cross.is_empty() {
        // Name where each one went, and what the store recorded for it.
        let mut details = Vec::new();
        for (id, _) in cross.iter().take(3) {
            let record = get_json(&http, &format!("{api}/v1/alerts/{id}"))
                .await
                .map(|v| v["deliveries"].to_string())
                .unwrap_or_else(|e| e);
            details.push(format!("{id} in {:?}; deliveries {record}", in_file[id]));
        }
        problems.push(format!(
            "alerts written more than once across the notify replicas' files: {} (killed: {})\n    {}",
            sample(&cross),
            notify_kill.victim,
            details.join("\n    ")
        ));
    }
    let missing: Vec<&Uuid> = expected_ids.difference(&union_set).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "alerts in neither notify replica's file: {}",
            sample(missing)
        ));
    }
    let extra: Vec<&Uuid> = union_set.difference(&expected_ids).collect();
    if !extra.is_empty() {
        problems.push(format!("unexpected alerts in the files: {}", sample(extra)));
    }
    if per_file.iter().any(|(_, n)| *n == 0) {
        problems.push(format!(
            "a notify replica delivered nothing (they should compete): {per_file:?}"
        ));
    }

    // 4. Nothing dead-lettered.
    match api_queues(&http, &api).await {
        Ok(queues) => {
            let dead: Vec<(&String, u64)> = queues
                .iter()
                .filter(|(_, q)| q.2 > 0)
                .map(|(name, q)| (name, q.2))
                .collect();
            if !dead.is_empty() {
                let letters = get_json(&http, &format!("{api}/v1/dead-letters?limit=5")).await;
                problems.push(format!("dead letters: {dead:?}; e.g. {letters:?}"));
            }
        }
        Err(e) => problems.push(e),
    }

    // 5. The survivors stop cleanly.
    let mut survivors: Vec<Proc> = Vec::new();
    let mut killed: Vec<Proc> = Vec::new();
    for proc in procs {
        if proc.name == analyze_kill.victim || proc.name == notify_kill.victim {
            killed.push(proc);
        } else {
            survivors.push(proc);
        }
    }
    problems.extend(stop_all(&mut survivors).await);

    println!(
        "distributed: drained in {:.1}s; stored {} events, {} alerts (expected {}); \
         alert files {per_file:?} (killed {} at {:.1}s); standby {standby} processed \
         {standby_done}; total {:.1}s",
        drain_time.as_secs_f64(),
        stored_events.len(),
        alert_ids.len(),
        expected_ids.len(),
        notify_kill.victim,
        notify_kill.at.as_secs_f64(),
        test_started.elapsed().as_secs_f64()
    );
    drop(killed);
    drop(survivors);
    assert!(
        problems.is_empty(),
        "distributed deployment violated its guarantees (seed {seed}):\n  {}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Test 2: the earlier Python generator's messages, compat topology

/// Polls `check` every [`POLL`] until it returns `Ok`, at most `within`;
/// the last `Err` otherwise.
async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    let mut last = String::from("never checked");
    for _ in 0..100_000 {
        match check().await {
            Ok(value) => return Ok(value),
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    Err(format!("not within {within:?}: {last}"))
}

fn compat_sample(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../../shared/compat/{name}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_python_generator_messages_are_analysed_and_notified() {
    let started = Instant::now();
    let iso = Isolation::new("compat");
    let http = http_client();
    let compat = [("AUDITFLOW_RABBITMQ__TOPOLOGY", "compat")];

    // Three failed logins of attacker_bob on prod-web-01, as the generator
    // sends them (the sample, byte for byte, with its own event id and
    // timestamp each), and the sample /etc/passwd modification.
    let login = compat_sample("event-user-login-failure.json");
    let sample_login: Value = serde_json::from_str(&login).expect("sample JSON");
    let sample_id = sample_login["event_id"]
        .as_str()
        .expect("event_id")
        .to_string();
    let sample_ts = sample_login["timestamp"]
        .as_str()
        .expect("timestamp")
        .to_string();
    let logins: Vec<(Uuid, Vec<u8>)> = (0..3)
        .map(|i| {
            let id = Uuid::new_v4();
            let ts = sample_ts.replace("21:46:30.", &format!("21:46:3{i}."));
            let body = login
                .replace(&sample_id, &id.to_string())
                .replace(&sample_ts, &ts);
            (id, body.into_bytes())
        })
        .collect();
    let file = compat_sample("event-file-modified.json");
    let file_event: Value = serde_json::from_str(&file).expect("sample JSON");
    let file_id = Uuid::parse_str(file_event["event_id"].as_str().expect("id")).expect("uuid");
    let wire = |items: &[&(Uuid, Vec<u8>)]| -> Vec<(String, Vec<u8>)> {
        items
            .iter()
            .map(|(id, body)| (id.to_string(), body.clone()))
            .collect()
    };

    // The generator runs first and declares the queue its way.
    let url = iso.broker_url();
    publish_raw(
        &url,
        EVENTS_QUEUE,
        Wire::Legacy,
        &wire(&[&logins[0], &logins[1]]),
    )
    .await;
    let mut procs = join_all([
        start(&iso, "analyze", "analyze", &compat, &http),
        start(&iso, "notify", "notify", &compat, &http),
        start(&iso, "api", "api", &compat, &http),
    ])
    .await;
    // ... and goes on publishing (declaring again) while AuditFlow runs.
    let file_message = (file_id, file.clone().into_bytes());
    publish_raw(
        &url,
        EVENTS_QUEUE,
        Wire::Legacy,
        &wire(&[&logins[2], &file_message]),
    )
    .await;

    let api = procs[2].base.clone();
    let alerts_file = procs[1].alerts_file();
    let expected_events: HashSet<Uuid> =
        logins.iter().map(|(id, _)| *id).chain([file_id]).collect();
    let burst = alert_id_for(RULE_BURST, logins[2].0);
    let passwd = alert_id_for(RULE_FILE, file_id);
    let outcome = eventually(Duration::from_secs(30), || async {
        let events = list_all(&http, &api, "/v1/events", "").await?;
        let alerts = list_all(&http, &api, "/v1/alerts", "").await?;
        let (lines, _, _) = read_alert_file(&alerts_file);
        if events.len() < expected_events.len() || alerts.len() < 2 || lines.len() < 2 {
            return Err(format!(
                "{} events, {} alerts stored, {} alerts in the file",
                events.len(),
                alerts.len(),
                lines.len()
            ));
        }
        Ok((events, alerts))
    })
    .await;
    let (events, alerts) = match outcome {
        Ok(found) => found,
        Err(e) => {
            let failures = stop_all(&mut procs).await;
            panic!(
                "legacy events not analysed and notified: {e}\n  analyze:\n{}\n  {}",
                log_tail(&procs[0].log, 10),
                failures.join("\n  ")
            );
        }
    };
    // Let a late duplicate, if any, show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut problems = Vec::new();

    // Events: exactly the four, as sent.
    let stored: Vec<Uuid> = ids_of(&events, "event_id");
    if stored.len() != 4 || stored.iter().copied().collect::<HashSet<_>>() != expected_events {
        problems.push(format!(
            "stored events {stored:?}, expected {expected_events:?}"
        ));
    }
    for event in &events {
        let id = uuid_of(event, "event_id");
        let sent = if id == file_id {
            file_event.clone()
        } else {
            sample_login.clone()
        };
        for key in [
            "user_id",
            "server_hostname",
            "event_type",
            "action_result",
            "severity",
        ] {
            if event[key] != sent[key] {
                problems.push(format!("event {id}: {key} {} != {}", event[key], sent[key]));
            }
        }
        if event["details"] != sent["details"] {
            problems.push(format!(
                "event {id}: details {} != {}",
                event["details"], sent["details"]
            ));
        }
    }

    // Alerts: ANLY-SEC-001 once (on the third failure), ANLY-SEC-002 once.
    let mut rules: Vec<(String, Uuid)> = alerts
        .iter()
        .map(|a| {
            (
                a["analysis_rule"]["rule_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                uuid_of(a, "alert_id"),
            )
        })
        .collect();
    rules.sort();
    let want = vec![
        (RULE_BURST.to_string(), burst),
        (RULE_FILE.to_string(), passwd),
    ];
    if rules != want {
        problems.push(format!("alerts {rules:?}, expected {want:?}"));
    }
    let (lines, bad, terminated) = read_alert_file(&alerts_file);
    let mut lines_sorted = lines.clone();
    lines_sorted.sort();
    let mut want_ids = vec![burst, passwd];
    want_ids.sort();
    if lines_sorted != want_ids || bad > 0 || !terminated {
        problems.push(format!(
            "{}: alerts {lines:?} ({bad} bad lines), expected each of {want_ids:?} once",
            alerts_file.display()
        ));
    }

    // Queues: still the generator's classic queues without arguments
    // (AuditFlow added none, e.g. no x-single-active-consumer), drained,
    // nothing dead-lettered.
    match iso.queues().await {
        Ok(queues) => {
            for name in [EVENTS_QUEUE, ALERTS_QUEUE] {
                match queues.get(name) {
                    Some(q) => {
                        if q["type"] != "classic" || !arguments_of(q).is_empty() {
                            problems.push(format!(
                                "{name} is not a classic queue without arguments: {q}"
                            ));
                        }
                        if q["messages_ready"] != 0 || q["messages_unacknowledged"] != 0 {
                            problems.push(format!("{name} not drained: {q}"));
                        }
                    }
                    None => problems.push(format!("{name} missing: {queues:?}")),
                }
            }
        }
        Err(e) => problems.push(e),
    }
    match api_queues(&http, &api).await {
        Ok(queues) if queues.values().all(|q| q.2 == 0) => {}
        other => problems.push(format!("dead letters or no queue report: {other:?}")),
    }
    problems.extend(stop_all(&mut procs).await);
    println!(
        "distributed: legacy: {} events, {} alerts in {:.1}s",
        events.len(),
        alerts.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "legacy compat:\n  {}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Test 3: poison messages

fn good_event(n: usize) -> (Uuid, Value) {
    let id = Uuid::new_v4();
    let event = json!({
        "event_id": id.to_string(),
        "timestamp": format!("2031-01-01T00:00:{:02}.000001Z", n % 60),
        "source_service": "auth-service",
        "server_hostname": format!("web-{:02}", n % 20),
        "event_type": "user_login",
        "severity": "INFO",
        "user_id": format!("user-{n}"),
        "action_result": "SUCCESS",
        "details": {"protocol": "ssh"},
    });
    (id, event)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_end_in_the_dlq_with_a_reason_and_never_block() {
    let started = Instant::now();
    let iso = Isolation::new("poison");
    let http = http_client();
    // analyze declares the quorum topology before anything is published.
    let mut procs = vec![start(&iso, "analyze", "analyze", &[], &http).await];
    procs.push(start(&iso, "api", "api", &[], &http).await);
    let (analyze, api) = (procs[0].base.clone(), procs[1].base.clone());
    let mut problems = Vec::new();
    match iso.queues().await {
        Ok(queues) => {
            let q = queues.get(EVENTS_QUEUE).cloned().unwrap_or_default();
            if q["type"] != "quorum" {
                problems.push(format!("{EVENTS_QUEUE} is not a quorum queue: {q}"));
            }
        }
        Err(e) => problems.push(e),
    }

    // Poison, each with what its dead-letter reason must mention.
    let (_, valid) = good_event(0);
    let mut missing = valid.clone();
    missing.as_object_mut().expect("object").remove("user_id");
    missing["event_id"] = json!(Uuid::new_v4().to_string());
    let mut not_uuid = valid.clone();
    not_uuid["event_id"] = json!("evt-12345");
    let mut oversize = valid.clone();
    oversize["event_id"] = json!(Uuid::new_v4().to_string());
    oversize["user_id"] = json!("x".repeat(2000));
    let mut oversize_body = valid.clone();
    oversize_body["event_id"] = json!(Uuid::new_v4().to_string());
    oversize_body["details"] = json!({ "blob": "x".repeat(1 << 20) });
    // Valid JSON that PostgreSQL cannot store (U+0000 in text or jsonb).
    let mut nul_field = valid.clone();
    nul_field["event_id"] = json!(Uuid::new_v4().to_string());
    nul_field["user_id"] = json!("alice\u{0}");
    let mut nul_details = valid.clone();
    nul_details["event_id"] = json!(Uuid::new_v4().to_string());
    nul_details["details"] = json!({ "reason": "x\u{0}" });
    // Valid for AuditFlow, refused by PostgreSQL (a constraint of the
    // operator's): analyze stores the rest of its batch one event at a
    // time and dead-letters only this one.
    if let Err(e) = iso
        .sql(
            "ALTER TABLE events ADD CONSTRAINT no_quarantined_host \
             CHECK (server_hostname <> 'quarantined-host')",
        )
        .await
    {
        problems.push(format!("cannot add the constraint: {e}"));
    }
    let mut refused = valid.clone();
    refused["event_id"] = json!(Uuid::new_v4().to_string());
    refused["server_hostname"] = json!("quarantined-host");
    let poison: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "poison-bad-json",
            b"{\"event_id\": \"not even json".to_vec(),
            "invalid JSON",
        ),
        (
            "poison-missing-fields",
            serde_json::to_vec(&missing).expect("json"),
            "`user_id`: is required",
        ),
        (
            "poison-non-uuid-id",
            serde_json::to_vec(&not_uuid).expect("json"),
            "is not a UUID",
        ),
        (
            "poison-oversize",
            serde_json::to_vec(&oversize).expect("json"),
            "the limit is 1024",
        ),
        (
            "poison-oversize-body",
            serde_json::to_vec(&oversize_body).expect("json"),
            "analyze.max_event_bytes",
        ),
        (
            "poison-nul-field",
            serde_json::to_vec(&nul_field).expect("json"),
            "`user_id`: contains a NUL character (U+0000)",
        ),
        (
            "poison-nul-details",
            serde_json::to_vec(&nul_details).expect("json"),
            "`details.reason`: contains a NUL character (U+0000)",
        ),
        (
            "poison-refused-by-the-store",
            serde_json::to_vec(&refused).expect("json"),
            "the store refused the event: cannot insert events: db error: ERROR: new row for relation \"events\" violates check constraint \"no_quarantined_host\"",
        ),
    ];
    // Poison first (at the head of the queue), then interleaved with good
    // events, then a tail of good events that must not wait behind it.
    let mut good: Vec<Uuid> = Vec::new();
    let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, (id, body, _)) in poison.iter().enumerate() {
        messages.push((id.to_string(), body.clone()));
        for n in 0..3 {
            let (gid, event) = good_event(100 + i * 10 + n);
            good.push(gid);
            messages.push((gid.to_string(), serde_json::to_vec(&event).expect("json")));
        }
    }
    for n in 0..40 {
        let (gid, event) = good_event(200 + n);
        good.push(gid);
        messages.push((gid.to_string(), serde_json::to_vec(&event).expect("json")));
    }
    let published = Instant::now();
    publish_raw(&iso.broker_url(), EVENTS_QUEUE, Wire::Ours, &messages).await;

    let good_set: HashSet<Uuid> = good.iter().copied().collect();
    let drained = eventually(Duration::from_secs(30), || async {
        let events = list_all(&http, &api, "/v1/events", "").await?;
        let stored: HashSet<Uuid> = ids_of(&events, "event_id").into_iter().collect();
        let queues = iso.queues().await?;
        let q = &queues[EVENTS_QUEUE];
        let dlq = &queues[&format!("{EVENTS_QUEUE}.dlq")];
        if !good_set.is_subset(&stored)
            || q["messages_ready"] != 0
            || q["messages_unacknowledged"] != 0
            || dlq["messages_ready"].as_u64() < Some(poison.len() as u64)
        {
            return Err(format!(
                "{} of {} good events stored; queue {q}; dlq {dlq}",
                good_set.intersection(&stored).count(),
                good_set.len()
            ));
        }
        Ok(events)
    })
    .await;
    let drain_time = published.elapsed();
    let events = match drained {
        Ok(events) => events,
        Err(e) => {
            let failures = stop_all(&mut procs).await;
            panic!(
                "poison blocked the queue or was lost: {e}\n  analyze:\n{}\n  {}",
                log_tail(&procs[0].log, 10),
                failures.join("\n  ")
            );
        }
    };

    // Only the good events are stored, each once.
    let stored = ids_of(&events, "event_id");
    if stored.len() != good.len() || stored.iter().copied().collect::<HashSet<_>>() != good_set {
        problems.push(format!(
            "stored {} events, expected exactly the {} good ones",
            stored.len(),
            good.len()
        ));
    }
    // Each poison message is a dead letter with its reason, delivered once.
    match get_json(
        &http,
        &format!("{api}/v1/dead-letters?queue={EVENTS_QUEUE}&limit=50"),
    )
    .await
    {
        Ok(body) => {
            let items = body["items"].as_array().cloned().unwrap_or_default();
            if items.len() != poison.len() {
                problems.push(format!(
                    "{} dead letters, expected {}: {:?}",
                    items.len(),
                    poison.len(),
                    items
                        .iter()
                        .map(|i| (&i["message_id"], &i["reason"]))
                        .collect::<Vec<_>>()
                ));
            }
            for (id, _, reason) in &poison {
                match items.iter().find(|i| i["message_id"] == *id) {
                    Some(item) => {
                        let got = item["reason"].as_str().unwrap_or_default();
                        if !got.contains(reason) || item["queue"] != EVENTS_QUEUE {
                            problems.push(format!(
                                "dead letter {id}: reason {got:?} (queue {}), expected it to mention {reason:?}",
                                item["queue"]
                            ));
                        }
                        if item["delivery_count"] != 1 {
                            problems.push(format!(
                                "dead letter {id}: delivered {} times before being dead-lettered, expected once",
                                item["delivery_count"]
                            ));
                        }
                    }
                    None => problems.push(format!("no dead letter for {id}")),
                }
            }
        }
        Err(e) => problems.push(e),
    }
    // Counted by analyze.
    let invalid = metric(
        &http,
        &analyze,
        "auditflow_events_processed_total",
        &[("result", "invalid")],
    )
    .await;
    if invalid != Ok(poison.len() as f64) {
        problems.push(format!(
            "auditflow_events_processed_total{{result=\"invalid\"}} is {invalid:?}, expected {}",
            poison.len()
        ));
    }
    let ok = processed(&http, &procs[0], "ok").await;
    if ok != good.len() as u64 {
        problems.push(format!(
            "auditflow_events_processed_total{{result=\"ok\"}} is {ok}, expected {}",
            good.len()
        ));
    }
    match api_queues(&http, &api).await {
        Ok(queues) if queues[EVENTS_QUEUE] == (0, 0, poison.len() as u64) => {}
        other => problems.push(format!(
            "/v1/queues: {other:?}, expected {EVENTS_QUEUE} (0, 0, {})",
            poison.len()
        )),
    }
    problems.extend(stop_all(&mut procs).await);
    println!(
        "distributed: poison: {} good events stored and {} dead-lettered {:.1}s after publishing; \
         total {:.1}s",
        good.len(),
        poison.len(),
        drain_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "poison messages:\n  {}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Test: poison alerts (from another publisher) reach notify

const ALERT_FIXTURE: &str =
    include_str!("../../auditflow-api/tests/fixtures/alert-failed-login-burst.json");

/// An alert as another publisher (the earlier Python analyze) could send
/// it, with a fresh id.
fn fixture_alert() -> (Uuid, Value) {
    let mut alert: Value = serde_json::from_str(ALERT_FIXTURE).expect("alert fixture");
    let id = Uuid::new_v4();
    alert["alert_id"] = json!(id.to_string());
    (id, alert)
}

/// Alerts that PostgreSQL cannot store (an indexed field over a B-tree
/// entry's size, U+0000: refused when parsed; a constraint of the
/// operator's: refused by the server, then the batch is stored one alert at
/// a time) or that are not alerts are dead-lettered by notify with a
/// reason, and the good alerts around them are stored: before, one such
/// alert stopped notify (SQLSTATE 54000, 22021, 23514) on every delivery
/// until the delivery limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_alerts_end_in_the_dlq_with_a_reason_and_notify_keeps_going() {
    let iso = Isolation::new("poison_alerts");
    let http = http_client();
    let mut procs = vec![start(&iso, "notify", "notify", &[], &http).await];
    procs.push(start(&iso, "api", "api", &[], &http).await);
    let api = procs[1].base.clone();
    let mut problems = Vec::new();

    // Random hex does not compress, so PostgreSQL cannot shrink the index
    // entry below its limit.
    let mut rng = rand::rng();
    let (_, mut long_actor) = fixture_alert();
    long_actor["triggered_by"]["actor_id"] = json!((0..3000)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect::<String>());
    let (_, mut nul) = fixture_alert();
    nul["raw_event_data"]["details"]["reason"] = json!("bad\u{0}");
    // Valid for AuditFlow, refused by PostgreSQL (a constraint of the
    // operator's): notify stores the rest of its batch one alert at a time
    // and dead-letters only this one.
    if let Err(e) = iso
        .sql(
            "ALTER TABLE alerts ADD CONSTRAINT no_quarantined_actor \
             CHECK (actor_id <> 'quarantined-actor')",
        )
        .await
    {
        problems.push(format!("cannot add the constraint: {e}"));
    }
    let (_, mut refused) = fixture_alert();
    refused["triggered_by"]["actor_id"] = json!("quarantined-actor");
    let poison: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "alert-bad-json",
            b"{\"alert_id\": ".to_vec(),
            "invalid alert",
        ),
        (
            "alert-long-actor",
            serde_json::to_vec(&long_actor).expect("json"),
            "`triggered_by.actor_id` is 6000 bytes long; the limit is 1024",
        ),
        (
            "alert-nul",
            serde_json::to_vec(&nul).expect("json"),
            "`raw_event_data.details.reason` contains a NUL character (U+0000)",
        ),
        (
            "alert-refused-by-the-store",
            serde_json::to_vec(&refused).expect("json"),
            "the store refused the alert: cannot insert alerts: db error: ERROR: new row for relation \"alerts\" violates check constraint \"no_quarantined_actor\"",
        ),
    ];
    let mut good = HashSet::new();
    let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
    for (id, body, _) in &poison {
        messages.push((id.to_string(), body.clone()));
        for _ in 0..3 {
            let (gid, alert) = fixture_alert();
            good.insert(gid);
            messages.push((gid.to_string(), serde_json::to_vec(&alert).expect("json")));
        }
    }
    publish_raw(&iso.broker_url(), ALERTS_QUEUE, Wire::Ours, &messages).await;

    let drained = eventually(Duration::from_secs(30), || async {
        let alerts = list_all(&http, &api, "/v1/alerts", "").await?;
        let stored: HashSet<Uuid> = ids_of(&alerts, "alert_id").into_iter().collect();
        let queues = iso.queues().await?;
        let q = &queues[ALERTS_QUEUE];
        let dlq = &queues[&format!("{ALERTS_QUEUE}.dlq")];
        if stored != good
            || q["messages_ready"] != 0
            || q["messages_unacknowledged"] != 0
            || dlq["messages_ready"].as_u64() < Some(poison.len() as u64)
        {
            return Err(format!(
                "{} of {} good alerts stored; queue {q}; dlq {dlq}",
                stored.intersection(&good).count(),
                good.len()
            ));
        }
        Ok(())
    })
    .await;
    if let Err(e) = drained {
        let failures = stop_all(&mut procs).await;
        panic!(
            "a poison alert blocked notify or was lost: {e}\n  notify:\n{}\n  {}",
            log_tail(&procs[0].log, 10),
            failures.join("\n  ")
        );
    }
    match get_json(
        &http,
        &format!("{api}/v1/dead-letters?queue={ALERTS_QUEUE}&limit=50"),
    )
    .await
    {
        Ok(body) => {
            let items = body["items"].as_array().cloned().unwrap_or_default();
            for (id, _, reason) in &poison {
                match items.iter().find(|i| i["message_id"] == *id) {
                    Some(item) => {
                        let got = item["reason"].as_str().unwrap_or_default();
                        if !got.contains(reason) {
                            problems.push(format!(
                                "dead letter {id}: reason {got:?}, expected it to mention {reason:?}"
                            ));
                        }
                        if item["delivery_count"] != 1 {
                            problems.push(format!(
                                "dead letter {id}: delivered {} times, expected once",
                                item["delivery_count"]
                            ));
                        }
                    }
                    None => problems.push(format!("no dead letter for {id}")),
                }
            }
            if items.len() != poison.len() {
                problems.push(format!(
                    "{} dead letters, expected {}",
                    items.len(),
                    poison.len()
                ));
            }
        }
        Err(e) => problems.push(e),
    }
    problems.extend(stop_all(&mut procs).await);
    assert!(
        problems.is_empty(),
        "poison alerts:\n  {}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Test: the monitor judges a killed analyze process dead, then resolved

/// The system alerts (one JSON object per line) the monitor's file channel wrote.
fn system_alerts(monitor: &Proc) -> Vec<Value> {
    std::fs::read_to_string(monitor.data_dir.join("system-alerts.ndjson"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn system_alert<'a>(alerts: &'a [Value], rule: &str, key: &str, state: &str) -> Option<&'a Value> {
    alerts.iter().find(|a| {
        a["analysis_rule"]["rule_id"] == rule
            && a["impacted_resource"]["resource_id"] == key
            && a["action_observed"] == state
    })
}

/// How long after the last heartbeat phi reaches the threshold with the
/// default detector (`[monitor.phi]`) and steady 1 s heartbeats: the
/// detection time the configuration implies.
fn implied_detection_time() -> Duration {
    let phi = resilience::PhiConfig::default();
    let interval = 1.0;
    let mean = interval + phi.acceptable_heartbeat_pause.as_secs_f64();
    let std_dev = phi.min_std_dev.as_secs_f64();
    let mut elapsed = 0.0;
    while resilience::phi::phi_of(elapsed, mean, std_dev) < phi.threshold {
        elapsed += 0.01;
    }
    Duration::from_secs_f64(elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_raises_role_dead_for_a_killed_analyze_process_and_resolves_it() {
    let iso = Isolation::new("monitor");
    let http = http_client();
    let monitor = start(&iso, "monitor", "monitor", &[], &http).await;
    let monitor_url = monitor.base.clone();
    let env = [("AUDITFLOW_MONITOR__URL", monitor_url.as_str())];
    let port = free_port();
    let mut analyze = try_start(&iso, "analyze", "analyze", Some(port), &env, &http)
        .await
        .expect("analyze starts");
    let member = format!("analyze@127.0.0.1:{port}");

    // Ten heartbeats heard, none missing: the detector has its intervals.
    eventually(Duration::from_secs(30), || {
        let (http, url, member) = (
            http.clone(),
            format!("{monitor_url}/v1/heartbeats"),
            member.clone(),
        );
        async move {
            let body = get_json(&http, &url).await?;
            let members = body["members"].as_array().cloned().unwrap_or_default();
            match members.iter().find(|m| m["member"] == member.as_str()) {
                Some(m) if m["dead"] == false => Ok(()),
                other => Err(format!("{member}: {other:?}")),
            }
        }
    })
    .await
    .expect("the monitor hears the analyze process");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        system_alert(&system_alerts(&monitor), "SYS-ROLE-DEAD", &member, "FIRING").is_none(),
        "a live process is not dead"
    );

    analyze.kill9().await;
    let killed = Instant::now();
    let implied = implied_detection_time();
    // Phi crosses the threshold `implied` after the last heartbeat; the
    // monitor checks every second; the file channel writes at once; 2.5 s
    // of slack for scheduling on a loaded 2-core machine (heartbeat jitter
    // also widens the detector's standard deviation a little).
    let bound = implied + Duration::from_secs(1) + Duration::from_millis(2500);
    let alerts = eventually(bound + Duration::from_secs(10), || {
        let alerts = system_alerts(&monitor);
        let member = member.clone();
        async move {
            match system_alert(&alerts, "SYS-ROLE-DEAD", &member, "FIRING") {
                Some(_) => Ok(alerts),
                None => Err(format!("no role_dead yet: {alerts:?}")),
            }
        }
    })
    .await
    .expect("role dead is raised");
    let detected = killed.elapsed();
    assert!(
        detected <= bound,
        "role dead after {detected:?}; the config implies {implied:?} (+ check interval and slack: {bound:?})"
    );
    assert!(
        detected >= phi_pause(),
        "role dead after {detected:?}, before the acceptable heartbeat pause"
    );
    assert!(
        system_alert(&alerts, "SYS-ALL-ANALYZERS-DEAD", "analyze", "FIRING").is_some(),
        "the only analyze process is dead: {alerts:?}"
    );

    // Back on the same address: resolved.
    let analyze = try_start(&iso, "analyze", "analyze", Some(port), &env, &http)
        .await
        .expect("analyze restarts");
    eventually(Duration::from_secs(20), || {
        let alerts = system_alerts(&monitor);
        let member = member.clone();
        async move {
            let resolved = system_alert(&alerts, "SYS-ROLE-DEAD", &member, "RESOLVED").is_some()
                && system_alert(&alerts, "SYS-ALL-ANALYZERS-DEAD", "analyze", "RESOLVED").is_some();
            if resolved {
                Ok(())
            } else {
                Err(format!("not resolved yet: {alerts:?}"))
            }
        }
    })
    .await
    .expect("role dead resolves when the process returns");
    let firing = system_alerts(&monitor)
        .iter()
        .filter(|a| {
            a["analysis_rule"]["rule_id"] == "SYS-ROLE-DEAD" && a["action_observed"] == "FIRING"
        })
        .count();
    assert_eq!(
        firing, 1,
        "one firing notice (the repeat interval is 5 min)"
    );
    let failures = stop_all(&mut [analyze, monitor]).await;
    assert!(failures.is_empty(), "{failures:?}");
}

fn phi_pause() -> Duration {
    resilience::PhiConfig::default().acceptable_heartbeat_pause
}
