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
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditflow_core::alert_id_for;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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
/// Noise events (batched 50..=200 per request) on top of the rule units.
const NOISE_EVENTS: usize = 21_000;
/// The whole load (every request answered 202) must finish within this.
const LOAD_DEADLINE: Duration = Duration::from_secs(150);
/// After the load: queues empty and the stored count stable within this.
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);
/// A (re)started process must print its address and be ready within this.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// A SIGTERM'd process must exit within this (its grace period is 10 s).
const STOP_DEADLINE: Duration = Duration::from_secs(30);

const RULE_BURST: &str = "ANLY-SEC-001";
const RULE_FILE: &str = "ANLY-SEC-002";
const EVENTS_QUEUE: &str = "audit_events";
const ALERTS_QUEUE: &str = "audit_alerts";
/// ANLY-SEC-001 parameters (crates/auditflow-rules/rules/default.toml).
const WINDOW_US: i64 = 60_000_000;
const COOLDOWN_US: i64 = 60_000_000;
const THRESHOLD: usize = 3;
/// ANLY-SEC-002's sensitive files.
const SENSITIVE: [&str; 4] = [
    "/etc/passwd",
    "/etc/shadow",
    "/etc/sudoers",
    "/root/.ssh/authorized_keys",
];
/// Event times are spread over the day starting 2031-01-01T00:00:00Z.
const BASE_SECS: i64 = 1_924_992_000;
const SEC: i64 = 1_000_000;

// ---------------------------------------------------------------------------
// Workload

/// How a unit is put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Array,
    Ndjson,
    Single,
}

/// One request's worth of events. Every threshold group (user, host) appears
/// in exactly one unit, in the order the oracle processes it.
#[derive(Debug)]
struct Unit {
    kind: &'static str,
    /// ANLY-SEC-001 alerts this unit is designed to raise (`None`: the oracle decides).
    intent: Option<usize>,
    events: Vec<Value>,
    encoding: Encoding,
}

/// One HTTP request of the workload, sent until it is answered 202.
#[derive(Debug)]
struct Request {
    kind: &'static str,
    body: Bytes,
    content_type: &'static str,
    ids: Vec<Uuid>,
}

impl Unit {
    fn request(&self) -> Request {
        let ids = self
            .events
            .iter()
            .map(|e| Uuid::parse_str(e["event_id"].as_str().expect("event_id")).expect("uuid"))
            .collect();
        let (body, content_type) = match self.encoding {
            Encoding::Array => (
                serde_json::to_vec(&self.events).expect("json"),
                "application/json",
            ),
            Encoding::Single => {
                assert_eq!(self.events.len(), 1, "a single-object unit has one event");
                (
                    serde_json::to_vec(&self.events[0]).expect("json"),
                    "application/json",
                )
            }
            Encoding::Ndjson => {
                let mut body = Vec::new();
                for e in &self.events {
                    serde_json::to_writer(&mut body, e).expect("json");
                    body.push(b'\n');
                }
                (body, "application/x-ndjson")
            }
        };
        Request {
            kind: self.kind,
            body: Bytes::from(body),
            content_type,
            ids,
        }
    }
}

