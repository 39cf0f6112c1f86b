//! Runs one scenario: deploy, load, fault, probe, settle, check, report.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faultproxy::Direction;
use uuid::Uuid;

use crate::deployment::{DeploySpec, Deployment, Mode};
use crate::invariants::{check_all, ChannelLog, Expectation, Invariant, Violation};
use crate::load::{self, http_client, LoadCounters, LoadOutcome, Pacing};
use crate::observe::{file_deliveries, observe_state, queue_depth, wait_complete, Probe, Timeline};
use crate::report::{FaultRecord, ScenarioReport};
use crate::scenarios::disk::SmallDisk;
use crate::scenarios::input;
use crate::scenarios::sabotage;
use crate::scenarios::webhook::Receiver;
use crate::scenarios::{Fault, Scenario};
use crate::workload::{event_id, generate, oracle, Gen, Request, Unit, RULE_FILE};

/// How long the probe may take after a fault ends.
const PROBE_DEADLINE: Duration = Duration::from_secs(180);
/// How long everything acknowledged may take to show up after the load.
const COMPLETE_DEADLINE: Duration = Duration::from_secs(180);
/// The overload scenario's bound on the process's peak RSS.
const OVERLOAD_RSS_LIMIT_MIB: f64 = 512.0;
/// How long a healthy channel may take while another one hangs.
const FILE_DURING_HANG_LIMIT: Duration = Duration::from_secs(5);
/// The small filesystem of the disk-full scenario.
const SMALL_DISK_MIB: u64 = 96;

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `auditflow` binary under test.
    pub binary: PathBuf,
    /// Fixes the seed of every scenario (replay); random otherwise.
    pub seed: Option<u64>,
    /// Keep each scenario's directory (logs, data) even when it passed.
    pub keep: bool,
    /// Scenario directories are created here.
    pub work_dir: PathBuf,
}

/// A fault's span, from the start of the load.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Duration,
    end: Duration,
}

/// What the fault injection hands back.
#[derive(Default)]
struct Injected {
    window: Option<Window>,
    faults: Vec<FaultRecord>,
    violations: Vec<Violation>,
    notes: Vec<String>,
    /// Probes sent during the fault: (event, alert id, acknowledged).
    probes: Vec<(serde_json::Value, Uuid, bool)>,
}

impl Injected {
    fn record(&mut self, t0: Instant, action: impl Into<String>) -> Duration {
        let at = t0.elapsed();
        self.faults.push(FaultRecord {
            at_s: at.as_secs_f64(),
            action: action.into(),
        });
        at
    }
}

/// Runs `scenario`; never panics on a failure of the system under test.
pub async fn run_scenario(scenario: &Scenario, options: &RunOptions) -> ScenarioReport {
    let seed = options.seed.unwrap_or_else(rand::random);
    let mut report = ScenarioReport {
        name: scenario.name.to_string(),
        mode: Some(scenario.mode),
        description: scenario.description.to_string(),
        seed,
        expect_violation: scenario.sabotage.map(|(_, invariant)| invariant),
        ..Default::default()
    };
    let started = Instant::now();
    let dir = options.work_dir.join(format!("{}-{seed}", scenario.name));
    let result = match std::fs::create_dir_all(&dir) {
        Ok(()) => execute(scenario, options, seed, &dir, &mut report).await,
        Err(e) => Err(format!("creating {}: {e}", dir.display())),
    };
    if let Err(e) = result {
        report.error = Some(e);
    }
    report.duration_s = started.elapsed().as_secs_f64();
    report.judge();
    if report.passed && !options.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        report
            .notes
            .push(format!("logs and data kept in {}", dir.display()));
    }
    report
}

fn webhook_config(url: &str) -> String {
    format!(
        "[[notify.channels]]\nkind = \"log\"\nname = \"log\"\n\n\
         [[notify.channels]]\nkind = \"file\"\nname = \"file\"\n\n\
         [[notify.channels]]\nkind = \"webhook\"\nname = \"hook\"\nurl = \"{url}\"\n"
    )
}

