//! Window state: same decisions as the in-memory reference, durably.

mod common;

use std::time::Duration;

use auditflow_core::window::{InMemoryWindowState, Observation, WindowSpec, WindowState};
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
        event_id: Uuid::from_u128(n + 1),
        event_time: at(secs),
        spec: SPEC,
    }
}

#[tokio::test]
async fn recorded_decisions_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let batch: Vec<Observation> = (0..5)
        .map(|n| obs("R1", "bob\u{1f}web", n, n as i64))
        .collect();
    let first = {
        let e = open(dir.path());
        let w = e.windows();
        let d = w.observe(&batch).await.unwrap();
        assert_eq!(
            d.iter().map(|d| d.fire).collect::<Vec<_>>(),
            [false, false, true, false, false]
        );
        d
    };
    let e = open(dir.path());
    let w = e.windows();
    assert_eq!(w.cached_groups().await, 0, "hydrated lazily");
    // Redelivering the same events returns the recorded decisions.
    assert_eq!(w.observe(&batch).await.unwrap(), first);
    assert_eq!(w.observe(&batch[2..3]).await.unwrap(), first[2..3]);
    // And new events count the recorded ones.
    let next = w
        .observe(&[obs("R1", "bob\u{1f}web", 10, 6)])
        .await
        .unwrap();
    assert_eq!(next[0].count, 6);
    // Other groups and rules are independent.
    let other = w
        .observe(&[
            obs("R2", "bob\u{1f}web", 1, 0),
            obs("R1", "eve\u{1f}web", 1, 0),
        ])
        .await
        .unwrap();
    assert!(other.iter().all(|d| d.count == 1));
    w.check().await.unwrap();
}

#[tokio::test]
async fn pruned_members_are_deleted_from_disk_once_their_grace_is_over() {
    let dir = tempfile::tempdir().unwrap();
    let window_file = dir.path().join(auditflow_embedded::WINDOW_FILE);
    let rows_and_oldest = || -> (i64, i64) {
        let conn = rusqlite::Connection::open(&window_file).unwrap();
        conn.query_row(
            "SELECT count(*), min(micros) FROM window_members",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    {
        let e = open_with(dir.path(), fast());
        let w = e.windows();
        // Retention is 2*60+60 = 180 s, but every decision was just made:
        // all are kept for a possible redelivery.
        let batch: Vec<Observation> = (0..50).map(|n| obs("R", "g", n, n as i64 * 10)).collect();
        w.observe(&batch).await.unwrap();
    }
    assert_eq!(rows_and_oldest(), (50, at(0).timestamp_micros()));
    // Pretend they were observed before the grace period.
    let grace = i64::try_from(auditflow_core::window::DECISION_GRACE.as_micros()).unwrap();
    rusqlite::Connection::open(&window_file)
        .unwrap()
        .execute(
            "UPDATE window_members SET observed_micros = observed_micros - ?1",
            [grace + 1_000_000],
        )
        .unwrap();
    {
        let e = open_with(dir.path(), fast());
        e.windows()
            .observe(&[obs("R", "g", 50, 500)])
            .await
            .unwrap();
    }
    // Kept: members within 180 s of the newest (500 s), i.e. 320..=500.
    assert_eq!(rows_and_oldest(), (19, at(320).timestamp_micros()));
}

fn run_case(
    steps: Vec<(u8, u8, u128, i64)>,
    batch_sizes: Vec<usize>,
    reopen_every: usize,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let reference = InMemoryWindowState::default();
        let mut embedded = open_with(dir.path(), fast());
        let mut clock = 0i64;
        let mut times = std::collections::HashMap::new();
        let observations: Vec<Observation> = steps
            .into_iter()
            .map(|(rule, group, n, advance)| {
                clock += advance;
                // An event id always has the same time (redeliveries), possibly late.
                let t = *times
                    .entry(n)
                    .or_insert((clock - (n as i64 % 7) * 13).max(0));
                obs(&format!("R{}", rule % 2), &format!("g{}", group % 3), n, t)
            })
            .collect();
        let mut rest = &observations[..];
        let mut batches = 0;
        for size in batch_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (batch, tail) = rest.split_at((*size).min(rest.len()));
            rest = tail;
            let want = reference.observe(batch).await.unwrap();
            let got = embedded.windows().observe(batch).await.unwrap();
            prop_assert_eq!(got, want);
            batches += 1;
            if batches % reopen_every == 0 {
                drop(embedded);
                embedded = open_with(dir.path(), fast());
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random rules, groups, lateness, redeliveries and batch sizes, with
    /// reopens in between: decisions equal the in-memory reference's.
    #[test]
    fn decisions_match_the_in_memory_reference(
        steps in proptest::collection::vec((0u8..2, 0u8..3, 0u128..40, 0i64..25), 1..150),
        batch_sizes in proptest::collection::vec(1usize..20, 1..5),
        reopen_every in 1usize..6,
    ) {
        run_case(steps, batch_sizes, reopen_every)?;
    }
}
