//! The workload and its independent oracle shared by `tests/crash_safety.rs`,
//! `tests/distributed.rs` and `tests/recovery.rs`: ANLY-SEC-001
//! bursts of every shape, ANLY-SEC-002 file modifications and noise, in the
//! amounts of a [`Mix`], plus groups that straddle a fault. Each (user, host)
//! threshold group lives in exactly one request, so its processing order is
//! known to the oracle (the two default rules, re-implemented here from their
//! specification).

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;

use auditflow_core::alert_id_for;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

pub const RULE_BURST: &str = "ANLY-SEC-001";
pub const RULE_FILE: &str = "ANLY-SEC-002";
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
/// The start of the day event times are spread over: `RECOVERY_EVENT_BASE`
/// (Unix seconds) if set, else [`BASE_SECS`] (in the future, as in
/// `crash_safety.rs`).
fn base_secs() -> i64 {
    std::env::var("RECOVERY_EVENT_BASE")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(BASE_SECS)
}
/// How many units of each kind a workload holds.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub bursts: usize,
    pub pairs: usize,
    pub spreads: usize,
    pub doubles: usize,
    pub split_hosts: usize,
    pub with_successes: usize,
    pub shuffled: usize,
    pub edges: usize,
    pub files: usize,
    /// Noise events on top of the rule units...
    pub noise_events: usize,
    /// ...batched this many (inclusive range) per request.
    pub noise_batch: (usize, usize),
}

impl Mix {
    /// ~21,700 events: the split-process test.
    pub const SPLIT_ROLES: Mix = Mix {
        bursts: 200,
        pairs: 80,
        spreads: 60,
        doubles: 60,
        split_hosts: 40,
        with_successes: 60,
        shuffled: 60,
        edges: 60,
        files: 60,
        noise_events: 19_000,
        noise_batch: (50, 200),
    };

    /// ~23,700 events: the kill -9 test.
    pub const CRASH_SAFETY: Mix = Mix {
        noise_events: 21_000,
        ..Mix::SPLIT_ROLES
    };

    /// ~5,300 events over a ~20 s load: the recovery tests.
    pub const RECOVERY: Mix = Mix {
        bursts: 60,
        pairs: 20,
        spreads: 15,
        doubles: 15,
        split_hosts: 10,
        with_successes: 15,
        shuffled: 15,
        edges: 20,
        files: 20,
        noise_events: 4_500,
        noise_batch: (30, 120),
    };
}
/// Straddling groups of each kind.
const STRADDLES_PER_KIND: usize = 8;

// ---------------------------------------------------------------------------
// Workload

/// How a unit is put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Array,
    Ndjson,
    Single,
}

/// One request's worth of events. Every threshold group (user, host) appears
/// in exactly one unit, in the order the oracle processes it.
#[derive(Debug)]
pub struct Unit {
    pub kind: &'static str,
    /// ANLY-SEC-001 alerts this unit is designed to raise (`None`: the oracle decides).
    pub intent: Option<usize>,
    pub events: Vec<Value>,
    pub encoding: Encoding,
}

/// One HTTP request of the workload, sent until it is answered 202.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: &'static str,
    pub body: Bytes,
    pub content_type: &'static str,
    pub ids: Vec<Uuid>,
}

/// A JSON array request of `events`, in order.
pub fn array_request(kind: &'static str, events: &[Value]) -> Request {
    let ids = events.iter().map(event_id).collect();
    Request {
        kind,
        body: Bytes::from(serde_json::to_vec(events).expect("json")),
        content_type: "application/json",
        ids,
    }
}

