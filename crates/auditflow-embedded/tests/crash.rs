//! A real crash test: a child process (this test binary, re-executed in
//! "child mode") publishes, inserts and observes in a loop with
//! `synchronous = FULL`, printing every acknowledged id; the parent SIGKILLs
//! it at a random moment and checks that everything acknowledged survived.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use auditflow_core::broker::Broker;
use auditflow_core::event::Severity;
use auditflow_core::store::Store;
use auditflow_core::window::{Decision, Observation, WindowSpec, WindowState};
use auditflow_embedded::{Embedded, EmbeddedOptions, SyncMode};
use common::*;

const CHILD_ENV: &str = "AUDITFLOW_EMBEDDED_CRASH_CHILD";
const ROUND_ENV: &str = "AUDITFLOW_EMBEDDED_CRASH_ROUND";
const Q: &str = "audit_events";
const SPEC: WindowSpec = WindowSpec {
    window: Duration::from_secs(60),
    threshold: 3,
    cooldown: Duration::from_secs(30),
};

fn observation(n: u128) -> Observation {
    Observation {
        rule_id: "R".into(),
        group_key: format!("g{}", n % 4),
        event_id: uuid::Uuid::from_u128(n + 1),
        event_time: at((n / 4) as i64),
        spec: SPEC,
    }
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    // A line is printed only after its write was acknowledged.
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

/// The child: runs only when re-executed by `kill_9_loses_nothing_acknowledged`.
#[test]
fn child_process_entry_point() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // normal test run: nothing to do
    };
    let round: u128 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let opts = EmbeddedOptions {
            synchronous: SyncMode::Full,
            ..EmbeddedOptions::default()
        };
        let e = Embedded::open(Path::new(&dir), opts).unwrap();
        let base = round * 100_000_000;
        let mut tasks = Vec::new();
        for t in 0..4u128 {
            let b = e.broker();
            tasks.push(tokio::spawn(async move {
                for i in 0u128.. {
                    let ids: Vec<String> = (0..8)
                        .map(|k| format!("m-{}", base + (i * 4 + t) * 8 + k))
                        .collect();
                    b.publish(Q, &ids.iter().map(|id| msg(id)).collect::<Vec<_>>())
                        .await
                        .unwrap();
                    say(ids.iter().map(|id| format!("P {id}\n")).collect());
                }
            }));
        }
        for t in 0..2u128 {
            let s = e.store();
            tasks.push(tokio::spawn(async move {
                for i in 0u128.. {
                    let evs: Vec<_> = (0..16)
                        .map(|k| {
                            event(
                                base + (i * 2 + t) * 16 + k,
                                0,
                                "user_login",
                                "bob",
                                "web",
                                Severity::Info,
                            )
                        })
                        .collect();
                    s.insert_events(&evs).await.unwrap();
                    say(evs.iter().map(|e| format!("E {}\n", e.event_id)).collect());
                }
            }));
        }
        let w = e.windows();
        tasks.push(tokio::spawn(async move {
            for i in 0u128.. {
                let batch: Vec<_> = (0..4).map(|k| observation(base + i * 4 + k)).collect();
                let d = w.observe(&batch).await.unwrap();
                say(batch
                    .iter()
                    .zip(d)
                    .map(|(o, d)| {
                        format!("W {} {} {}\n", o.event_id.as_u128() - 1, d.fire, d.count)
                    })
                    .collect());
            }
        }));
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[derive(Default)]
struct Acked {
    published: HashSet<String>,
    stored: HashSet<uuid::Uuid>,
    decided: Vec<(u128, Decision)>,
}

fn run_child_and_kill(dir: &Path, round: u32, acked: &mut Acked) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_entry_point",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let kill_after = fastrand::usize(100..6000);
    let mut lines = 0;
    let mut killed = false;
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        // A line cut short by the kill was never fully printed: ignore it.
        let Some(full) = line.strip_suffix('\n') else {
            continue;
        };
        let parts: Vec<&str> = full.split(' ').collect();
        match parts.as_slice() {
            ["P", id] => acked.published.insert(id.to_string()),
            ["E", id] => acked.stored.insert(id.parse().unwrap()),
            ["W", n, fire, count] => {
                acked.decided.push((
                    n.parse().unwrap(),
                    Decision {
                        fire: fire.parse().unwrap(),
                        count: count.parse().unwrap(),
                    },
                ));
                true
            }
            _ => continue, // libtest's own output
        };
        lines += 1;
        // Only once every kind of write has been acknowledged at least once
        // this round, so each round checks all three (an early kill could
        // otherwise come before the first window decision).
        let each_kind_seen =
            !acked.published.is_empty() && !acked.stored.is_empty() && !acked.decided.is_empty();
        if !killed && lines >= kill_after && each_kind_seen {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "child exited by itself: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Acked::default();
    for round in 1..=4 {
        let path = dir.path().to_path_buf();
        let mut round_acked = Acked::default();
        let handle = tokio::task::spawn_blocking(move || {
            run_child_and_kill(&path, round, &mut round_acked);
            round_acked
        });
        let r = handle.await.unwrap();
        acked.published.extend(r.published);
        acked.stored.extend(r.stored);
        // Window members of earlier rounds have legitimately fallen behind the
        // retention horizon (each round's event times are far later), so
        // only this round's decisions are checked.
        acked.decided = r.decided;
        assert!(
            !acked.published.is_empty() && !acked.stored.is_empty() && !acked.decided.is_empty()
        );

        // Reopen after the crash (the lock died with the child).
        let opts = EmbeddedOptions {
            delivery_limit: 1000,
            max_queue_depth: 10_000_000,
            ..EmbeddedOptions::default()
        };
        let e = Embedded::open(dir.path(), opts).unwrap();
        let b: Arc<dyn Broker> = e.broker();
        let queued = b.stats(Q).await.unwrap().ready as usize;
        let mut sub = b.subscribe(Q, queued.max(1)).await.unwrap();
        let mut present = HashSet::new();
        while present.len() < queued {
            let batch = next(&mut sub, 100_000).await;
            assert!(batch.iter().all(|d| d.redelivered));
            present.extend(ids(&batch));
        }
        let missing = acked
            .published
            .iter()
            .filter(|id| !present.contains(*id))
            .count();
        assert_eq!(missing, 0, "round {round}: acknowledged publishes lost");
        drop(sub);

        let s = e.store();
        for id in &acked.stored {
            assert!(
                s.event(*id).await.unwrap().is_some(),
                "round {round}: acknowledged event {id} lost"
            );
        }
        assert!(s.counts().await.unwrap().events as usize >= acked.stored.len());

        let w = e.windows();
        let batch: Vec<Observation> = acked.decided.iter().map(|(n, _)| observation(*n)).collect();
        let want: Vec<Decision> = acked.decided.iter().map(|(_, d)| *d).collect();
        assert_eq!(
            w.observe(&batch).await.unwrap(),
            want,
            "round {round}: recorded decisions changed"
        );
        eprintln!(
            "round {round}: {} publishes, {} events, {} decisions verified",
            acked.published.len(),
            acked.stored.len(),
            acked.decided.len()
        );
    }
}
