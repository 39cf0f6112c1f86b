//! Recovery of `auditflow up` from backend faults in the middle of a load,
//! without restarting AuditFlow itself (the same child pid throughout).
//!
//! Every scenario runs on THROWAWAY servers (a PostgreSQL cluster initdb'd on
//! a free port, `redis-server` child processes, a second RabbitMQ node), never
//! the shared ones. Each one:
//!
//! 1. starts the backends and `auditflow up` on them;
//! 2. sends ~5 700 events over ~20 s (~280 events/s) from concurrent clients
//!    that retry every request (same body, same ids) until it is answered 202:
//!    ANLY-SEC-001 bursts of every shape (each group in one ordered request),
//!    ANLY-SEC-002 file modifications and noise (see `workload/mod.rs`);
//! 3. sends the first part of "straddling" groups, waits until they are
//!    observed (stored, and the alert of those that fired stored), injects
//!    the fault, and sends the rest of those groups after it (during it for
//!    `redis_down_10s`), together with groups first seen after the fault;
//! 4. measures recovery, from the end of the fault (the backend accepting
//!    connections again) to
//!    - `readyz`: the first `/readyz` answer with status `ready`, and
//!    - `e2e`: the alert of a probe event sent after the fault (a sensitive
//!      file modification, ANLY-SEC-002) being listed by `/v1/alerts`, i.e.
//!      the first event after the fault that went through ingest, the broker,
//!      analyze (store + window state + rules), notify and the store
//!      (`stored` is when the probe event itself is listed by `/v1/events`);
//! 5. once the load is acknowledged and the queues are drained (bounded
//!    polling), checks: every acked event stored exactly once and nothing
//!    else; stored alerts == an independent oracle of the two default rules
//!    (no missing, no extra, no duplicate); the file channel wrote each alert
//!    once; nothing dead-lettered; `/readyz` ready; the same AuditFlow process
//!    all along; then SIGTERM exits 0.
//!
//! Set `RECOVERY_SEED=<u64>` to replay a workload. On failure the temporary
//! directory (data, `auditflow.stderr.log`) is kept and its path printed.

use auditflow_chaos::read_api;
#[allow(dead_code)] // helpers shared with the dashboard tests
mod recovery_support;
use auditflow_chaos::workload;
use read_api::{get_json, list_all};

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditflow_core::alert_id_for;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use recovery_support::{start_platform, PgCluster, Platform, RabbitNode, RedisServer};
use workload::{
    array_request, event_id, event_micros, generate, oracle, probe_event, str_field, straddles,
    Encoding, Gen, Mix, Request, Straddle, Unit, RULE_BURST, RULE_FILE,
};

const SEED_VAR: &str = "RECOVERY_SEED";
/// Concurrent load clients.
const CLIENTS: usize = 8;
/// The load's requests are released evenly over this long.
const LOAD_PACE: Duration = Duration::from_secs(20);
/// The straddling groups' first parts are sent this long into the load ...
const STRADDLE_AT: Duration = Duration::from_secs(3);
/// ... and the fault is injected once they are observed, but not before this.
const FAULT_AT: Duration = Duration::from_secs(8);
/// How long the first parts may take to be observed.
const OBSERVE_DEADLINE: Duration = Duration::from_secs(60);
/// Every request of the load answered 202 within this (from the load start).
const LOAD_DEADLINE: Duration = Duration::from_secs(240);
/// After the load: queues empty and the stored count stable within this.
const DRAIN_DEADLINE: Duration = Duration::from_secs(180);
/// A probe's alert must show up within this after the fault's end.
const PROBE_DEADLINE: Duration = Duration::from_secs(180);
/// `/readyz` must be `ready` within this after the drain.
const READY_DEADLINE: Duration = Duration::from_secs(60);
const EVENTS_QUEUE: &str = "audit_events";
const ALERTS_QUEUE: &str = "audit_alerts";