async fn execute(
    scenario: &Scenario,
    options: &RunOptions,
    seed: u64,
    dir: &Path,
    report: &mut ScenarioReport,
) -> Result<(), String> {
    let http = http_client();
    let mut spec = DeploySpec::new(scenario.mode);
    spec.config = scenario.config.to_string();
    let mut receiver = None;
    let mut disk = None;
    match scenario.fault {
        Fault::HangingWebhook { .. } => {
            let r = Receiver::start().await?;
            spec.config.push_str(&webhook_config(&r.url()));
            receiver = Some(r);
        }
        Fault::DiskFull { .. } => {
            let d = SmallDisk::mount(&dir.join("small-disk"), SMALL_DISK_MIB)?;
            spec.data_dir = Some(d.path.join("data"));
            disk = Some(d);
        }
        _ => {}
    }
    let mut deployment = Deployment::start(&spec, &options.binary, dir, &http).await?;

    // The workload and what the oracle expects of it.
    let mut gen = Gen::new(seed);
    let units = generate(&mut gen, &scenario.shape.mix);
    let expected = oracle(&units);
    let requests: Vec<Request> = units.iter().map(Unit::request).collect();
    let sent: HashSet<Uuid> = units
        .iter()
        .flat_map(|u| u.events.iter().map(event_id))
        .collect();
    report.requests = requests.len();
    report.events_sent = sent.len();

    let counters = Arc::new(LoadCounters::default());
    let t0 = Instant::now();
    let timeline = Timeline::start(&deployment, http.clone(), t0);
    let (calibration, main) = split_for_overload(scenario, requests);
    let mut calibrated = LoadOutcome::default();
    let mut pacing = Pacing {
        clients: scenario.shape.clients,
        pace: scenario.shape.pace,
        deadline: scenario.shape.deadline,
    };
    if let (Some(factor), Some(calibration)) = (scenario.shape.overload_factor, calibration) {
        // The sustainable rate is what the whole pipeline processes: the
        // calibration batch sent as fast as 64 clients can (closed loop: as
        // much as it takes), timed until the events queue is empty again.
        let events: usize = calibration.iter().map(|r| r.ids.len()).sum();
        let began = Instant::now();
        calibrated = load::run(
            deployment.ingest_url(),
            calibration,
            Pacing {
                clients: 64,
                pace: Duration::ZERO,
                deadline: scenario.shape.deadline,
            },
            seed,
            counters.clone(),
        )
        .await;
        let drain_deadline = Instant::now() + COMPLETE_DEADLINE;
        while queue_depth(&http, &deployment.api_base(), "audit_events").await != Some(0) {
            if Instant::now() > drain_deadline {
                return Err("calibration: the events queue did not drain".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = began.elapsed().as_secs_f64().max(0.001);
        let rate = events as f64 / took;
        let main_events: usize = main.iter().map(|r| r.ids.len()).sum();
        pacing.pace = Duration::from_secs_f64(main_events as f64 / (rate * factor));
        // Open loop: one client per request, each released on its schedule
        // whether or not the earlier ones were answered, so the offered
        // rate really is `factor` times the sustainable one.
        pacing.clients = main.len().max(1);
        report.notes.push(format!(
            "calibration: {events} events ingested and analysed in {took:.2} s = {rate:.0} events/s sustained; \
             then {main_events} events offered at {factor}x that ({:.0} events/s over {:.2} s), open loop ({} clients, one per request)",
            rate * factor,
            pacing.pace.as_secs_f64(),
            pacing.clients
        ));
    }
    let load_task = tokio::spawn(load::run(
        deployment.ingest_url(),
        main,
        pacing,
        seed,
        counters.clone(),
    ));
    let flood_task = match scenario.fault {
        Fault::MalformedFlood { requests } => Some(tokio::spawn(input::flood(
            deployment.ingest_url(),
            requests,
            seed,
        ))),
        _ => None,
    };

    let mut injected = inject(
        &scenario.fault,
        &mut gen,
        &mut deployment,
        t0,
        &http,
        receiver.as_ref(),
        disk.as_ref(),
        &counters,
    )
    .await?;

    // Recovery: detection from the readiness timeline, RTO from a probe.
    let mut probe_sent = None;
    if let Some(window) = injected.window {
        report.detect_s = timeline
            .first_unready_since(window.start)
            .filter(|at| *at <= window.end + Duration::from_secs(10))
            .map(|at| (at.saturating_sub(window.start)).as_secs_f64());
        let probe = Probe::new(&mut gen, 0);
        let (rto, acked) = probe
            .run(
                &http,
                &deployment.ingest_url(),
                &deployment.api_base(),
                t0 + window.end,
                PROBE_DEADLINE,
            )
            .await;
        report.rto_s = rto.map(|d| d.as_secs_f64());
        if rto.is_none() {
            injected.violations.push(Violation::new(
                Invariant::HealthyAgain,
                format!(
                    "the probe's alert was not stored within {PROBE_DEADLINE:?} of the fault's end"
                ),
            ));
        }
        probe_sent = Some((probe, acked));
    }

    let mut outcome = match load_task.await {
        Ok(outcome) => outcome,
        Err(e) => return Err(format!("load task: {e}")),
    };
    outcome.acked.extend(calibrated.acked);
    outcome.errors.extend(calibrated.errors);
    if let Some(window) = injected.window {
        report.ready_s = timeline
            .all_ready_since(window.end)
            .map(|at| at.saturating_sub(window.end).as_secs_f64());
    }
    timeline.stop();

    let mut expect = Expectation {
        acked: outcome.acked,
        sent,
        alerts: expected
            .alerts
            .iter()
            .map(|(id, (rule, event))| (*id, (rule.to_string(), *event)))
            .collect(),
    };
    let probes = probe_sent
        .iter()
        .map(|(probe, acked)| (probe.event.clone(), probe.alert_id, *acked))
        .chain(injected.probes.iter().cloned());
    for (event, alert_id, acked) in probes {
        let id = event_id(&event);
        expect.sent.insert(id);
        if acked {
            expect.acked.push(id);
            expect.alerts.insert(alert_id, (RULE_FILE.to_string(), id));
        }
    }
    let mut violations = injected.violations;
    if !outcome.errors.is_empty() {
        violations.push(Violation::new(
            Invariant::LoadCompleted,
            format!(
                "{} requests not acknowledged: {}",
                outcome.errors.len(),
                outcome
                    .errors
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ));
    }

    let webhook_deliveries = receiver.as_ref().map(|r| move || r.delivered());
    let also = webhook_deliveries
        .as_ref()
        .map(|read| read as &dyn Fn() -> Vec<Uuid>);
    if let Err(e) = wait_complete(&http, &deployment, &expect, COMPLETE_DEADLINE, also).await {
        injected.notes.push(format!("drain: {e}"));
    }
    if let Some((sabotage, _)) = scenario.sabotage.filter(|(s, _)| !s.after_state()) {
        let done = sabotage::apply(sabotage, &mut deployment).await?;
        injected.notes.push(format!("sabotage: {done}"));
    }
    let mut observed = observe_state(&http, &deployment).await?;
    if let Some(r) = &receiver {
        observed.channels.push(ChannelLog {
            name: "hook (webhook)".into(),
            deliveries: r.delivered(),
        });
        injected.notes.push(format!(
            "the webhook receiver left {} requests unanswered while hanging",
            r.hung_requests()
        ));
    }
    if let Some((sabotage, _)) = scenario.sabotage.filter(|(s, _)| s.after_state()) {
        let done = sabotage::apply(sabotage, &mut deployment).await?;
        injected.notes.push(format!("sabotage: {done}"));
    }
    observed.health = deployment.health(&http).await;
    violations.extend(check_all(&expect, &observed));

    if let Some(flood) = flood_task {
        let flood = flood.await.map_err(|e| format!("flood task: {e}"))?;
        let stored: HashSet<Uuid> = observed.events.iter().copied().collect();
        let bad_stored = flood.ids.iter().filter(|id| stored.contains(id)).count();
        if bad_stored > 0 {
            violations.push(Violation::new(
                Invariant::Scenario,
                format!("{bad_stored} events of refused requests were stored"),
            ));
        }
        if !flood.problems.is_empty() {
            violations.push(Violation::new(
                Invariant::Scenario,
                format!(
                    "{} bad requests not refused with a 4xx and a reason: {}",
                    flood.problems.len(),
                    flood
                        .problems
                        .iter()
                        .take(4)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ));
        }
        report.notes.push(format!(
            "bad requests by kind and answer: {:?}",
            flood.answers
        ));
    }

    for p in &deployment.procs {
        if let Some((_, peak)) = p.rss_kib() {
            report
                .peak_rss_mib
                .insert(p.launch.name.clone(), peak as f64 / 1024.0);
        }
    }
    if scenario.shape.overload_factor.is_some() {
        let statuses = counters.statuses();
        let pushed_back: u64 = [429u16, 503].iter().filter_map(|s| statuses.get(s)).sum();
        report.notes.push(format!(
            "backpressure: {pushed_back} answers 429/503 (retried by the clients until acknowledged)"
        ));
        if pushed_back == 0 {
            violations.push(Violation::new(
                Invariant::Scenario,
                "no 429/503 at all: the offered load did not overload the platform, or it buffered without bound",
            ));
        }
        for (name, mib) in &report.peak_rss_mib {
            if *mib > OVERLOAD_RSS_LIMIT_MIB {
                violations.push(Violation::new(
                    Invariant::Scenario,
                    format!(
                        "{name}: peak RSS {mib:.0} MiB over the {OVERLOAD_RSS_LIMIT_MIB} MiB bound"
                    ),
                ));
            }
        }
    }

    // The report's counts.
    let stored: HashSet<Uuid> = observed.events.iter().copied().collect();
    report.events_acked = expect.acked.iter().collect::<HashSet<_>>().len();
    report.events_stored = observed.events.len();
    report.rpo_events_lost = expect
        .acked
        .iter()
        .filter(|id| !stored.contains(id))
        .count();
    report.alerts_expected = expect.alerts.len();
    report.alerts_stored = observed.alerts.len();
    let distinct: HashSet<Uuid> = observed.alerts.iter().map(|a| a.0).collect();
    report.alerts_duplicated = observed.alerts.len() - distinct.len();
    for channel in &observed.channels {
        report
            .deliveries
            .insert(channel.name.clone(), channel.deliveries.len());
    }
    report.attempts = counters.attempts.load(Ordering::Relaxed);
    report.retries = counters.retries.load(Ordering::Relaxed);
    report.statuses = counters.statuses();
    for (status, reasons) in counters.reasons() {
        report
            .notes
            .push(format!("reasons given with {status}: {reasons:?}"));
    }
    report.events_sent = expect.sent.len();

    // A graceful stop is part of being healthy.
    let stop_failures = deployment.stop().await;
    if !stop_failures.is_empty() && scenario.sabotage.is_none() {
        violations.push(Violation::new(
            Invariant::HealthyAgain,
            format!("graceful stop at the end: {}", stop_failures.join("; ")),
        ));
    }
    report.faults = injected.faults;
    report.notes.extend(injected.notes);
    report.violations = violations;
    drop(disk);
    Ok(())
}

/// The overload scenario sends its first quarter as a calibration load.
fn split_for_overload(
    scenario: &Scenario,
    mut requests: Vec<Request>,
) -> (Option<Vec<Request>>, Vec<Request>) {
    if scenario.shape.overload_factor.is_none() {
        return (None, requests);
    }
    let rest = requests.split_off(requests.len() / 4);
    (Some(requests), rest)
}

/// Sleeps until `at` after `t0`.
async fn at(t0: Instant, at: Duration) {
    tokio::time::sleep_until((t0 + at).into()).await;
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("blocking task: {e}"))?
}

/// Injects `fault` on its schedule; returns once it is over.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
async fn inject(
    fault: &Fault,
    gen: &mut Gen,
    deployment: &mut Deployment,
    t0: Instant,
    http: &reqwest::Client,
    receiver: Option<&Receiver>,
    disk: Option<&SmallDisk>,
    counters: &LoadCounters,
) -> Result<Injected, String> {
    let mut out = Injected::default();
    match fault {
        Fault::None | Fault::MalformedFlood { .. } => {}
        Fault::Kill {
            process,
            at: times,
            down,
        } => {
            let mut start = None;
            for when in *times {
                at(t0, *when).await;
                let acked = counters.acked_events.load(Ordering::SeqCst);
                deployment.proc(process)?.kill9().await;
                let killed = out.record(
                    t0,
                    format!("SIGKILL {process} ({acked} events acked so far)"),
                );
                start.get_or_insert(killed);
                tokio::time::sleep(*down).await;
                deployment.proc(process)?.start_again(http).await?;
                out.record(t0, format!("{process} started again and ready"));
            }
            out.window = start.map(|start| Window {
                start,
                end: t0.elapsed(),
            });
        }
        Fault::KillEachRole { rounds, down } => {
            if deployment.mode != Mode::Split {
                return Err("kill-each-role needs split mode".into());
            }
            let mut start = None;
            for round in 0..*rounds {
                for role in ["analyze", "notify", "ingest", "api"] {
                    at(
                        t0,
                        Duration::from_secs(2 + (round as u64 * 4 + role_index(role)) * 2),
                    )
                    .await;
                    deployment.proc(role)?.kill9().await;
                    let killed = out.record(t0, format!("SIGKILL {role} (round {})", round + 1));
                    start.get_or_insert(killed);
                    tokio::time::sleep(*down).await;
                    deployment.proc(role)?.start_again(http).await?;
                    out.record(t0, format!("{role} started again and ready"));
                }
            }
            out.window = start.map(|start| Window {
                start,
                end: t0.elapsed(),
            });
        }
        Fault::Sigterm { process, at: when } => {
            at(t0, *when).await;
            let start = out.record(t0, format!("SIGTERM {process}"));
            let asked = Instant::now();
            let status = deployment.proc(process)?.sigterm_and_wait().await;
            let took = asked.elapsed();
            out.record(
                t0,
                format!(
                    "{process} exited after {:.2} s: {status:?}",
                    took.as_secs_f64()
                ),
            );
            match status {
                Ok(s) if s.success() => {}
                other => out.violations.push(Violation::new(
                    Invariant::Scenario,
                    format!("SIGTERM during load: exit {other:?} after {took:?}, not 0"),
                )),
            }
            deployment.proc(process)?.start_again(http).await?;
            let end = out.record(t0, format!("{process} started again and ready"));
            out.window = Some(Window { start, end });
        }
        Fault::PostgresRestart { at: when } => {
            at(t0, *when).await;
            let start = out.record(t0, "pg_ctl restart -m fast");
            let pg_dir_port = deployment
                .pg
                .as_ref()
                .map(|pg| pg.port)
                .ok_or("no PostgreSQL")?;
            let pg = deployment.pg.take().ok_or("no PostgreSQL")?;
            let (pg, restarted) = blocking(move || {
                let r = pg.restart();
                Ok((pg, r))
            })
            .await?;
            deployment.pg = Some(pg);
            restarted?;
            let end = out.record(
                t0,
                format!("PostgreSQL (port {pg_dir_port}) accepting connections again"),
            );
            out.window = Some(Window { start, end });
        }
        Fault::PostgresBlackhole { at: when, for_ } => {
            at(t0, *when).await;
            let links = deployment.links_to("store");
            for l in &links {
                l.set_blackhole(Direction::Both, true);
            }
            let start = out.record(
                t0,
                format!(
                    "blackhole on every link to PostgreSQL ({} links) for {for_:?}",
                    links.len()
                ),
            );
            tokio::time::sleep(*for_).await;
            for l in &links {
                l.set_blackhole(Direction::Both, false);
                l.reset_connections();
            }
            let end = out.record(
                t0,
                "blackhole lifted, the connections that lost bytes reset",
            );
            out.window = Some(Window { start, end });
        }
        Fault::RabbitRestart { at: when } => {
            at(t0, *when).await;
            let start = out.record(t0, "rabbitmqctl stop");
            let mut node = deployment.rabbit.take().ok_or("no RabbitMQ")?;
            let (node, result) = blocking(move || {
                let r = node.stop().and_then(|()| node.start_again());
                Ok((node, r))
            })
            .await?;
            deployment.rabbit = Some(node);
            let took = result?;
            let end = out.record(
                t0,
                format!("RabbitMQ started again (boot {:.1} s)", took.as_secs_f64()),
            );
            out.window = Some(Window { start, end });
        }
        Fault::RedisRestartEmpty { at: when, down } => {
            at(t0, *when).await;
            let mut redis = deployment.redis.take().ok_or("no Redis")?;
            redis.kill();
            let start = out.record(t0, "Redis SIGKILLed (its data is gone)");
            tokio::time::sleep(*down).await;
            let (redis, result) = blocking(move || {
                let r = redis.start_again();
                Ok((redis, r))
            })
            .await?;
            deployment.redis = Some(redis);
            result?;
            let end = out.record(t0, "Redis started again, empty");
            out.window = Some(Window { start, end });
        }
        Fault::RedisLatency {
            at: when,
            for_,
            latency,
        } => {
            at(t0, *when).await;
            let links = deployment.links_to("cache");
            for l in &links {
                l.set_latency(Direction::Both, *latency, *latency / 10);
            }
            let start = out.record(
                t0,
                format!("{latency:?} latency on every link to Redis for {for_:?}"),
            );
            tokio::time::sleep(*for_).await;
            for l in &links {
                l.clear_latency(Direction::Both);
            }
            let end = out.record(t0, "latency removed");
            out.window = Some(Window { start, end });
        }
        Fault::Partition {
            link,
            at: when,
            for_,
        } => {
            at(t0, *when).await;
            let handle = deployment.link(link)?;
            handle.down();
            let start = out.record(t0, format!("link {link} down for {for_:?}"));
            tokio::time::sleep(*for_).await;
            handle.up();
            let end = out.record(t0, format!("link {link} up"));
            out.window = Some(Window { start, end });
        }
        Fault::FlakyLinks {
            at: when,
            for_,
            reset_every,
        } => {
            at(t0, *when).await;
            let links: Vec<_> = deployment.links.iter().map(|l| l.faults()).collect();
            for l in &links {
                l.set_reset_probability(0.2).map_err(|e| e.to_string())?;
                l.set_slicer(
                    Direction::Both,
                    std::num::NonZeroUsize::MIN.saturating_add(6),
                    Duration::from_micros(200),
                );
            }
            let start = out.record(t0, format!("{} links flaky for {for_:?}", links.len()));
            let until = Instant::now() + *for_;
            while Instant::now() + *reset_every <= until {
                tokio::time::sleep(*reset_every).await;
                for l in &links {
                    l.reset_connections();
                }
                out.record(t0, "every connection on every link reset");
            }
            tokio::time::sleep_until(until.into()).await;
            for l in &links {
                l.clear_all();
            }
            let end = out.record(t0, "links healthy again");
            out.window = Some(Window { start, end });
        }
        Fault::HangingWebhook { at: when, for_ } => {
            let receiver = receiver.ok_or("no webhook receiver")?;
            at(t0, *when).await;
            receiver.hang(true);
            let start = out.record(t0, format!("webhook receiver hangs for {for_:?}"));
            // The other channels must not wait for the hanging one: a probe
            // sent 2 s into the hang must reach the file channel promptly.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let probe = Probe::new(gen, 1);
            let sent = Instant::now();
            let acked = probe
                .send(http, &deployment.ingest_url(), Duration::from_secs(10))
                .await;
            let file = deployment.alerts_file();
            let mut seen = None;
            while acked && sent.elapsed() < Duration::from_secs(12) {
                if file_deliveries(&file).contains(&probe.alert_id) {
                    seen = Some(sent.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            match seen {
                Some(took) if took <= FILE_DURING_HANG_LIMIT => out.notes.push(format!(
                    "during the hang, a probe's alert reached the file channel {:.2} s after its 202",
                    took.as_secs_f64()
                )),
                other => out.violations.push(Violation::new(
                    Invariant::Scenario,
                    format!(
                        "during the hang, a probe's alert did not reach the file channel within \
                         {FILE_DURING_HANG_LIMIT:?} (acked: {acked}, seen after: {other:?}): \
                         the file channel waits for the hanging webhook"
                    ),
                )),
            }
            out.probes
                .push((probe.event.clone(), probe.alert_id, acked));
            tokio::time::sleep_until((t0 + *when + *for_).into()).await;
            receiver.hang(false);
            let end = out.record(t0, "webhook receiver answers again");
            out.window = Some(Window { start, end });
        }
        Fault::DiskFull { at: when, for_ } => {
            let disk = disk.ok_or("no small disk")?;
            at(t0, *when).await;
            let taken = disk.fill()?;
            let start = out.record(
                t0,
                format!(
                    "data filesystem filled ({:.1} MiB taken; {} bytes left)",
                    taken as f64 / (1 << 20) as f64,
                    disk.available().unwrap_or(0)
                ),
            );
            let before = counters.statuses();
            tokio::time::sleep(*for_).await;
            let during = counters.statuses();
            let refused: Vec<String> = during
                .iter()
                .filter(|(s, _)| **s >= 500 || **s == 429)
                .map(|(s, n)| format!("{s}: {}", n - before.get(s).copied().unwrap_or(0)))
                .collect();
            out.notes
                .push(format!("answers while the disk was full: {refused:?}"));
            disk.free()?;
            let end = out.record(t0, "filler removed: space free again");
            out.window = Some(Window { start, end });
            if deployment.proc("up")?.has_exited() {
                out.violations.push(Violation::new(
                    Invariant::Scenario,
                    "auditflow up exited while the disk was full",
                ));
            }
        }
    }
    Ok(out)
}

fn role_index(role: &str) -> u64 {
    match role {
        "analyze" => 0,
        "notify" => 1,
        "ingest" => 2,
        _ => 3,
    }
}
