//! The scenario catalogue: what each scenario deploys, how much load it
//! drives and which fault it injects. The runner ([`crate::runner`]) does
//! the rest the same way for all of them.

pub mod disk;
pub mod input;
pub mod sabotage;
pub mod webhook;

use std::time::Duration;

use crate::deployment::Mode;
use crate::invariants::Invariant;
use crate::workload::Mix;

/// A fault and its schedule. Times are from the start of the load.
#[derive(Debug, Clone)]
pub enum Fault {
    /// No fault (baseline, and the sabotage controls).
    None,
    /// SIGKILL `process` at each of `at`, starting it again after `down`.
    Kill {
        process: &'static str,
        at: &'static [Duration],
        down: Duration,
    },
    /// SIGKILL each split role in turn (analyze, notify, ingest, api),
    /// `rounds` times, starting each again after `down`.
    KillEachRole { rounds: usize, down: Duration },
    /// SIGTERM the process at `at` (graceful drain), start it again.
    Sigterm { process: &'static str, at: Duration },
    /// `pg_ctl restart -m fast` at `at`.
    PostgresRestart { at: Duration },
    /// Every link to PostgreSQL blackholed (accepted, never answered) for
    /// `for_`, then its connections reset (their streams lost bytes).
    PostgresBlackhole { at: Duration, for_: Duration },
    /// The RabbitMQ node stopped at `at` and started again.
    RabbitRestart { at: Duration },
    /// Redis SIGKILLed at `at` and started again empty (no persistence).
    RedisRestartEmpty { at: Duration, down: Duration },
    /// `latency` (± 10 %) on every link to Redis for `for_`.
    RedisLatency {
        at: Duration,
        for_: Duration,
        latency: Duration,
    },
    /// One link down (connections reset, new ones refused) for `for_`.
    Partition {
        link: &'static str,
        at: Duration,
        for_: Duration,
    },
    /// Every link: new connections reset with probability 0.2, data sliced
    /// into 7-byte segments, and every connection reset every `reset_every`,
    /// for `for_`.
    FlakyLinks {
        at: Duration,
        for_: Duration,
        reset_every: Duration,
    },
    /// The webhook channel's receiver hangs (never answers) for `for_`.
    HangingWebhook { at: Duration, for_: Duration },
    /// The embedded data directory's filesystem filled at `at`; space freed
    /// after `for_`.
    DiskFull { at: Duration, for_: Duration },
    /// Malformed and oversize requests sent alongside the good load.
    MalformedFlood { requests: usize },
}

/// How the load is shaped.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub mix: Mix,
    pub clients: usize,
    pub pace: Duration,
    pub deadline: Duration,
    /// Overload: the pace is set so the offered rate is this multiple of
    /// the rate measured by a calibration load first.
    pub overload_factor: Option<f64>,
}

/// ~2,900 events over 20 s.
pub const STEADY: Shape = Shape {
    mix: Mix {
        bursts: 30,
        pairs: 10,
        spreads: 8,
        doubles: 8,
        split_hosts: 6,
        with_successes: 8,
        shuffled: 8,
        edges: 10,
        files: 12,
        noise_events: 2_500,
        noise_batch: (20, 80),
    },
    clients: 8,
    pace: Duration::from_secs(20),
    deadline: Duration::from_secs(240),
    overload_factor: None,
};

/// ~1,300 events over 8 s: the CI smoke subset.
pub const SMOKE: Shape = Shape {
    mix: Mix {
        bursts: 15,
        pairs: 5,
        spreads: 4,
        doubles: 4,
        split_hosts: 3,
        with_successes: 4,
        shuffled: 4,
        edges: 5,
        files: 6,
        noise_events: 1_100,
        noise_batch: (20, 80),
    },
    clients: 6,
    pace: Duration::from_secs(8),
    deadline: Duration::from_secs(180),
    overload_factor: None,
};

/// ~43,000 events: a quarter to calibrate, the rest offered at 3x.
pub const OVERLOAD: Shape = Shape {
    mix: Mix {
        noise_events: 40_000,
        noise_batch: (50, 150),
        ..STEADY.mix
    },
    clients: 64,
    pace: Duration::from_secs(20),
    deadline: Duration::from_secs(300),
    overload_factor: Some(3.0),
};

/// One scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    pub mode: Mode,
    pub shape: Shape,
    pub fault: Fault,
    /// Extra configuration (TOML) for every process.
    pub config: &'static str,
    /// Part of the CI smoke subset.
    pub smoke: bool,
    /// A negative control: the system is broken on purpose and this
    /// invariant must be reported.
    pub sabotage: Option<(sabotage::Sabotage, Invariant)>,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// When the embedded kill scenarios strike.
const KILL_TWICE: &[Duration] = &[secs(2), secs(5)];
const KILL_FOUR_TIMES: &[Duration] = &[secs(3), secs(7), secs(11), secs(15)];