// ---------------------------------------------------------------------------
// Scenarios

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `pg_ctl restart -m fast` of the store's cluster (windows in the store).
    PgRestart,
    /// SIGKILL Redis and start an empty one on the same port at once.
    RedisRestart,
    /// SIGKILL Redis, wait, start an empty one on the same port.
    RedisDown(Duration),
    /// `rabbitmqctl stop` the broker's node, start it again.
    RabbitRestart,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart() {
    run_scenario("postgres_restart", Fault::PgRestart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_loses_data() {
    run_scenario("redis_restart_loses_data", Fault::RedisRestart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_10s() {
    run_scenario("redis_down_10s", Fault::RedisDown(Duration::from_secs(10))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restart() {
    run_scenario("rabbitmq_restart", Fault::RabbitRestart).await;
}

/// The throwaway servers of a scenario (dropped, i.e. stopped and removed, last).
#[derive(Default)]
struct Servers {
    pg: Option<PgCluster>,
    redis: Option<RedisServer>,
    rabbit: Option<RabbitNode>,
}

/// Starts what `fault` needs; returns them and `auditflow up`'s backend flags.
async fn start_servers(fault: Fault) -> Result<(Servers, Vec<String>), String> {
    tokio::task::spawn_blocking(move || {
        let mut servers = Servers::default();
        let mut args = Vec::new();
        match fault {
            Fault::PgRestart => {
                let pg = PgCluster::start().map_err(|e| format!("throwaway PostgreSQL: {e}"))?;
                args.extend([
                    "--store".to_string(),
                    pg.url(),
                    "--cache".into(),
                    "store".into(),
                ]);
                servers.pg = Some(pg);
            }
            Fault::RedisRestart | Fault::RedisDown(_) => {
                let pg = PgCluster::start().map_err(|e| format!("throwaway PostgreSQL: {e}"))?;
                let redis = RedisServer::start().map_err(|e| format!("throwaway Redis: {e}"))?;
                args.extend([
                    "--store".to_string(),
                    pg.url(),
                    "--cache".into(),
                    redis.url(),
                ]);
                servers.pg = Some(pg);
                servers.redis = Some(redis);
            }
            Fault::RabbitRestart => {
                let started = Instant::now();
                let node = RabbitNode::start().map_err(|e| {
                    format!("a second RabbitMQ node could not start on this machine: {e}")
                })?;
                println!(
                    "recovery: RabbitMQ node {} on port {} started in {:.1}s",
                    node.node,
                    node.port,
                    started.elapsed().as_secs_f64()
                );
                args.extend(["--broker".to_string(), node.url()]);
                servers.rabbit = Some(node);
            }
        }
        Ok((servers, args))
    })
    .await
    .map_err(|e| format!("setup task: {e}"))?
}

// ---------------------------------------------------------------------------
// HTTP load

/// One HTTP attempt: when it was sent and answered (from the load start) and
/// its status (0: no answer).
#[derive(Debug, Clone, Copy)]
struct Attempt {
    sent: Duration,
    answered: Duration,
    status: u16,
}

struct Shared {
    base: String,
    started: Instant,
    deadline: Instant,
    attempts: Mutex<Vec<Attempt>>,
    /// Event ids answered 202, by every sender.
    acked: Mutex<Vec<Uuid>>,
}

impl Shared {
    fn at(&self) -> Duration {
        self.started.elapsed()
    }
}

fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout)
        .build()
        .expect("http client")
}

/// Sends `request` until it is answered 202 with its ids in order.
async fn send_until_accepted(
    http: &reqwest::Client,
    shared: &Shared,
    request: &Request,
    rng: &mut StdRng,
) -> Result<Duration, String> {
    let url = format!("{}/v1/events", shared.base);
    loop {
        let sent = shared.at();
        let answer = http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, request.content_type)
            .body(request.body.clone())
            .send()
            .await;
        let (status, text) = match answer {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.text().await {
                    Ok(text) => (status, text),
                    Err(_) => (0, String::new()),
                }
            }
            Err(_) => (0, String::new()),
        };
        let answered = shared.at();
        shared.attempts.lock().expect("attempts").push(Attempt {
            sent,
            answered,
            status,
        });
        match status {
            202 => {
                let ids = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                    v["accepted"]
                        .as_array()?
                        .iter()
                        .map(|id| id.as_str().and_then(|s| Uuid::parse_str(s).ok()))
                        .collect::<Option<Vec<Uuid>>>()
                });
                if ids.as_ref() != Some(&request.ids) {
                    return Err(format!(
                        "{} request: 202 does not name the {} ids sent, in order: {text}",
                        request.kind,
                        request.ids.len()
                    ));
                }
                shared
                    .acked
                    .lock()
                    .expect("acked")
                    .extend(ids.unwrap_or_default());
                return Ok(answered);
            }
            0 | 429 | 500..=599 => {}
            other => return Err(format!("{} request answered {other}: {text}", request.kind)),
        }
        if Instant::now() > shared.deadline {
            return Err(format!(
                "{} request not accepted before the load deadline",
                request.kind
            ));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..=120))).await;
    }
}

/// One load client: pulls requests in order, each at its release time.
async fn client(
    shared: Arc<Shared>,
    requests: Arc<Vec<(Duration, Request)>>,
    next: Arc<AtomicUsize>,
    seed: u64,
) -> Result<(), String> {
    let http = http_client(Duration::from_secs(30));
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let i = next.fetch_add(1, Ordering::SeqCst);
        let Some((release, request)) = requests.get(i) else {
            return Ok(());
        };
        tokio::time::sleep_until((shared.started + *release).into()).await;
        send_until_accepted(&http, &shared, request, &mut rng)
            .await
            .map_err(|e| format!("request {i}: {e}"))?;
    }
}