impl Unit {
    pub fn request(&self) -> Request {
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

pub struct Gen {
    pub rng: StdRng,
    pub seq: u64,
}

impl Gen {
    /// A generator seeded with `seed` (the same seed gives the same workload).
    pub fn new(seed: u64) -> Gen {
        Gen {
            rng: rand::SeedableRng::seed_from_u64(seed),
            seq: 0,
        }
    }

    fn id(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.rng.random()).into_uuid()
    }

    fn name(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{}", self.seq)
    }

    /// A random event time within the day, with a microsecond part.
    fn t0(&mut self) -> i64 {
        (base_secs() + self.rng.random_range(0..86_400)) * SEC + self.rng.random_range(0..SEC)
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

/// The load's units, in send order (requests are pulled in this order):
/// rule units of every kind among noise, each (user, host) group in exactly
/// one unit.
pub fn generate(g: &mut Gen, mix: &Mix) -> Vec<Unit> {
    let mut units = Vec::new();
    for _ in 0..mix.bursts {
        units.push(g.burst());
    }
    for _ in 0..mix.pairs {
        units.push(g.pair());
    }
    for _ in 0..mix.spreads {
        units.push(g.spread());
    }
    for _ in 0..mix.doubles {
        units.push(g.double());
    }
    for _ in 0..mix.split_hosts {
        units.push(g.split_host());
    }
    for _ in 0..mix.with_successes {
        units.push(g.with_successes());
    }
    for _ in 0..mix.shuffled {
        units.push(g.shuffled());
    }
    for variant in 0..mix.edges {
        units.push(g.edge(variant));
    }
    for i in 0..mix.files {
        let event = g.file_event(i % 3 != 0);
        units.push(Unit {
            kind: "single_file",
            intent: Some(0),
            events: vec![event],
            encoding: Encoding::Single,
        });
    }
    let mut noise = 0;
    while noise < mix.noise_events {
        let (low, high) = mix.noise_batch;
        let n = g.rng.random_range(low..=high).min(mix.noise_events - noise);
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

/// A threshold group sent in two requests around the fault: `events[..split]`
/// before it (and observed: stored, with its alerts), the rest after it.
pub struct Straddle {
    pub unit: Unit,
    pub split: usize,
}

/// Groups that straddle the fault, and groups first seen after it.
pub fn straddles(g: &mut Gen) -> Vec<Straddle> {
    let mut out = Vec::new();
    for _ in 0..STRADDLES_PER_KIND {
        // Two failures before, 1..=3 after, all within 55 s: fires once, on
        // the first failure after the fault (needs the two before).
        let (user, host) = g.group();
        let t0 = g.t0();
        let after = g.rng.random_range(1..=3);
        let mut times = vec![t0, t0 + 10 * SEC];
        for i in 0..after {
            times.push(t0 + (20 + 10 * i) * SEC + g.rng.random_range(0..SEC));
        }
        let events = g.failures(&user, &host, &times);
        out.push(Straddle {
            unit: g.unit("straddle_fires_after", Some(1), events),
            split: 2,
        });

        // Three failures before (fires on the third), 1..=2 after within the
        // cooldown: must not fire again.
        let (user, host) = g.group();
        let t0 = g.t0();
        let after = g.rng.random_range(1..=2);
        let mut times = vec![t0, t0 + 5 * SEC, t0 + 10 * SEC];
        for i in 0..after {
            times.push(t0 + (30 + 10 * i) * SEC + g.rng.random_range(0..SEC));
        }
        let events = g.failures(&user, &host, &times);
        out.push(Straddle {
            unit: g.unit("straddle_cooldown", Some(1), events),
            split: 3,
        });

        // One failure before, one after: below the threshold.
        let (user, host) = g.group();
        let t0 = g.t0();
        let events = g.failures(&user, &host, &[t0, t0 + 20 * SEC]);
        out.push(Straddle {
            unit: g.unit("straddle_pair", Some(0), events),
            split: 1,
        });

        // First seen after the fault: two failures (no fire) ...
        let (user, host) = g.group();
        let t0 = g.t0();
        let events = g.failures(&user, &host, &[t0, t0 + 15 * SEC]);
        out.push(Straddle {
            unit: g.unit("fresh_pair", Some(0), events),
            split: 0,
        });
        // ... and three (fires once).
        let (user, host) = g.group();
        let t0 = g.t0();
        let events = g.failures(&user, &host, &[t0, t0 + 15 * SEC, t0 + 30 * SEC]);
        out.push(Straddle {
            unit: g.unit("fresh_burst", Some(1), events),
            split: 0,
        });
    }
    out
}

/// A sensitive file modification (ANLY-SEC-002, a stateless rule) by a
/// user of its own: its alert, found again by `user_id`, shows that the whole
/// pipeline (ingest, broker, analyze with the window state, notify, store)
/// works end to end.
pub fn probe_event(g: &mut Gen, user: &str) -> Value {
    let t = g.t0();
    g.event(
        t,
        "file-integrity-monitor",
        "probe-host",
        "file_modified",
        "CRITICAL",
        user,
        "MODIFIED",
        json!({ "resource": "/etc/shadow" }),
    )
}

// ---------------------------------------------------------------------------
// Oracle: the default rules, implemented here from their specification.

pub struct Expected {
    /// alert id -> (rule id, triggering event id).
    pub alerts: HashMap<Uuid, (&'static str, Uuid)>,
    /// Per unit: the event ids ANLY-SEC-001 fires on.
    pub fired: Vec<Vec<Uuid>>,
    pub burst_alerts: usize,
    pub file_alerts: usize,
}

/// The unit a threshold group (user, host) lives in, and its members so far
/// as (event time, fired).
type Group = (usize, Vec<(i64, bool)>);

pub fn str_field<'a>(event: &'a Value, key: &str) -> &'a str {
    event.get(key).and_then(Value::as_str).unwrap_or("")
}

pub fn event_id(event: &Value) -> Uuid {
    Uuid::parse_str(str_field(event, "event_id")).expect("generated ids are UUIDs")
}

pub fn event_micros(event: &Value) -> i64 {
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
pub fn oracle(units: &[Unit]) -> Expected {
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