fn scenario(name: &'static str, mode: Mode, fault: Fault, description: &'static str) -> Scenario {
    Scenario {
        name,
        description,
        mode,
        shape: STEADY,
        fault,
        config: "",
        smoke: false,
        sabotage: None,
    }
}

/// Every scenario, in run order.
pub fn catalogue() -> Vec<Scenario> {
    use Mode::{Embedded, Split};
    let mut all = vec![
        Scenario {
            smoke: true,
            shape: SMOKE,
            ..scenario(
                "kill9-embedded",
                Embedded,
                Fault::Kill {
                    process: "up",
                    at: KILL_TWICE,
                    down: Duration::from_millis(500),
                },
                "`auditflow up` SIGKILLed twice during the load and started again on the same data directory.",
            )
        },
        scenario(
            "kill9-embedded-repeated",
            Embedded,
            Fault::Kill {
                process: "up",
                at: KILL_FOUR_TIMES,
                down: Duration::from_millis(300),
            },
            "`auditflow up` SIGKILLed four times during the load, started again each time.",
        ),
        scenario(
            "kill9-each-role",
            Split,
            Fault::KillEachRole {
                rounds: 2,
                down: secs(1),
            },
            "Split mode: analyze, notify, ingest and api each SIGKILLed in turn, twice, and started again.",
        ),
        Scenario {
            smoke: true,
            shape: SMOKE,
            ..scenario(
                "sigterm-during-load",
                Embedded,
                Fault::Sigterm {
                    process: "up",
                    at: secs(3),
                },
                "SIGTERM to `auditflow up` mid-load: it must drain and exit 0 within the grace period; started again.",
            )
        },
        scenario(
            "postgres-restart",
            Split,
            Fault::PostgresRestart { at: secs(6) },
            "Split mode: the PostgreSQL server restarted (`pg_ctl restart -m fast`) mid-load.",
        ),
        scenario(
            "postgres-blackhole-30s",
            Split,
            Fault::PostgresBlackhole {
                at: secs(5),
                for_: secs(30),
            },
            "Split mode: every connection to PostgreSQL blackholed (bytes accepted, never answered) for 30 s, then reset.",
        ),
        scenario(
            "rabbitmq-restart",
            Split,
            Fault::RabbitRestart { at: secs(6) },
            "Split mode: the RabbitMQ node stopped and started again mid-load (quorum queues on disk).",
        ),
        scenario(
            "redis-restart-data-loss",
            Split,
            Fault::RedisRestartEmpty {
                at: secs(6),
                down: secs(2),
            },
            "Split mode: Redis (window state) SIGKILLed and started again empty: the windows must be rebuilt.",
        ),
        scenario(
            "redis-latency-500ms",
            Split,
            Fault::RedisLatency {
                at: secs(4),
                for_: secs(15),
                latency: Duration::from_millis(500),
            },
            "Split mode: 500 ms (± 10 %) latency on every Redis connection for 15 s.",
        ),
        scenario(
            "partition-analyze-broker",
            Split,
            Fault::Partition {
                link: "analyze->broker",
                at: secs(5),
                for_: secs(20),
            },
            "Split mode: the network between analyze and RabbitMQ cut for 20 s (connections reset, new ones refused).",
        ),
        scenario(
            "flaky-links",
            Split,
            Fault::FlakyLinks {
                at: secs(3),
                for_: secs(15),
                reset_every: secs(4),
            },
            "Split mode: every link (each role to RabbitMQ, PostgreSQL, Redis) resets 20 % of new connections, slices data into 7-byte segments and resets every connection every 4 s, for 15 s.",
        ),
        Scenario {
            smoke: true,
            shape: SMOKE,
            ..scenario(
                "malformed-flood",
                Embedded,
                Fault::MalformedFlood { requests: 600 },
                "600 malformed, invalid and oversize requests mixed into the good load: each must be refused with a 4xx and a reason, none stored, the good events unaffected.",
            )
        },
        scenario(
            "hanging-webhook",
            Embedded,
            Fault::HangingWebhook {
                at: secs(4),
                for_: secs(20),
            },
            "A webhook channel whose receiver accepts connections and never answers for 20 s; the file channel must not wait for it, and the webhook must get every alert once it answers again.",
        ),
        scenario(
            "disk-full-embedded",
            Embedded,
            Fault::DiskFull {
                at: secs(5),
                for_: secs(10),
            },
            "The embedded data directory on a small filesystem, filled to the last byte mid-load for 10 s: new input refused with a clear error, nothing acknowledged lost or corrupted, recovery once space is freed.",
        ),
        Scenario {
            shape: OVERLOAD,
            // A bound the bounded load can reach: backpressure must show.
            config: "[broker]\nmax_queue_depth = 1000\n",
            ..scenario(
                "overload-3x",
                Embedded,
                Fault::None,
                "An offered rate of 3x what the whole pipeline sustained in a calibration load (64 clients as fast as they can), open loop, with the events queue bounded at 1,000: backpressure (429/503 with Retry-After) instead of collapse, memory bounded, nothing acknowledged lost.",
            )
        },
    ];
    all.extend(sabotage::controls());
    all
}