fn timestamp(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .expect("time in range")
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

struct Gen {
    rng: StdRng,
    seq: u64,
}

impl Gen {
    fn id(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.rng.random()).into_uuid()
    }

    fn name(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{}", self.seq)
    }

    /// A random event time within the day, with a microsecond part.
    fn t0(&mut self) -> i64 {
        (BASE_SECS + self.rng.random_range(0..86_400)) * SEC + self.rng.random_range(0..SEC)
    }

    fn ip(&mut self) -> String {
        format!("192.0.2.{}", self.rng.random_range(1..255))
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        t: i64,
        service: &str,
        host: &str,
        event_type: &str,
        severity: &str,
        user: &str,
        result: &str,
        details: Value,
    ) -> Value {
        json!({
            "event_id": self.id().to_string(),
            "timestamp": timestamp(t),
            "source_service": service,
            "server_hostname": host,
            "event_type": event_type,
            "severity": severity,
            "user_id": user,
            "action_result": result,
            "details": details,
        })
    }

    fn login(&mut self, t: i64, user: &str, host: &str, ok: bool) -> Value {
        let details = json!({
            "reason": if ok { "Valid credentials" } else { "Incorrect password" },
            "ip_address": self.ip(),
            "protocol": "ssh",
        });
        let (severity, result) = if ok {
            ("INFO", "SUCCESS")
        } else {
            ("WARNING", "FAILURE")
        };
        self.event(
            t,
            "auth-service",
            host,
            "user_login",
            severity,
            user,
            result,
            details,
        )
    }

    /// `n` sorted, distinct offsets, the first 0, the others within `span`.
    fn offsets(&mut self, n: usize, span: i64) -> Vec<i64> {
        let mut offsets: Vec<i64> = (1..n).map(|_| self.rng.random_range(1..=span)).collect();
        offsets.sort_unstable();
        offsets.dedup();
        while offsets.len() + 1 < n {
            offsets.push(offsets.last().copied().unwrap_or(0) + 1);
        }
        std::iter::once(0).chain(offsets).collect()
    }

    fn group(&mut self) -> (String, String) {
        (self.name("attacker"), self.name("srv"))
    }

    fn failures(&mut self, user: &str, host: &str, times: &[i64]) -> Vec<Value> {
        times
            .iter()
            .map(|&t| self.login(t, user, host, false))
            .collect()
    }

    fn unit(&mut self, kind: &'static str, intent: Option<usize>, events: Vec<Value>) -> Unit {
        Unit {
            kind,
            intent,
            events,
            encoding: Encoding::Array,
        }
    }

    /// 3..=5 failures within 55 s: fires once (on the third), then cooldown.
    fn burst(&mut self) -> Unit {
        let (user, host) = self.group();
        let n = self.rng.random_range(3..=5);
        let t0 = self.t0();
        let times: Vec<i64> = self
            .offsets(n, 55 * SEC)
            .into_iter()
            .map(|o| t0 + o)
            .collect();
        let events = self.failures(&user, &host, &times);
        self.unit("burst", Some(1), events)
    }

    /// Two failures within 55 s: below the threshold.
    fn pair(&mut self) -> Unit {
        let (user, host) = self.group();
        let t0 = self.t0();
        let times: Vec<i64> = self
            .offsets(2, 55 * SEC)
            .into_iter()
            .map(|o| t0 + o)
            .collect();
        let events = self.failures(&user, &host, &times);
        self.unit("pair", Some(0), events)
    }

    /// 3..=5 failures each more than 60 s after the previous one.
    fn spread(&mut self) -> Unit {
        let (user, host) = self.group();
        let n = self.rng.random_range(3..=5);
        let mut t = self.t0();
        let mut times = Vec::new();
        for _ in 0..n {
            times.push(t);
            t += self.rng.random_range(60 * SEC + 1..=110 * SEC);
        }
        let events = self.failures(&user, &host, &times);
        self.unit("spread", Some(0), events)
    }

    /// Two bursts of 3..=4 separated by more than 120 s: fires twice.
    fn double(&mut self) -> Unit {
        let (user, host) = self.group();
        let t0 = self.t0();
        let n1 = self.rng.random_range(3..=4);
        let mut times: Vec<i64> = self
            .offsets(n1, 40 * SEC)
            .into_iter()
            .map(|o| t0 + o)
            .collect();
        let gap = if self.rng.random_bool(0.5) {
            self.rng.random_range(121 * SEC..=170 * SEC)
        } else {
            // Beyond the window state's retention horizon (2 x 60 s + 60 s):
            // the first burst's members are pruned when the second arrives.
            self.rng.random_range(181 * SEC..=300 * SEC)
        };
        let t1 = times.last().copied().unwrap_or(t0) + gap;
        let n2 = self.rng.random_range(3..=4);
        let second: Vec<i64> = self
            .offsets(n2, 40 * SEC)
            .into_iter()
            .map(|o| t1 + o)
            .collect();
        times.extend(second);
        let events = self.failures(&user, &host, &times);
        self.unit("double", Some(2), events)
    }

    /// One user failing twice on each of two hosts, interleaved: groups are
    /// per (user, host), so neither reaches the threshold.
    fn split_host(&mut self) -> Unit {
        let user = self.name("roamer");
        let (a, b) = (self.name("srv"), self.name("srv"));
        let t0 = self.t0();
        let offsets = self.offsets(4, 50 * SEC);
        let events = offsets
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let host = if i % 2 == 0 { &a } else { &b };
                self.login(t0 + o, &user, host, false)
            })
            .collect();
        self.unit("split_host", Some(0), events)
    }

    /// Three failures among successful logins of the same group: fires once.
    fn with_successes(&mut self) -> Unit {
        let (user, host) = self.group();
        let successes = self.rng.random_range(2..=4);
        let t0 = self.t0();
        let offsets = self.offsets(3 + successes, 55 * SEC);
        let mut kinds: Vec<bool> = std::iter::repeat_n(false, 3)
            .chain(std::iter::repeat_n(true, successes))
            .collect();
        kinds.shuffle(&mut self.rng);
        let events = offsets
            .iter()
            .zip(kinds)
            .map(|(o, ok)| self.login(t0 + o, &user, &host, ok))
            .collect();
        self.unit("with_successes", Some(1), events)
    }

    /// 3..=5 failures within 50 s sent out of time order: the window counts
    /// only members within 60 s *before* each event, in processing order.
    fn shuffled(&mut self) -> Unit {
        let (user, host) = self.group();
        let n = self.rng.random_range(3..=5);
        let t0 = self.t0();
        let mut times: Vec<i64> = self
            .offsets(n, 50 * SEC)
            .into_iter()
            .map(|o| t0 + o)
            .collect();
        times.shuffle(&mut self.rng);
        let events = self.failures(&user, &host, &times);
        self.unit("shuffled", None, events)
    }

    /// Exact boundaries of the window (inclusive) and the cooldown (exclusive).
    fn edge(&mut self, variant: usize) -> Unit {
        let (user, host) = self.group();
        let t0 = self.t0();
        let (kind, intent, offsets): (&'static str, usize, Vec<i64>) = match variant % 4 {
            0 => ("edge_window_in", 1, vec![0, 30 * SEC, 60 * SEC]),
            1 => ("edge_window_out", 0, vec![0, 30 * SEC, 60 * SEC + 1]),
            2 => (
                "edge_cooldown_over",
                2,
                vec![0, SEC, 2 * SEC, 50 * SEC, 55 * SEC, 62 * SEC],
            ),
            _ => (
                "edge_cooldown_within",
                1,
                vec![0, SEC, 2 * SEC, 50 * SEC, 55 * SEC, 62 * SEC - 1],
            ),
        };
        let times: Vec<i64> = offsets.into_iter().map(|o| t0 + o).collect();
        let events = self.failures(&user, &host, &times);
        self.unit(kind, Some(intent), events)
    }

    /// A file event that ANLY-SEC-002 must (`fire`) or must not match; the
    /// misses are near misses (wrong result, look-alike path, shadowed field).
    fn file_event(&mut self, fire: bool) -> Value {
        let t = self.t0();
        let user = format!("ops-{}", self.rng.random_range(0..40));
        let host = format!("web-{:02}", self.rng.random_range(0..20));
        let sensitive = *SENSITIVE.choose(&mut self.rng).expect("non-empty");
        let harmless = *[
            "/var/log/app.log",
            "/tmp/build.lock",
            "/etc/hosts",
            "/etc/passwd.bak",
            "/etc/shadow-",
            "/home/ops/.ssh/authorized_keys",
        ]
        .choose(&mut self.rng)
        .expect("non-empty");
        let variant = self.rng.random_range(0..10);
        // (event_type, result, details.resource, top-level resource)
        let (event_type, result, in_details, top): (&str, &str, Option<&str>, Option<&str>) =
            if fire {
                match variant {
                    0..=4 => ("file_modified", "MODIFIED", Some(sensitive), None),
                    5..=8 => ("file_modified", "MODIFIED", None, Some(sensitive)),
                    // details.resource wins over the top-level field.
                    _ => ("file_modified", "MODIFIED", Some(sensitive), Some(harmless)),
                }
            } else {
                match variant {
                    0..=3 => ("file_modified", "MODIFIED", Some(harmless), None),
                    4 => ("file_modified", "MODIFIED", None, Some(harmless)),
                    5 => ("file_modified", "MODIFIED", Some(harmless), Some(sensitive)),
                    6 => ("file_modified", "DENIED", Some(sensitive), None),
                    7 => ("file_accessed", "SUCCESS", Some(sensitive), None),
                    8 => ("file_modified", "MODIFIED", None, None),
                    _ => ("file_accessed", "MODIFIED", None, Some(sensitive)),
                }
            };
        let mut details = json!({ "checksum": format!("{:016x}", self.rng.random::<u64>()) });
        if let Some(path) = in_details {
            details["resource"] = json!(path);
        }
        let mut event = self.event(
            t,
            "file-integrity-monitor",
            &host,
            event_type,
            if fire { "CRITICAL" } else { "INFO" },
            &user,
            result,
            details,
        );
        if let Some(path) = top {
            event["resource"] = json!(path);
        }
        event
    }

    /// Background traffic; never raises ANLY-SEC-001 (a failed login here is
    /// the only member of its own group), sometimes raises ANLY-SEC-002.
    fn noise_event(&mut self) -> Value {
        let t = self.t0();
        let user = format!("user-{}", self.rng.random_range(0..50));
        let host = format!("web-{:02}", self.rng.random_range(0..20));
        match self.rng.random_range(0..100) {
            0..=29 => self.login(t, &user, &host, true),
            30..=31 => {
                let lone = self.name("lone");
                self.login(t, &lone, &host, false)
            }
            32..=46 => {
                let ok = self.rng.random_bool(0.8);
                let details = json!({ "command": "systemctl restart nginx", "tty": "pts/0" });
                self.event(
                    t,
                    "sudo-audit",
                    &host,
                    "sudo_command",
                    if ok { "INFO" } else { "WARNING" },
                    &user,
                    if ok { "SUCCESS" } else { "FAILURE" },
                    details,
                )
            }
            47..=61 => {
                let result = *["STARTED", "STOPPED", "RESTARTED"]
                    .choose(&mut self.rng)
                    .expect("non-empty");
                let details =
                    json!({ "service": "nginx", "pid": self.rng.random_range(100..60_000) });
                self.event(
                    t,
                    "systemd",
                    &host,
                    "service_status_change",
                    "INFO",
                    "root",
                    result,
                    details,
                )
            }
            62..=64 => self.file_event(true),
            65..=89 => self.file_event(false),
            _ => {
                let details = json!({ "dst": self.ip(), "port": 443 });
                self.event(
                    t,
                    "netflow",
                    &host,
                    "network_connection",
                    "INFO",
                    &user,
                    "ALLOWED",
                    details,
                )
            }
        }
    }
}

