//! Decision semantics on the shared Redis (unique key prefix per test).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use auditflow_core::window::{
    Decision, GroupWindow, InMemoryWindowState, Observation, WindowSpec, WindowState,
};
use chrono::{DateTime, Utc};
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use redis::AsyncCommands;
use uuid::Uuid;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A random history: `(group, event, advance, lateness)` steps, cut into
/// batches; an event number seen again is a redelivery (same time).
fn history() -> impl Strategy<Value = (Vec<Observation>, Vec<usize>, u8)> {
    (
        proptest::collection::vec((0usize..3, 0u128..40, 0i64..5, -90i64..=0), 1..120),
        proptest::collection::vec(1usize..12, 1..40),
        0u8..3,
    )
        .prop_map(|(steps, cuts, spec)| {
            let spec = [
                SPEC,
                WindowSpec {
                    window: Duration::from_secs(30),
                    threshold: 2,
                    cooldown: Duration::ZERO,
                },
                WindowSpec {
                    window: Duration::from_secs(20),
                    threshold: 4,
                    cooldown: Duration::from_secs(45),
                },
            ][spec as usize];
            let mut clock = 0i64;
            let mut times: HashMap<(usize, u128), i64> = HashMap::new();
            let observations = steps
                .into_iter()
                .map(|(g, n, advance, lateness)| {
                    clock += advance;
                    let t = *times.entry((g, n)).or_insert((clock + lateness).max(0));
                    Observation {
                        rule_id: "rule".into(),
                        group_key: format!("g{g}"),
                        event_id: Uuid::from_u128(((g as u128) << 64) + n + 1),
                        event_time: at(t),
                        spec,
                    }
                })
                .collect();
            (observations, cuts, spec.threshold as u8)
        })
}

