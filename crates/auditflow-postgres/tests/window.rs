//! Window state: the in-memory reference's decisions, durably, and exactly
//! one recorded decision per event under competing observers.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use auditflow_core::window::{Decision, InMemoryWindowState, Observation, WindowSpec, WindowState};
use auditflow_postgres::{PgPool, PgStore, PgWindowState};
use common::*;
use proptest::prelude::*;
use uuid::Uuid;

const SPEC: WindowSpec = WindowSpec {
    window: Duration::from_secs(60),
    threshold: 3,
    cooldown: Duration::from_secs(60),
};

fn obs(rule: &str, group: &str, n: u128, secs: i64) -> Observation {
    Observation {
        rule_id: rule.into(),
        group_key: group.into(),
        event_id: id(n),
        event_time: at(secs),
        spec: SPEC,
    }
}

async fn window(db: &TestDb) -> PgWindowState {
    let store: PgStore = db.store().await; // migrates
    PgWindowState::new(store.pool().clone())
}

#[tokio::test]
async fn decides_like_the_reference_and_redelivery_gets_the_recorded_decision() {
    let db = TestDb::new();
    let w = window(&db).await;
    let batch: Vec<Observation> = (0..5)
        .map(|n| obs("R1", "bob\u{1f}web", n, n as i64))
        .collect();
    let first = w.observe(&batch).await.unwrap();
    assert_eq!(
        first.iter().map(|d| d.fire).collect::<Vec<_>>(),
        [false, false, true, false, false]
    );
    // Redelivered, in a new state object on a new pool: recorded decisions.
    let other = PgWindowState::new(PgPool::new(&db.config()).unwrap());
    assert_eq!(other.observe(&batch).await.unwrap(), first);
    assert_eq!(other.observe(&batch[2..3]).await.unwrap(), first[2..3]);
    let next = other
        .observe(&[obs("R1", "bob\u{1f}web", 10, 6)])
        .await
        .unwrap();
    assert_eq!(next[0].count, 6, "counted once each");
    // Other groups and rules are independent.
    let d = w
        .observe(&[
            obs("R2", "bob\u{1f}web", 1, 0),
            obs("R1", "eve\u{1f}web", 1, 0),
        ])
        .await
        .unwrap();
    assert!(d.iter().all(|d| d.count == 1));
    w.check().await.unwrap();
    let raw = db.raw().await;
    let rows: i64 = raw
        .query_one("SELECT count(*) FROM window_members", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 8);
}

#[tokio::test]
async fn forgotten_members_are_deleted_even_outside_the_loaded_range() {
    let db = TestDb::new();
    let w = window(&db).await;
    let raw = db.raw().await;
    // Old members observed long ago (past the decision grace), far behind.
    let long_ago = chrono::Utc::now().timestamp_micros() - 3_600_000_000;
    for n in 0..20i64 {
        raw.execute(
            "INSERT INTO window_members VALUES ('R', 'g', $1, $2, false, 1, $3)",
            &[&id(n as u128), &at(n * 10).timestamp_micros(), &long_ago],
        )
        .await
        .unwrap();
    }
    // A recent one (within the grace) far behind too: kept.
    raw.execute(
        "INSERT INTO window_members VALUES ('R', 'g', $1, $2, false, 1, $3)",
        &[
            &id(500),
            &at(5).timestamp_micros(),
            &chrono::Utc::now().timestamp_micros(),
        ],
    )
    .await
    .unwrap();
    // Retention is 180 s: an event at 10 000 s forgets everything old.
    let d = w.observe(&[obs("R", "g", 100, 10_000)]).await.unwrap();
    assert_eq!(d[0].count, 1);
    let left: Vec<Uuid> = raw
        .query("SELECT event_id FROM window_members ORDER BY micros", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, [id(500), id(100)]);
}