/// The whole workload, in send order (requests are pulled in this order).
fn generate(seed: u64) -> Vec<Unit> {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        seq: 0,
    };
    let mut units = Vec::new();
    for _ in 0..200 {
        units.push(g.burst());
    }
    for _ in 0..80 {
        units.push(g.pair());
    }
    for _ in 0..60 {
        units.push(g.spread());
    }
    for _ in 0..60 {
        units.push(g.double());
    }
    for _ in 0..40 {
        units.push(g.split_host());
    }
    for _ in 0..60 {
        units.push(g.with_successes());
    }
    for _ in 0..60 {
        units.push(g.shuffled());
    }
    for variant in 0..60 {
        units.push(g.edge(variant));
    }
    for i in 0..60 {
        let event = g.file_event(i % 3 != 0);
        units.push(Unit {
            kind: "single_file",
            intent: Some(0),
            events: vec![event],
            encoding: Encoding::Single,
        });
    }
    let mut noise = 0;
    while noise < NOISE_EVENTS {
        let n = g.rng.random_range(50..=200).min(NOISE_EVENTS - noise);
        let events: Vec<Value> = (0..n).map(|_| g.noise_event()).collect();
        noise += n;
        let encoding = if g.rng.random_bool(0.25) {
            Encoding::Ndjson
        } else {
            Encoding::Array
        };
        units.push(Unit {
            kind: "noise",
            intent: Some(0),
            events,
            encoding,
        });
    }
    units.shuffle(&mut g.rng);
    units
}