fn batches<'a>(observations: &'a [Observation], cuts: &[usize]) -> Vec<&'a [Observation]> {
    let mut out = Vec::new();
    let mut rest = observations;
    for &c in cuts.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(c.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// The Lua mirror agrees with `InMemoryWindowState` (i.e. `GroupWindow`)
/// on random histories with late events, redeliveries, several groups and
/// random batching.
#[test]
fn agrees_with_the_in_memory_state() {
    let rt = runtime();
    let mut runner = TestRunner::new(Config::with_cases(40));
    runner
        .run(&history(), |(observations, cuts, _)| {
            let prefix = Prefix::new("proptest");
            let got = rt.block_on(async {
                let redis = state(prefix.config(), Arc::new(EmptySource));
                let memory = InMemoryWindowState::default();
                let mut pairs = Vec::new();
                for batch in batches(&observations, &cuts) {
                    let r = redis.observe(batch).await.unwrap();
                    let m = memory.observe(batch).await.unwrap();
                    pairs.extend(r.into_iter().zip(m));
                }
                pairs
            });
            for (i, (r, m)) in got.iter().enumerate() {
                prop_assert_eq!(r, m, "observation {} of {:?}", i, observations[i]);
            }
            Ok(())
        })
        .unwrap();
}

/// With processing time advancing past the decision grace, the script
/// prunes exactly what `GroupWindow::prune` forgets: decisions and member
/// counts agree with `GroupWindow` fed the same `now`.
#[test]
fn prunes_like_group_window() {
    let rt = runtime();
    let strategy = (
        history(),
        proptest::collection::vec(0i64..=8, 1..40), // minutes of processing time per batch
    );
    let mut runner = TestRunner::new(Config::with_cases(24));
    runner
        .run(&strategy, |((observations, cuts, _), advances)| {
            let prefix = Prefix::new("prune");
            rt.block_on(async {
                let redis = state(prefix.config(), Arc::new(EmptySource));
                let mut windows: HashMap<String, GroupWindow> = HashMap::new();
                let mut now: DateTime<Utc> = Utc::now();
                for (b, batch) in batches(&observations, &cuts).into_iter().enumerate() {
                    now += chrono::Duration::minutes(advances[b % advances.len()]);
                    let got = redis.observe_at(batch, now).await.unwrap();
                    for (o, r) in batch.iter().zip(got) {
                        let w = windows.entry(o.group_key.clone()).or_default();
                        let want = w.observe(o.event_id, o.event_time, &o.spec, now).0;
                        prop_assert_eq!(r, want, "{:?} at {}", o, now);
                    }
                    let mut conn = redis::Client::open(SHARED_URL)
                        .unwrap()
                        .get_multiplexed_async_connection()
                        .await
                        .unwrap();
                    for (group, w) in &windows {
                        let keys = redis.group_keys("rule", group);
                        let held: usize = conn.zcard(&keys.times).await.unwrap();
                        prop_assert_eq!(held, w.len(), "members of {}", group);
                        let decided: usize = conn.hlen(&keys.decisions).await.unwrap();
                        prop_assert_eq!(decided, w.len() + 1, "decisions (+ _epoch) of {}", group);
                    }
                }
                Ok(())
            })
        })
        .unwrap();
}

#[tokio::test]
async fn a_redelivered_event_gets_its_recorded_decision_and_counts_once() {
    let prefix = Prefix::new("redelivery");
    let s = state(prefix.config(), Arc::new(EmptySource));
    let burst = [
        obs("r", "g", 1, 0),
        obs("r", "g", 2, 10),
        obs("r", "g", 3, 20),
    ];
    let first = s.observe(&burst).await.unwrap();
    assert_eq!(
        first.iter().map(|d| (d.fire, d.count)).collect::<Vec<_>>(),
        [(false, 1), (false, 2), (true, 3)]
    );
    // Redelivered, alone, in another order, and twice in one batch.
    for _ in 0..3 {
        let again = s
            .observe(&[burst[2].clone(), burst[0].clone(), burst[2].clone()])
            .await
            .unwrap();
        assert_eq!(again, [first[2], first[0], first[2]]);
    }
    // Counted once: the next event sees 4 members (and is in cooldown).
    let next = s.observe(&[obs("r", "g", 4, 30)]).await.unwrap();
    assert_eq!(
        next,
        [Decision {
            fire: false,
            count: 4
        }]
    );
    // A second instance (another process) gets the same recorded decisions.
    let other = state(prefix.config(), Arc::new(EmptySource));
    assert_eq!(other.observe(&burst).await.unwrap(), first);
}

/// Two instances (separate connections, as two analyzer processes) observe
/// every event of the same groups concurrently, each in time order and in
/// random batches, as competing consumers that both get every event
/// (redelivery to the other consumer). Each burst lies within the window
/// and the cooldown, so the sequential semantics fire it exactly once
/// whatever the interleaving; both instances must get the same single
/// recorded decision for every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_instances_fire_each_burst_once() {
    let prefix = Prefix::new("competing");
    let a = state(prefix.config(), Arc::new(EmptySource));
    let b = state(prefix.config(), Arc::new(EmptySource));
    const GROUPS: usize = 8;
    const BURSTS: i64 = 6;
    const PER_BURST: i64 = 7;
    let mut events = Vec::new();
    for burst in 0..BURSTS {
        for k in 0..PER_BURST {
            for g in 0..GROUPS {
                let n = (g as i64 * 1000 + burst * 100 + k) as u128;
                // Bursts 200 s apart (> window + cooldown), events 3 s apart.
                events.push(obs("r", &format!("g{g}"), n, burst * 200 + k * 3));
            }
        }
    }
    let run = |s: auditflow_redis::RedisWindowState, events: Vec<Observation>, seed: u64| {
        tokio::spawn(async move {
            let mut rng = seed;
            let mut out = HashMap::new();
            let mut rest = &events[..];
            while !rest.is_empty() {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let n = ((rng >> 33) % 9 + 1) as usize;
                let (batch, tail) = rest.split_at(n.min(rest.len()));
                let decisions = s.observe(batch).await.unwrap();
                for (o, d) in batch.iter().zip(decisions) {
                    out.insert(o.event_id, d);
                }
                rest = tail;
            }
            out
        })
    };
    let (da, db) = tokio::join!(run(a, events.clone(), 1), run(b, events.clone(), 2));
    let (da, db) = (da.unwrap(), db.unwrap());
    assert_eq!(da.len(), events.len());
    assert_eq!(da, db, "every event has exactly one recorded decision");
    for g in 0..GROUPS {
        for burst in 0..BURSTS {
            let fires = (0..PER_BURST)
                .filter(|k| {
                    let n = (g as i64 * 1000 + burst * 100 + k) as u128;
                    da[&Uuid::from_u128(n + 1)].fire
                })
                .count();
            assert_eq!(fires, 1, "group {g} burst {burst}");
        }
    }
    // Every event counted once. Each instance observes in time order, so an
    // event is first recorded after its predecessor: the k-th event of a
    // burst counts exactly k, whoever recorded it.
    for g in 0..GROUPS {
        for burst in 0..BURSTS {
            let counts: Vec<u32> = (0..PER_BURST)
                .map(|k| {
                    let n = (g as i64 * 1000 + burst * 100 + k) as u128;
                    da[&Uuid::from_u128(n + 1)].count
                })
                .collect();
            assert_eq!(counts, (1..=PER_BURST as u32).collect::<Vec<_>>());
        }
    }
}

#[tokio::test]
async fn keys_carry_a_ttl_and_the_epoch_marker_does_not() {
    let prefix = Prefix::new("ttl");
    let mut config = prefix.config();
    config.ttl_slack = Duration::from_secs(120);
    let s = state(config, Arc::new(EmptySource));
    let burst = [
        obs("r", "g", 1, 0),
        obs("r", "g", 2, 1),
        obs("r", "g", 3, 2),
    ];
    assert!(s.observe(&burst).await.unwrap()[2].fire);
    let mut conn = redis::Client::open(SHARED_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // retention 2 * 60 + 60 s, grace 15 min, slack 2 min.
    let ttl_ms = (180 + 15 * 60 + 120) * 1000;
    for key in s.group_keys("r", "g").all() {
        let pttl: i64 = conn.pttl(key).await.unwrap();
        assert!(pttl > ttl_ms - 10_000 && pttl <= ttl_ms, "{key}: {pttl}");
    }
    let epoch_pttl: i64 = conn.pttl(format!("{}epoch", prefix.prefix)).await.unwrap();
    assert_eq!(epoch_pttl, -1, "the epoch marker never expires");
    assert!(s.check().await.is_ok());
}