/// Polls `/readyz` every 100 ms until cancelled: (time from load start, status).
async fn watch_readiness(shared: Arc<Shared>, stop: CancellationToken) -> Vec<(Duration, String)> {
    let http = http_client(Duration::from_secs(2));
    let mut samples = Vec::new();
    for _ in 0..100_000 {
        let at = shared.at();
        let status = match http.get(format!("{}/readyz", shared.base)).send().await {
            Ok(response) => {
                let code = response.status().as_u16();
                match response.json::<Value>().await {
                    Ok(v) => v["status"].as_str().unwrap_or("?").to_string(),
                    Err(_) => format!("http {code}"),
                }
            }
            Err(_) => "unreachable".to_string(),
        };
        samples.push((at, status));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    samples
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

/// Polls until both queues are empty and the stored event count is the same
/// on two consecutive looks; returns the stored events.
async fn wait_drained(api: &reqwest::Client, base: &str) -> Result<Vec<Value>, String> {
    let deadline = Instant::now() + DRAIN_DEADLINE;
    let mut previous: Option<usize> = None;
    loop {
        let last = match queue_stats(api, base).await {
            Ok(stats) if stats.values().all(|q| q.ready == 0 && q.unacked == 0) => {
                let events = list_all(api, base, "/v1/events", "").await?;
                if previous == Some(events.len()) {
                    return Ok(events);
                }
                previous = Some(events.len());
                format!("queues empty, {} events stored", events.len())
            }
            Ok(stats) => {
                previous = None;
                format!("{stats:?}")
            }
            Err(e) => {
                previous = None;
                e
            }
        };
        if Instant::now() > deadline {
            return Err(format!(
                "not drained within {DRAIN_DEADLINE:?}; last seen: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `events_processed{result="ok"}` from `/metrics`.
async fn processed_ok(api: &reqwest::Client, base: &str) -> Option<f64> {
    let text = api
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.contains("events_processed") && l.contains("result=\"ok\""))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// Items of `path` (events or alerts) of `user_id`.
async fn count_for_user(api: &reqwest::Client, base: &str, path: &str, user: &str) -> usize {
    get_json(api, &format!("{base}{path}?limit=100&user_id={user}"))
        .await
        .ok()
        .and_then(|v| v["items"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Sends a probe (an ANLY-SEC-002 event of a user of its own) and measures,
/// from `from`, when it is accepted, stored and its alert stored.
async fn probe(shared: Arc<Shared>, user: String, request: Request, from: Duration) -> ProbeTimes {
    let http = http_client(Duration::from_secs(10));
    let mut rng = StdRng::seed_from_u64(7);
    let mut times = ProbeTimes::default();
    match send_until_accepted(&http, &shared, &request, &mut rng).await {
        Ok(at) => times.accepted = Some(at.saturating_sub(from)),
        Err(e) => {
            times.error = Some(e);
            return times;
        }
    }
    // Until both are seen: with Redis windows analyze stores an event while
    // its alert is published, so the alert may be stored first.
    let deadline = Instant::now() + PROBE_DEADLINE;
    while Instant::now() < deadline {
        if times.stored.is_none()
            && count_for_user(&http, &shared.base, "/v1/events", &user).await > 0
        {
            times.stored = Some(shared.at().saturating_sub(from));
        }
        if times.alerted.is_none()
            && count_for_user(&http, &shared.base, "/v1/alerts", &user).await > 0
        {
            times.alerted = Some(shared.at().saturating_sub(from));
        }
        if times.stored.is_some() && times.alerted.is_some() {
            return times;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let missing = match (times.stored, times.alerted) {
        (None, None) => "its event stored nor its alert",
        (None, Some(_)) => "its event stored",
        _ => "its alert",
    };
    times.error = Some(format!(
        "probe {user}: not seen {missing} within {PROBE_DEADLINE:?}"
    ));
    times
}

#[derive(Debug, Default, Clone)]
struct ProbeTimes {
    accepted: Option<Duration>,
    stored: Option<Duration>,
    alerted: Option<Duration>,
    error: Option<String>,
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("never".to_string(), |d| format!("{:.2}s", d.as_secs_f64()))
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
            format!(
                "{} {}@{} +{:.6}s {} oracle_fires={} platform_fired={}",
                id,
                str_field(e, "user_id"),
                str_field(e, "server_hostname"),
                (event_micros(e) - t0) as f64 / 1e6,
                str_field(e, "action_result"),
                expected.contains(&id),
                stored.contains(&alert_id_for(RULE_BURST, id))
            )
        })
        .collect();
    format!("unit {}:\n      {}", unit.kind, rows.join("\n      "))
}

fn fail_keeping(dir: tempfile::TempDir, scenario: &str, seed: u64, message: String) -> ! {
    let path: PathBuf = dir.keep();
    panic!(
        "{scenario}: {message}\n(seed {seed}; data and stderr log kept in {})",
        path.display()
    );
}

/// The platform still runs, as the process started at the beginning.
fn same_process(platform: &mut Platform, original: u32) -> Result<(), String> {
    match platform.child.try_wait() {
        Ok(None) if platform.child.id() == Some(original) => Ok(()),
        Ok(None) => Err(format!(
            "auditflow pid changed: {original} -> {:?}",
            platform.child.id()
        )),
        Ok(Some(status)) => Err(format!(
            "auditflow (pid {original}) exited ({status}); stderr:\n{}",
            platform.log_tail()
        )),
        Err(e) => Err(format!("auditflow (pid {original}): {e}")),
    }
}

// ---------------------------------------------------------------------------
// The scenario

/// What happened during the fault.
#[derive(Default)]
struct FaultReport {
    /// From the load start.
    began: Duration,
    ended: Duration,
    /// RabbitMQ: the node was stopped (stop returned) ... and its AMQP port
    /// accepted connections again.
    down_from: Option<Duration>,
    down_until: Option<Duration>,
    notes: Vec<String>,
    problems: Vec<String>,
}

#[allow(clippy::too_many_lines)]
async fn run_scenario(scenario: &'static str, fault: Fault) {
    let test_started = Instant::now();
    let seed = match std::env::var(SEED_VAR) {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{SEED_VAR}={s:?}: {e}")),
        Err(_) => rand::rng().random(),
    };
    println!("recovery[{scenario}]: seed {seed} (replay with {SEED_VAR}={seed})");

    // --- Workload and oracle ---------------------------------------------
    let mut g = Gen::new(seed);
    let load_units = generate(&mut g, &Mix::RECOVERY);
    let straddle_groups: Vec<Straddle> = straddles(&mut g);
    let probe_users: Vec<String> = (0..2)
        .map(|i| format!("probe-{scenario}-{i}-{:08x}", g.rng.random::<u32>()))
        .collect();
    let probe_units: Vec<Unit> = probe_users
        .iter()
        .map(|user| Unit {
            kind: "probe",
            intent: Some(0),
            events: vec![probe_event(&mut g, user)],
            encoding: Encoding::Array,
        })
        .collect();
    // The oracle's units: every group lives in one of them, in send order.
    let mut all_units: Vec<&Unit> = load_units.iter().collect();
    all_units.extend(straddle_groups.iter().map(|s| &s.unit));
    all_units.extend(probe_units.iter());
    let owned: Vec<Unit> = all_units
        .iter()
        .map(|u| Unit {
            kind: u.kind,
            intent: u.intent,
            events: u.events.clone(),
            encoding: u.encoding,
        })
        .collect();
    let expected = oracle(&owned);
    let sent_events: HashMap<Uuid, &Value> = owned
        .iter()
        .flat_map(|u| u.events.iter().map(|e| (event_id(e), e)))
        .collect();
    let total_events: usize = owned.iter().map(|u| u.events.len()).sum();
    assert_eq!(sent_events.len(), total_events, "generated ids are unique");

    let load_requests: Vec<Request> = load_units.iter().map(Unit::request).collect();
    let load_events: usize = load_requests.iter().map(|r| r.ids.len()).sum();
    let mut release = Vec::with_capacity(load_requests.len());
    let mut before = 0;
    for request in load_requests {
        release.push((
            LOAD_PACE.mul_f64(before as f64 / load_events as f64),
            request,
        ));
        before += release.last().map_or(0, |(_, r)| r.ids.len());
    }
    let part_a: Vec<Request> = straddle_groups
        .iter()
        .filter(|s| s.split > 0)
        .map(|s| array_request(s.unit.kind, &s.unit.events[..s.split]))
        .collect();
    let part_b: Vec<Request> = straddle_groups
        .iter()
        .map(|s| array_request(s.unit.kind, &s.unit.events[s.split..]))
        .collect();
    println!(
        "recovery[{scenario}]: {total_events} events ({load_events} load over {LOAD_PACE:?}, \
         {} straddling groups, {} probes); expected alerts {RULE_BURST} {} + {RULE_FILE} {}",
        straddle_groups.len(),
        probe_units.len(),
        expected.burst_alerts,
        expected.file_alerts
    );

    // --- Servers and AuditFlow ---------------------------------------------
    let dir = tempfile::Builder::new()
        .prefix("auditflow-recovery-")
        .tempdir()
        .expect("temp dir");
    let (mut servers, args) = match start_servers(fault).await {
        Ok(started) => started,
        Err(e) => fail_keeping(dir, scenario, seed, format!("setup: {e}")),
    };
    let data_dir = dir.path().join("data");
    let log = dir.path().join("auditflow.stderr.log");
    let api = http_client(Duration::from_secs(30));
    let mut platform = match start_platform(&data_dir, &log, &args, &[], &api).await {
        Ok(p) => p,
        Err(e) => fail_keeping(
            dir,
            scenario,
            seed,
            format!("starting auditflow {args:?}: {e}"),
        ),
    };
    let pid = platform.pid;
    let base = platform.base.clone();
    println!("recovery[{scenario}]: auditflow pid {pid} at {base} with {args:?}");

    // --- Load ----------------------------------------------------------------
    let shared = Arc::new(Shared {
        base: base.clone(),
        started: Instant::now(),
        deadline: Instant::now() + LOAD_DEADLINE,
        attempts: Mutex::new(Vec::new()),
        acked: Mutex::new(Vec::new()),
    });
    let ready_stop = CancellationToken::new();
    let readiness = tokio::spawn(watch_readiness(Arc::clone(&shared), ready_stop.clone()));
    let requests = Arc::new(release);
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(client(
                Arc::clone(&shared),
                Arc::clone(&requests),
                Arc::clone(&next),
                seed.wrapping_add(1 + c as u64),
            ))
        })
        .collect();
    let mut problems: Vec<String> = Vec::new();

    // A baseline probe under load, before the fault.
    let baseline = tokio::spawn(probe(
        Arc::clone(&shared),
        probe_users[0].clone(),
        array_request("probe", &probe_units[0].events),
        shared.at(),
    ));

    // --- First parts of the straddling groups, observed --------------------
    tokio::time::sleep_until((shared.started + STRADDLE_AT).into()).await;
    let send_all = |requests: Vec<Request>, salt: u64| {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let http = http_client(Duration::from_secs(30));
            let mut rng = StdRng::seed_from_u64(salt);
            let mut errors = Vec::new();
            // Each group's requests are sent in order; different groups may
            // go concurrently, but one sender keeps it simple and bounded.
            for request in &requests {
                if let Err(e) = send_until_accepted(&http, &shared, request, &mut rng).await {
                    errors.push(e);
                }
            }
            errors
        })
    };
    let errors = send_all(part_a, seed ^ 0xa)
        .await
        .unwrap_or_else(|e| vec![e.to_string()]);
    problems.extend(errors.into_iter().map(|e| format!("straddle part A: {e}")));
    let observe_deadline = Instant::now() + OBSERVE_DEADLINE;
    let mut unobserved: Vec<String> = Vec::new();
    for s in straddle_groups.iter().filter(|s| s.split > 0) {
        let user = str_field(&s.unit.events[0], "user_id").to_string();
        let fires_before = s.unit.kind == "straddle_cooldown";
        loop {
            let events = count_for_user(&api, &base, "/v1/events", &user).await;
            let alerts = count_for_user(&api, &base, "/v1/alerts", &user).await;
            if events >= s.split && (!fires_before || alerts >= 1) {
                break;
            }
            if Instant::now() > observe_deadline {
                unobserved.push(format!(
                    "{} {user}: {events} events, {alerts} alerts",
                    s.unit.kind
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if !unobserved.is_empty() {
        problems.push(format!(
            "straddling groups' first parts not observed within {OBSERVE_DEADLINE:?} \
             (before the fault): {}",
            sample(unobserved)
        ));
    }
    let observed_at = shared.at();
    tokio::time::sleep_until((shared.started + FAULT_AT).into()).await;

    // --- The fault -----------------------------------------------------------
    let mut report = FaultReport {
        began: shared.at(),
        ..FaultReport::default()
    };
    let mut part_b_sender = None;
    match fault {
        Fault::PgRestart => {
            let pg = servers.pg.take().expect("pg");
            let (pg, result) = tokio::task::spawn_blocking(move || {
                let r = pg.restart();
                (pg, r)
            })
            .await
            .expect("pg restart task");
            servers.pg = Some(pg);
            if let Err(e) = result {
                report.problems.push(format!("pg_ctl restart: {e}"));
            }
        }
        Fault::RedisRestart => {
            let mut redis = servers.redis.take().expect("redis");
            let (redis, result) = tokio::task::spawn_blocking(move || {
                redis.kill();
                let r = redis.start_again();
                (redis, r)
            })
            .await
            .expect("redis restart task");
            servers.redis = Some(redis);
            if let Err(e) = result {
                report.problems.push(format!("restarting Redis: {e}"));
            }
        }
        Fault::RedisDown(outage) => {
            let mut redis = servers.redis.take().expect("redis");
            let mut redis = tokio::task::spawn_blocking(move || {
                redis.kill();
                redis
            })
            .await
            .expect("redis kill task");
            let killed = Instant::now();
            // Groups' second parts arrive while the windows are unreachable.
            tokio::time::sleep(Duration::from_secs(2)).await;
            part_b_sender = Some(send_all(part_b.clone(), seed ^ 0xb));
            tokio::time::sleep_until((killed + Duration::from_secs(3)).into()).await;
            let early_ok = processed_ok(&api, &base).await;
            let early_q = queue_stats(&api, &base).await.ok().map(|s| s[EVENTS_QUEUE]);
            tokio::time::sleep_until((killed + outage - Duration::from_millis(300)).into()).await;
            let late_ok = processed_ok(&api, &base).await;
            let late_q = queue_stats(&api, &base).await.ok().map(|s| s[EVENTS_QUEUE]);
            tokio::time::sleep_until((killed + outage).into()).await;
            let (redis, result) = tokio::task::spawn_blocking(move || {
                let r = redis.start_again();
                (redis, r)
            })
            .await
            .expect("redis start task");
            servers.redis = Some(redis);
            if let Err(e) = result {
                report.problems.push(format!("starting Redis again: {e}"));
            }
            report.notes.push(format!(
                "during the outage (+3s .. +{:.1}s): events processed ok {early_ok:?} -> {late_ok:?}; \
                 events queue {early_q:?} -> {late_q:?}",
                (outage - Duration::from_millis(300)).as_secs_f64()
            ));
            match (early_ok, late_ok) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => report.problems.push(format!(
                    "analyze went on while Redis was down: events processed ok {a} -> {b}"
                )),
                _ => report
                    .problems
                    .push("cannot read events_processed{result=\"ok\"} from /metrics".into()),
            }
            match (early_q, late_q) {
                (Some(a), Some(b)) if b.ready + b.unacked > a.ready + a.unacked => {}
                other => report.problems.push(format!(
                    "the events queue did not grow while analyze was paused: {other:?}"
                )),
            }
        }
        Fault::RabbitRestart => {
            let mut node = servers.rabbit.take().expect("rabbit");
            let port = node.port;
            let (mut node, result) = tokio::task::spawn_blocking(move || {
                let r = node.stop();
                (node, r)
            })
            .await
            .expect("rabbit stop task");
            if let Err(e) = result {
                report
                    .problems
                    .push(format!("stopping the RabbitMQ node: {e}"));
            }
            report.down_from = Some(shared.at());
            // When the AMQP port accepts connections again.
            let port_watch = {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    for _ in 0..10_000 {
                        if tokio::net::TcpStream::connect(("127.0.0.1", port))
                            .await
                            .is_ok()
                        {
                            return Some(shared.at());
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    None
                })
            };
            let (node, result) = tokio::task::spawn_blocking(move || {
                let r = node.start_again();
                (node, r)
            })
            .await
            .expect("rabbit start task");
            servers.rabbit = Some(node);
            match result {
                Ok(took) => report
                    .notes
                    .push(format!("node start took {:.1}s", took.as_secs_f64())),
                Err(e) => report
                    .problems
                    .push(format!("starting the RabbitMQ node again: {e}")),
            }
            report.down_until = match tokio::time::timeout(Duration::from_secs(5), port_watch).await
            {
                Ok(Ok(at)) => at,
                _ => None,
            };
        }
    }
    report.ended = shared.at();
    let fault_end = report.ended;

    // --- After the fault: recovery probe, second parts ---------------------
    let after = tokio::spawn(probe(
        Arc::clone(&shared),
        probe_users[1].clone(),
        array_request("probe", &probe_units[1].events),
        fault_end,
    ));
    let part_b_sender = part_b_sender.unwrap_or_else(|| send_all(part_b, seed ^ 0xb));

    // --- Wait for the load ---------------------------------------------------
    for handle in clients {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("client: {e}")),
            Err(e) => problems.push(format!("client task: {e}")),
        }
    }
    let errors = part_b_sender.await.unwrap_or_else(|e| vec![e.to_string()]);
    problems.extend(errors.into_iter().map(|e| format!("straddle part B: {e}")));
    let baseline = baseline.await.unwrap_or_default();
    let recovery = after.await.unwrap_or_default();
    let load_time = shared.at();
    for (name, p) in [("baseline probe", &baseline), ("recovery probe", &recovery)] {
        if let Some(e) = &p.error {
            problems.push(format!("{name}: {e}"));
        }
    }
    problems.append(&mut report.problems);
    if let Err(e) = same_process(&mut platform, pid) {
        problems.push(format!("during the load: {e}"));
    }

    // --- Drain -------------------------------------------------------------
    let drain_started = Instant::now();
    let stored_events = match wait_drained(&api, &base).await {
        Ok(events) => events,
        Err(e) => {
            problems.push(e);
            Vec::new()
        }
    };
    let drain_time = drain_started.elapsed();
    let stored_alerts = list_all(&api, &base, "/v1/alerts", "").await;
    let stats = queue_stats(&api, &base).await;

    // /readyz ready again.
    let ready_deadline = Instant::now() + READY_DEADLINE;
    loop {
        let last_ready = match get_json(&api, &format!("{base}/readyz")).await {
            Ok(v) if v["status"] == "ready" => break,
            Ok(v) => v.to_string(),
            Err(e) => e,
        };
        if Instant::now() > ready_deadline {
            problems.push(format!(
                "/readyz not ready within {READY_DEADLINE:?} after the drain: {last_ready}"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ready_stop.cancel();
    let samples = readiness.await.unwrap_or_default();

    // --- Checks --------------------------------------------------------------
    // 1. Every acked event stored exactly once, nothing else.
    let acked: Vec<Uuid> = shared.acked.lock().expect("acked").clone();
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

    // 2. Stored alerts are exactly the oracle's.
    let expected_ids: HashSet<Uuid> = expected.alerts.keys().copied().collect();
    let mut alert_dups = 0;
    let mut stored_alert_count = 0;
    match &stored_alerts {
        Ok(alerts) => {
            stored_alert_count = alerts.len();
            let ids = ids_of(alerts, "alert_id");
            let stored_alert_set: HashSet<Uuid> = ids.iter().copied().collect();
            let dups = duplicates(&ids);
            alert_dups = dups.len();
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
            let missing: Vec<(&str, Uuid)> = expected_ids
                .difference(&stored_alert_set)
                .map(|id| (expected.alerts[id].0, expected.alerts[id].1))
                .collect();
            let extra: Vec<&Uuid> = stored_alert_set.difference(&expected_ids).collect();
            if !missing.is_empty() || !extra.is_empty() {
                let by_alert: HashMap<Uuid, Uuid> = sent_events
                    .keys()
                    .map(|e| (alert_id_for(RULE_BURST, *e), *e))
                    .collect();
                let extra_events: HashSet<Uuid> = extra
                    .iter()
                    .filter_map(|a| by_alert.get(*a).copied())
                    .collect();
                let described: Vec<String> = owned
                    .iter()
                    .enumerate()
                    .filter(|(_, unit)| {
                        unit.events.iter().any(|e| {
                            let id = event_id(e);
                            missing.iter().any(|(r, ev)| *r == RULE_BURST && *ev == id)
                                || extra_events.contains(&id)
                        })
                    })
                    .take(6)
                    .map(|(u, unit)| describe_unit(unit, &expected.fired[u], &stored_alert_set))
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
        Err(e) => problems.push(format!("listing alerts: {e}")),
    }

    // 3. The file channel wrote each expected alert exactly once.
    let file = data_dir.join("alerts.ndjson");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let file_ids: Vec<Uuid> = text
        .lines()
        .filter_map(|line| {
            serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v["alert_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()))
        })
        .collect();
    let file_set: HashSet<Uuid> = file_ids.iter().copied().collect();
    if file_ids.len() != text.lines().count()
        || !duplicates(&file_ids).is_empty()
        || file_set != expected_ids
    {
        problems.push(format!(
            "file channel {}: {} lines, {} alert ids ({} distinct), duplicates {}, missing {}, extra {}",
            file.display(),
            text.lines().count(),
            file_ids.len(),
            file_set.len(),
            sample(duplicates(&file_ids)),
            sample(expected_ids.difference(&file_set)),
            sample(file_set.difference(&expected_ids)),
        ));
    }

    // 4. Nothing dead-lettered, queues drained.
    match &stats {
        Ok(stats) => {
            let bad: Vec<(&String, &QueueStats)> = stats
                .iter()
                .filter(|(_, q)| q.dead_lettered > 0 || q.ready > 0 || q.unacked > 0)
                .collect();
            if !bad.is_empty() {
                problems.push(format!("queues not drained or dead letters: {bad:?}"));
            }
        }
        Err(e) => problems.push(format!("queue stats: {e}")),
    }

    // 5. Scenario-specific: RabbitMQ down => never 202.
    let attempts: Vec<Attempt> = shared.attempts.lock().expect("attempts").clone();
    if let (Some(from), Some(until)) = (report.down_from, report.down_until) {
        let during: Vec<&Attempt> = attempts
            .iter()
            .filter(|a| a.sent >= from && a.answered <= until)
            .collect();
        let accepted = during.iter().filter(|a| a.status == 202).count();
        let unavailable = during.iter().filter(|a| a.status == 503).count();
        let mut codes: HashMap<u16, usize> = HashMap::new();
        for a in &during {
            *codes.entry(a.status).or_default() += 1;
        }
        report.notes.push(format!(
            "broker down {:.1}s..{:.1}s: {} attempts answered within, by status {codes:?}",
            from.as_secs_f64(),
            until.as_secs_f64(),
            during.len()
        ));
        if accepted > 0 {
            problems.push(format!(
                "{accepted} requests answered 202 while the RabbitMQ node was down"
            ));
        }
        if unavailable == 0 {
            problems.push("no request was answered 503 while the RabbitMQ node was down".into());
        }
    } else if fault == Fault::RabbitRestart {
        problems.push("the RabbitMQ down interval was not measured".into());
    }

    // 6. Same process, and a clean stop.
    let process = same_process(&mut platform, pid);
    if let Err(e) = &process {
        problems.push(format!("after the drain: {e}"));
    }
    if process.is_ok() {
        match platform.sigterm_and_wait().await {
            Ok(status) if status.success() => {}
            Ok(status) => problems.push(format!(
                "SIGTERM: auditflow exited with {status}; stderr:\n{}",
                platform.log_tail()
            )),
            Err(e) => problems.push(format!("SIGTERM: {e}")),
        }
    }

    // --- Report ----------------------------------------------------------------
    let not_ready: Vec<&(Duration, String)> =
        samples.iter().filter(|(_, s)| s != "ready").collect();
    let statuses_in_fault: HashSet<&str> = samples
        .iter()
        .filter(|(t, _)| *t >= report.began && *t <= report.ended + Duration::from_secs(1))
        .map(|(_, s)| s.as_str())
        .collect();
    let ready_again = samples
        .iter()
        .filter(|(t, s)| *t >= fault_end && s == "ready")
        .find(|(t, _)| {
            // Ready from here on for at least the next samples up to 1 s.
            samples
                .iter()
                .filter(|(u, _)| *u >= *t && *u <= *t + Duration::from_secs(1))
                .all(|(_, s)| s == "ready")
        })
        .map(|(t, _)| t.saturating_sub(fault_end));
    let first_not_ready = not_ready
        .iter()
        .find(|(t, _)| *t >= report.began)
        .map(|(t, _)| *t);
    let codes = {
        let mut codes: Vec<(u16, usize)> = attempts
            .iter()
            .fold(HashMap::new(), |mut m: HashMap<u16, usize>, a| {
                *m.entry(a.status).or_default() += 1;
                m
            })
            .into_iter()
            .collect();
        codes.sort();
        codes
    };
    println!(
        "recovery[{scenario}]: fault {:.1}s..{:.1}s (took {:.1}s; straddles observed at {:.1}s); {}",
        report.began.as_secs_f64(),
        report.ended.as_secs_f64(),
        (report.ended - report.began).as_secs_f64(),
        observed_at.as_secs_f64(),
        report.notes.join("; ")
    );
    println!(
        "recovery[{scenario}]: readyz during the fault {statuses_in_fault:?}, first not ready at {}, \
         ready again {} after the fault's end; {} of {} samples not ready",
        secs(first_not_ready),
        secs(ready_again),
        not_ready.len(),
        samples.len()
    );
    println!(
        "recovery[{scenario}]: baseline probe (no fault): accepted {} stored {} alert {}; \
         after the fault: accepted {} stored {} alert {} (from the fault's end)",
        secs(baseline.accepted),
        secs(baseline.stored),
        secs(baseline.alerted),
        secs(recovery.accepted),
        secs(recovery.stored),
        secs(recovery.alerted)
    );
    println!(
        "recovery[{scenario}]: SUMMARY events sent {} acked {} stored {} | alerts expected {} \
         stored {} duplicates {} | recovery readyz {} e2e {} | load {:.1}s drain {:.1}s total {:.1}s \
         | attempts by status {codes:?} | pid {pid} unchanged: {}",
        sent_events.len(),
        acked_set.len(),
        stored_events.len(),
        expected_ids.len(),
        stored_alert_count,
        alert_dups,
        secs(ready_again),
        secs(recovery.alerted),
        load_time.as_secs_f64(),
        drain_time.as_secs_f64(),
        test_started.elapsed().as_secs_f64(),
        process.is_ok()
    );
    // The resilience policies' breaker transitions, for the recovery timeline.
    let breaker: Vec<String> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "circuit breaker changed state")
        .take(30)
        .map(|v| {
            format!(
                "{} {} {}->{} {}",
                v["timestamp"]
                    .as_str()
                    .unwrap_or("")
                    .get(11..23)
                    .unwrap_or(""),
                v["dependency"].as_str().unwrap_or("?"),
                v["from"].as_str().unwrap_or("?"),
                v["to"].as_str().unwrap_or("?"),
                v["open_for"].as_str().unwrap_or("")
            )
        })
        .collect();
    println!(
        "recovery[{scenario}]: breaker transitions (wall clock; fault began {:?} after the load start): {breaker:?}",
        report.began
    );
    drop(servers);
    if !problems.is_empty() {
        fail_keeping(
            dir,
            scenario,
            seed,
            format!("recovery violated:\n  {}", problems.join("\n  ")),
        );
    }
}