// ---------------------------------------------------------------------------
// Oracle: the default rules, implemented here from their specification.

struct Expected {
    /// alert id -> (rule id, triggering event id).
    alerts: HashMap<Uuid, (&'static str, Uuid)>,
    /// Per unit: the event ids ANLY-SEC-001 fires on.
    fired: Vec<Vec<Uuid>>,
    burst_alerts: usize,
    file_alerts: usize,
}

/// The unit a threshold group (user, host) lives in, and its members so far
/// as (event time, fired).
type Group = (usize, Vec<(i64, bool)>);

fn str_field<'a>(event: &'a Value, key: &str) -> &'a str {
    event.get(key).and_then(Value::as_str).unwrap_or("")
}

fn event_id(event: &Value) -> Uuid {
    Uuid::parse_str(str_field(event, "event_id")).expect("generated ids are UUIDs")
}

fn event_micros(event: &Value) -> i64 {
    DateTime::parse_from_rfc3339(str_field(event, "timestamp"))
        .expect("generated timestamps are RFC 3339")
        .timestamp_micros()
}

/// ANLY-SEC-002: `details.resource` if it is a string, else top-level `resource`.
fn is_sensitive_modification(event: &Value) -> bool {
    let resource = event
        .get("details")
        .and_then(|d| d.get("resource"))
        .and_then(Value::as_str)
        .or_else(|| event.get("resource").and_then(Value::as_str));
    str_field(event, "event_type") == "file_modified"
        && str_field(event, "action_result") == "MODIFIED"
        && resource.is_some_and(|r| SENSITIVE.contains(&r))
}