#[tokio::test]
async fn a_group_locked_by_a_stuck_observer_times_out_as_unavailable() {
    let db = TestDb::new();
    let config = auditflow_postgres::PgConfig {
        statement_timeout: Duration::from_millis(300),
        ..db.config()
    };
    let w = PgWindowState::connect(config).await.unwrap();
    w.observe(&[obs("R", "g", 1, 0)]).await.unwrap();
    // Another "analyzer" holds the group's lock in an open transaction.
    let mut raw = db.raw().await;
    let tx = raw.transaction().await.unwrap();
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&PgWindowState::lock_key("R", "g")],
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let err = w.observe(&[obs("R", "g", 2, 1)]).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "bounded");
    assert!(
        err.to_string().contains("57014"),
        "statement timeout: {err}"
    );
    tx.rollback().await.unwrap();
    // Once released, the observation goes through.
    assert_eq!(w.observe(&[obs("R", "g", 2, 1)]).await.unwrap()[0].count, 2);
}

/// Two observers on separate pools hammer the same groups with the same
/// events in the same order, in different batch sizes, interleaved. Every
/// event is first recorded in sequence order (each observer has observed
/// everything before it), so all decisions must equal the reference's for
/// the sequence, both observers must agree, and each event has one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_observers_record_exactly_one_decision_per_event() {
    let db = TestDb::new();
    let _ = window(&db).await;
    let a = PgWindowState::new(PgPool::new(&db.config()).unwrap());
    let b = PgWindowState::new(PgPool::new(&db.config()).unwrap());
    let groups = ["u1\u{1f}h", "u2\u{1f}h", "u3\u{1f}h"];
    let mut rng = fastrand::Rng::with_seed(7);
    let sequence: Vec<Observation> = (0..600u128)
        .map(|n| {
            let secs = (n / 3) as i64 + rng.i64(-20..=0);
            obs("R", groups[rng.usize(..groups.len())], n, secs.max(0))
        })
        .collect();
    let reference = InMemoryWindowState::default();
    let want = reference.observe(&sequence).await.unwrap();

    async fn run(w: PgWindowState, seq: Vec<Observation>, seed: u64) -> Vec<Decision> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut out = Vec::new();
        let mut i = 0;
        while i < seq.len() {
            let n = rng.usize(1..=25).min(seq.len() - i);
            out.extend(w.observe(&seq[i..i + n]).await.unwrap());
            i += n;
        }
        out
    }
    let (da, db_) = tokio::join!(
        tokio::spawn(run(a.clone(), sequence.clone(), 1)),
        tokio::spawn(run(b.clone(), sequence.clone(), 2)),
    );
    let (da, db_) = (da.unwrap(), db_.unwrap());
    assert_eq!(
        da, db_,
        "both observers got the same decision for every event"
    );
    assert_eq!(da, want, "and it is the reference's");
    let fires = want.iter().filter(|d| d.fire).count();
    assert!(fires > 3, "the test exercises firing ({fires})");

    let raw = db.raw().await;
    let rows = raw
        .query("SELECT event_id, fire, count FROM window_members", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), sequence.len(), "one row per event");
    let recorded: HashMap<Uuid, (bool, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    for (o, d) in sequence.iter().zip(&want) {
        assert_eq!(recorded[&o.event_id], (d.fire, i64::from(d.count)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Random lateness, redeliveries, several groups and random batch
    /// boundaries: the same decisions as the in-memory state.
    #[test]
    fn matches_the_in_memory_state(
        steps in proptest::collection::vec((0u128..40, 0usize..3, 0i64..5, -90i64..=0), 1..120),
        cuts in proptest::collection::vec(1usize..20, 1..40),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let db = TestDb::new();
            let w = window(&db).await;
            let mut clock = 0i64;
            let mut times: HashMap<u128, (i64, usize)> = HashMap::new();
            let groups = ["a", "b", "c"];
            let seq: Vec<Observation> = steps
                .iter()
                .map(|&(n, g, advance, lateness)| {
                    clock += advance;
                    let (t, g) = *times.entry(n).or_insert(((clock + lateness).max(0), g));
                    obs("R", groups[g], n, t)
                })
                .collect();
            let want = InMemoryWindowState::default().observe(&seq).await.unwrap();
            let mut got = Vec::new();
            let mut i = 0;
            for cut in cuts.iter().cycle() {
                if i >= seq.len() {
                    break;
                }
                let n = (*cut).min(seq.len() - i);
                got.extend(w.observe(&seq[i..i + n]).await.unwrap());
                i += n;
            }
            assert_eq!(got, want);
        });
    }
}
