//! Crash-safety of analyze and notify at every step, proven with failpoints.
//!
//! For each failpoint between the steps of handling a batch (store, rules,
//! publish, ack), the whole "process" crashes there: the role panics, the
//! other role is aborted mid-flight, every handle is dropped and the data
//! directory is reopened from disk, as after `kill -9`. The restarted roles
//! must end with exactly the stored events, stored alerts and file-channel
//! lines of a run without the crash.
//!
//! Run with `cargo test -p auditflow --features failpoints --test crash_points`.
#![cfg(feature = "failpoints")]

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditflow::channels;
use auditflow::config::{ChannelConfig, Config};
use auditflow::context::Context;
use auditflow::platform::build_context;
use auditflow::roles::{analyze, notify};
use auditflow_core::broker::Message;
use auditflow_core::store::AlertQuery;
use auditflow_embedded::{Embedded, EmbeddedOptions};
use auditflow_rules::RuleSet;
use bytes::Bytes;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn event(
    n: u128,
    at: i64,
    kind: &str,
    user: &str,
    host: &str,
    result: &str,
    details: serde_json::Value,
) -> serde_json::Value {
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .expect("valid")
        .timestamp();
    let timestamp = chrono::DateTime::from_timestamp(base + at, 0)
        .expect("in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({
        "event_id": Uuid::from_u128(0xA0D1_7000_0000 + n).to_string(),
        "timestamp": timestamp,
        "source_service": "crash-points-test",
        "server_hostname": host,
        "event_type": kind,
        "severity": "WARNING",
        "user_id": user,
        "action_result": result,
        "details": details,
    })
}

/// The workload: bursts that fire ANLY-SEC-001, pairs that do not, sensitive
/// and ordinary file changes, noise, and some events published twice.
fn workload() -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    let mut n = 0u128;
    for group in 0..24i64 {
        let size = 2 + group % 4; // 2 (no alert), 3, 4, 5
        let user = format!("user{group}");
        for i in 0..size {
            n += 2;
            let at = group * 7 + i * 5;
            events.push(event(
                n,
                at,
                "user_login",
                &user,
                "web-01",
                "FAILURE",
                json!({"reason": "bad password"}),
            ));
            events.push(event(
                n + 1,
                at,
                "sudo_command",
                &user,
                "web-02",
                "SUCCESS",
                json!({"command": "ls"}),
            ));
        }
    }
    for i in 0..30i64 {
        n += 1;
        let path = if i % 3 == 0 {
            "/etc/shadow"
        } else {
            "/var/log/app.log"
        };
        events.push(event(
            n,
            500 + i,
            "file_modified",
            "ops",
            "db-01",
            "MODIFIED",
            json!({"resource": path}),
        ));
    }
    // A client retry: the same events published again later.
    let again: Vec<_> = events.iter().step_by(17).cloned().collect();
    events.extend(again);
    events
}

fn config(dir: &Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.analyze.batch_size = Some(8); // many batches, so crashes land mid-stream
    config.notify.batch_size = 4;
    config.notify.channels = vec![ChannelConfig::File {
        name: "file".into(),
        path: None,
    }];
    config
}

struct Running {
    ctx: Context,
    analyze: tokio::task::JoinHandle<anyhow::Result<()>>,
    notify: tokio::task::JoinHandle<anyhow::Result<()>>,
    embedded: Embedded,
}

/// Opens the data directory, waiting (bounded) for the lock of a crashed
/// run's last tasks to be released, as a restarted process would find it.
fn open(dir: &Path) -> Embedded {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Embedded::open(dir, EmbeddedOptions::default()) {
            Ok(embedded) => return embedded,
            Err(auditflow_embedded::EmbeddedError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("open embedded: {e}"),
        }
    }
}

fn start(dir: &Path) -> Running {
    let config = Arc::new(config(dir));
    let embedded = open(dir);
    let (ctx, policies) = build_context(
        Arc::clone(&config),
        embedded.broker(),
        embedded.store(),
        embedded.windows(),
        CancellationToken::new(),
    )
    .expect("context");
    let channels = channels::build(&config.notify.channels, dir, &policies).expect("channels");
    let analyze = tokio::spawn(analyze::run(ctx.clone(), Arc::new(RuleSet::builtin())));
    let notify = tokio::spawn(notify::run(ctx.clone(), channels));
    Running {
        ctx,
        analyze,
        notify,
        embedded,
    }
}

async fn publish_all(ctx: &Context, events: &[serde_json::Value]) {
    for chunk in events.chunks(5) {
        let messages: Vec<Message> = chunk
            .iter()
            .map(|e| Message {
                message_id: e["event_id"].as_str().unwrap_or_default().to_string(),
                payload: Bytes::from(e.to_string()),
                headers: Default::default(),
            })
            .collect();
        ctx.broker
            .publish(&ctx.config.broker.events_queue, &messages)
            .await
            .expect("publish");
    }
}