fn is_failed_login(event: &Value) -> bool {
    str_field(event, "event_type") == "user_login" && str_field(event, "action_result") == "FAILURE"
}

/// Runs both rules over the units in processing order (which, per group, is
/// send order: every group lives in exactly one unit).
fn oracle(units: &[Unit]) -> Expected {
    let mut groups: HashMap<(String, String), Group> = HashMap::new();
    let mut alerts = HashMap::new();
    let mut fired = vec![Vec::new(); units.len()];
    let (mut burst_alerts, mut file_alerts) = (0, 0);
    for (u, unit) in units.iter().enumerate() {
        for event in &unit.events {
            let id = event_id(event);
            if is_failed_login(event) {
                let key = (
                    str_field(event, "user_id").to_string(),
                    str_field(event, "server_hostname").to_string(),
                );
                let (owner, members) = groups.entry(key.clone()).or_insert((u, Vec::new()));
                assert_eq!(*owner, u, "workload bug: group {key:?} spans two requests");
                let t = event_micros(event);
                let count = 1 + members
                    .iter()
                    .filter(|(m, _)| *m >= t - WINDOW_US && *m <= t)
                    .count();
                let cooling = members
                    .iter()
                    .any(|(m, f)| *f && (m - t).abs() < COOLDOWN_US);
                let fire = count >= THRESHOLD && !cooling;
                members.push((t, fire));
                if fire {
                    alerts.insert(alert_id_for(RULE_BURST, id), (RULE_BURST, id));
                    fired[u].push(id);
                    burst_alerts += 1;
                }
            }
            if is_sensitive_modification(event) {
                alerts.insert(alert_id_for(RULE_FILE, id), (RULE_FILE, id));
                file_alerts += 1;
            }
        }
    }
    // Self-check: the oracle agrees with what each unit was designed to do.
    let wrong: Vec<String> = units
        .iter()
        .zip(&fired)
        .filter(|(unit, fired)| unit.intent.is_some_and(|n| n != fired.len()))
        .map(|(unit, fired)| {
            format!(
                "{} designed for {:?} alerts, oracle fires {}",
                unit.kind,
                unit.intent,
                fired.len()
            )
        })
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "workload/oracle self-check: {wrong:#?}");
    Expected {
        alerts,
        fired,
        burst_alerts,
        file_alerts,
    }
}

// ---------------------------------------------------------------------------
// The platform as a child process

struct Server {
    child: Child,
    pid: u32,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Starts `auditflow up`; returns once it printed its address and `/readyz` is 200.
async fn start_server(
    port: u16,
    data_dir: &Path,
    log: &Path,
    start_no: usize,
    api: &reqwest::Client,
) -> Result<Server, String> {
    let deadline = Instant::now() + START_DEADLINE;
    let mut log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("opening {}: {e}", log.display()))?;
    writeln!(log_file, "=== start #{start_no} ===").map_err(|e| e.to_string())?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_auditflow"));
    command
        .arg("up")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDITFLOW_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("spawning auditflow: {e}"))?;
    let pid = child.id().ok_or("auditflow exited at once")?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut lines = BufReader::new(stdout).lines();
    let listening = tokio::time::timeout_at(deadline.into(), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("listening on http://") {
                return true;
            }
        }
        false
    })
    .await;
    match listening {
        Ok(true) => {}
        Ok(false) => {
            let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .map_err(|_| format!("start #{start_no}: stdout closed but auditflow runs on"))?
                .map_err(|e| e.to_string())?;
            return Err(format!(
                "start #{start_no}: auditflow exited ({status}) before listening; stderr:\n{}",
                log_tail(log)
            ));
        }
        Err(_) => {
            return Err(format!(
                "start #{start_no}: no 'listening on' line within {START_DEADLINE:?}; stderr:\n{}",
                log_tail(log)
            ))
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = format!("http://127.0.0.1:{port}/readyz");
    loop {
        if let Ok(response) = api.get(&url).send().await {
            if response.status() == reqwest::StatusCode::OK {
                return Ok(Server { child, pid });
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "start #{start_no}: auditflow exited ({status}) before ready; stderr:\n{}",
                log_tail(log)
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "start #{start_no}: /readyz not 200 within {START_DEADLINE:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Starts the server, retrying only when the port could not be bound again.
async fn restart(
    port: u16,
    data_dir: &Path,
    log: &Path,
    start_no: usize,
    api: &reqwest::Client,
) -> Result<Server, String> {
    let mut tries = 0;
    loop {
        match start_server(port, data_dir, log, start_no, api).await {
            Err(e) if e.contains("binding") && tries < 5 => {
                tries += 1;
                eprintln!("crash_safety: port {port} not free yet, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

async fn sigterm_and_wait(server: &mut Server) -> Result<ExitStatus, String> {
    let pid = libc::pid_t::try_from(server.pid).map_err(|e| e.to_string())?;
    // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(format!(
            "kill(SIGTERM): {}",
            std::io::Error::last_os_error()
        ));
    }
    match tokio::time::timeout(STOP_DEADLINE, server.child.wait()).await {
        Ok(status) => status.map_err(|e| e.to_string()),
        Err(_) => {
            let _ = server.child.start_kill();
            let _ = server.child.wait().await;
            Err(format!("no exit within {STOP_DEADLINE:?} of SIGTERM"))
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

async fn get_json(api: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = api
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("GET {url}: {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("GET {url}: {e}: {text}"))
}

/// Every item of a cursor-paginated listing.
async fn list_all(api: &reqwest::Client, base: &str, path: &str) -> Result<Vec<Value>, String> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut url = format!("{base}{path}?limit=1000");
        if let Some(c) = &cursor {
            url.push_str("&cursor=");
            url.push_str(c);
        }
        let page = get_json(api, &url).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(items),
        }
    }
    Err(format!("{path}: more than 10 000 pages"))
}

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
            let events = list_all(api, base, "/v1/events").await?;
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

    let units = generate(seed);
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

    let mut starts = 1;
    let mut server = match start_server(port, &data_dir, &log, starts, &api).await {
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
        let _ = server.child.start_kill(); // SIGKILL
        let _ = server.child.wait().await;
        kills += 1;
        if in_flight > 0 {
            kills_in_flight += 1;
        }
        let killed_at = load_started.elapsed();
        starts += 1;
        let restarted = Instant::now();
        server = match restart(port, &data_dir, &log, starts, &api).await {
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
        let _ = sigterm_and_wait(&mut server).await;
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
            let _ = sigterm_and_wait(&mut server).await;
            keep_dir_and_panic(dir, seed, e);
        }
    };
    let drain_time = drain_started.elapsed();
    let stored_alerts = list_all(&api, &base, "/v1/alerts").await;
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
    match sigterm_and_wait(&mut server).await {
        Ok(status) if status.success() => {}
        Ok(status) => problems.push(format!(
            "SIGTERM: auditflow exited with {status}; stderr:\n{}",
            log_tail(&log)
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
        starts,
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