/// Waits until both queues are empty (nothing ready, nothing unacked).
async fn drained(ctx: &Context) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut busy = 0;
        for queue in [
            &ctx.config.broker.events_queue,
            &ctx.config.broker.alerts_queue,
        ] {
            let stats = ctx.broker.stats(queue).await.expect("stats");
            busy += stats.ready + stats.unacked;
        }
        if busy == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "queues did not drain: {busy} messages left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a run leaves behind: stored events, stored alert ids, file-channel lines.
#[derive(Debug, PartialEq)]
struct Outcome {
    events: u64,
    alerts: BTreeSet<Uuid>,
    file_lines: usize,
    file_ids: BTreeSet<Uuid>,
}

async fn outcome(ctx: &Context, dir: &Path) -> Outcome {
    let counts = ctx.store.counts().await.expect("counts");
    let page = ctx
        .store
        .alerts(&AlertQuery {
            limit: 1000,
            ..AlertQuery::default()
        })
        .await
        .expect("alerts");
    assert!(page.next_cursor.is_none(), "more alerts than one page");
    let text = std::fs::read_to_string(dir.join("alerts.ndjson")).unwrap_or_default();
    let file_ids: Vec<Uuid> = text
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("file line is JSON");
            Uuid::parse_str(v["alert_id"].as_str().expect("alert_id")).expect("uuid")
        })
        .collect();
    Outcome {
        events: counts.events,
        alerts: page.items.iter().map(|a| a.alert.alert_id).collect(),
        file_lines: file_ids.len(),
        file_ids: file_ids.into_iter().collect(),
    }
}

async fn stop(running: Running) {
    running.ctx.shutdown.cancel();
    let _ = running.analyze.await;
    let _ = running.notify.await;
    drop(running.ctx);
    drop(running.embedded);
}

async fn run_clean(events: &[serde_json::Value]) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start(dir.path());
    publish_all(&running.ctx, events).await;
    drained(&running.ctx).await;
    let result = outcome(&running.ctx, dir.path()).await;
    stop(running).await;
    result
}

/// Crashes at the `hit`-th pass through `failpoint`, restarts from disk, finishes.
async fn run_with_crash(events: &[serde_json::Value], failpoint: &str, hit: usize) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let Running {
        ctx,
        analyze,
        notify,
        embedded,
    } = start(dir.path());
    fail::cfg(failpoint, &format!("{}*off->panic", hit - 1)).expect("failpoint");
    publish_all(&ctx, events).await;
    let (crashed, other) = if failpoint.starts_with("analyze") {
        (analyze, notify)
    } else {
        (notify, analyze)
    };
    let joined = tokio::time::timeout(Duration::from_secs(30), crashed)
        .await
        .unwrap_or_else(|_| panic!("{failpoint} was never reached"));
    assert!(
        joined.is_err_and(|e| e.is_panic()),
        "{failpoint}: role did not crash"
    );
    fail::remove(failpoint);
    // The rest of the process dies with it, wherever it was; only what is on
    // disk survives.
    other.abort();
    let _ = other.await;
    drop(ctx);
    drop(embedded);

    let restarted = start(dir.path());
    drained(&restarted.ctx).await;
    let result = outcome(&restarted.ctx, dir.path()).await;
    stop(restarted).await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_changes_nothing_in_the_outcome() {
    // Failpoints are process-global: one test drives every scenario in turn.
    let scenario = fail::FailScenario::setup();
    let events = workload();
    let distinct: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();

    let reference = run_clean(&events).await;
    assert_eq!(reference.events, distinct.len() as u64);
    // 18 bursts of 3..=5 fire once each (6 pairs do not); 10 of 30 file changes are sensitive.
    assert_eq!(reference.alerts.len(), 18 + 10, "reference alerts");
    assert_eq!(reference.file_ids, reference.alerts);
    assert_eq!(reference.file_lines, reference.alerts.len());

    let failpoints = [
        "analyze::before_store",
        "analyze::after_store",
        "analyze::after_rules",
        "analyze::after_publish",
        "notify::after_store",
        "notify::before_ack",
    ];
    let mut results = HashMap::new();
    for failpoint in failpoints {
        for hit in [1, 3] {
            let crashed = run_with_crash(&events, failpoint, hit).await;
            assert_eq!(
                crashed, reference,
                "crash at {failpoint} (hit {hit}) changed the outcome"
            );
            results.insert((failpoint, hit), crashed.alerts.len());
        }
    }
    assert_eq!(results.len(), failpoints.len() * 2);
    scenario.teardown();
}
