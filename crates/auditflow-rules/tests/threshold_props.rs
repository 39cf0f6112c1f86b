//! Threshold rules through `RuleSet::analyze` with the in-memory window state:
//! redeliveries, lateness, window edges, and the window-state contract.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use auditflow_core::window::{
    Decision, InMemoryWindowState, Observation, WindowError, WindowState,
};
use auditflow_core::{alert_id_for, Alert, Event};
use auditflow_rules::RuleSet;
use common::*;
use proptest::prelude::*;
use uuid::Uuid;

const SEC: i64 = 1_000_000;
const WINDOW: i64 = 60 * SEC;
const COOLDOWN: i64 = 60 * SEC;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Reference model of the core's window semantics for ANLY-SEC-001 (count 3,
/// window 60 s, cooldown 60 s), without pruning (tests keep all times within
/// the 180 s retention). Input: first deliveries in order, per group.
/// Output: event id -> (fire, count).
fn model(first_deliveries: &[(Uuid, String, i64)]) -> HashMap<Uuid, (bool, u32)> {
    let mut seen: HashMap<String, Vec<(i64, bool)>> = HashMap::new();
    let mut out = HashMap::new();
    for (id, group, t) in first_deliveries {
        let members = seen.entry(group.clone()).or_default();
        let count = 1 + members
            .iter()
            .filter(|(s, _)| *s >= t - WINDOW && s <= t)
            .count() as u32;
        let cooling = members
            .iter()
            .any(|(s, fired)| *fired && (s - t).abs() < COOLDOWN);
        let fire = count >= 3 && !cooling;
        members.push((*t, fire));
        out.insert(*id, (fire, count));
    }
    out
}

/// Analyzes `deliveries` split into batches of the given sizes (cycled).
fn run(rules: &RuleSet, deliveries: &[Event], batch_sizes: &[usize]) -> Vec<Vec<Alert>> {
    block_on(async {
        let windows = InMemoryWindowState::default();
        let mut out = Vec::new();
        let mut rest = deliveries;
        let mut sizes = batch_sizes.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
            let (batch, tail) = rest.split_at(n);
            out.extend(rules.analyze(batch, &windows, &ctx()).await.unwrap());
            rest = tail;
        }
        out
    })
}

fn time_strategy() -> impl Strategy<Value = i64> {
    // Seconds within 150 s (inside the retention), with edge-heavy sub-second parts.
    (
        0i64..150,
        prop_oneof![Just(0i64), Just(1), Just(SEC - 1), 0..SEC],
    )
        .prop_map(|(s, us)| s * SEC + us)
}

/// Events (two users, one host) and a delivery order in which every event
/// appears at least once and some are redelivered.
fn deliveries() -> impl Strategy<Value = (Vec<Event>, Vec<usize>, Vec<usize>)> {
    proptest::collection::vec((time_strategy(), any::<bool>()), 1..25).prop_flat_map(|specs| {
        let n = specs.len();
        let events: Vec<Event> = specs
            .iter()
            .enumerate()
            .map(|(i, (t, alice))| {
                let user = if *alice { "alice" } else { "bob" };
                failed_login(i as u128, user, "prod-web-01", *t)
            })
            .collect();
        let extra = proptest::collection::vec(0..n, 0..2 * n);
        (Just(events), extra).prop_flat_map(move |(events, extra)| {
            let mut order: Vec<usize> = (0..events.len()).collect();
            order.extend(extra);
            (
                Just(events),
                Just(order).prop_shuffle(),
                proptest::collection::vec(1usize..6, 1..4),
            )
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Shuffled delivery with redeliveries: each event is counted once, no
    /// event yields two alerts, a redelivery yields exactly the first
    /// delivery's alerts, and decisions agree with the reference model run on
    /// first deliveries.
    #[test]
    fn redeliveries_are_counted_once_and_alert_ids_are_stable(
        (events, order, batches) in deliveries()
    ) {
        let rules = RuleSet::builtin();
        let delivered: Vec<Event> = order.iter().map(|&i| events[i].clone()).collect();
        let alerts = run(&rules, &delivered, &batches);
        prop_assert_eq!(alerts.len(), delivered.len());

        let mut first: HashMap<Uuid, &Vec<Alert>> = HashMap::new();
        let mut first_order = Vec::new();
        for (event, raised) in delivered.iter().zip(&alerts) {
            prop_assert!(raised.len() <= 1, "one rule, at most one alert per event");
            match first.get(&event.event_id) {
                Some(earlier) => prop_assert_eq!(*earlier, raised, "redelivery differs"),
                None => {
                    first.insert(event.event_id, raised);
                    first_order.push((event.event_id, event.user_id.clone(), event.timestamp.timestamp_micros() - base_time().timestamp_micros()));
                }
            }
        }
        prop_assert_eq!(first.len(), events.len());

        let expected = model(&first_order);
        let mut ids = HashSet::new();
        for (id, raised) in &first {
            let (fire, count) = expected[id];
            prop_assert_eq!(!raised.is_empty(), fire, "event {}", id);
            if let Some(alert) = raised.first() {
                prop_assert_eq!(alert.alert_id, alert_id_for("ANLY-SEC-001", *id));
                prop_assert!(ids.insert(alert.alert_id), "duplicate alert id");
                let prefix = format!("{count} or more");
                prop_assert!(alert.description.starts_with(&prefix), "{} vs count {}", alert.description, count);
            }
        }
    }

    /// Out of order within one window: all events lie within 60 s of each
    /// other, so at most one alert fires whatever the order, and exactly one
    /// when the newest event arrives last (it sees every other in its window).
    #[test]
    fn out_of_order_events_within_the_window(
        offsets in proptest::collection::hash_set(0i64..WINDOW, 3..10),
        seed in proptest::collection::vec(any::<u8>(), 10),
        newest_last in any::<bool>(),
    ) {
        let mut times: Vec<i64> = offsets.into_iter().collect();
        // A deterministic shuffle from the seed.
        for (i, s) in seed.iter().enumerate() {
            let n = times.len();
            times.swap(i % n, *s as usize % n);
        }
        if newest_last {
            let newest = times.iter().enumerate().max_by_key(|(_, t)| **t).map(|(i, _)| i).unwrap_or(0);
            let t = times.remove(newest);
            times.push(t);
        }
        let events: Vec<Event> = times
            .iter()
            .enumerate()
            .map(|(i, t)| failed_login(i as u128, "bob", "h", *t))
            .collect();
        let fired = run(&RuleSet::builtin(), &events, &[events.len()])
            .into_iter()
            .flatten()
            .count();
        prop_assert!(fired <= 1, "{fired} alerts for {times:?}");
        if newest_last {
            prop_assert_eq!(fired, 1, "times {:?}", times);
        }
    }

    /// Window edges: `[t - 60 s, t]` is inclusive; one microsecond more and
    /// the oldest event falls out.
    #[test]
    fn window_edges(
        start in 0i64..1_000_000 * SEC,
        middle in 1i64..WINDOW,
        late in 0i64..2,
    ) {
        let last = start + WINDOW + late;
        let events = [
            failed_login(1, "bob", "h", start),
            failed_login(2, "bob", "h", start + middle.min(WINDOW - 1)),
            failed_login(3, "bob", "h", last),
        ];
        let alerts = run(&RuleSet::builtin(), &events, &[1]);
        prop_assert!(alerts[0].is_empty() && alerts[1].is_empty());
        prop_assert_eq!(alerts[2].len(), usize::from(late == 0));
    }
}

#[tokio::test]
async fn exact_window_edges() {
    let rules = RuleSet::builtin();
    for (last, fires) in [(WINDOW, true), (WINDOW + 1, false), (WINDOW - 1, true)] {
        let windows = InMemoryWindowState::default();
        let events = [
            failed_login(1, "bob", "h", 0),
            failed_login(2, "bob", "h", 30 * SEC),
            failed_login(3, "bob", "h", last),
        ];
        let alerts = rules.analyze(&events, &windows, &ctx()).await.unwrap();
        assert_eq!(!alerts[2].is_empty(), fires, "last at {last} µs");
    }
}

#[tokio::test]
async fn a_redelivered_event_in_a_later_batch_yields_the_same_alert() {
    let rules = RuleSet::builtin();
    let windows = InMemoryWindowState::default();
    let events: Vec<Event> = (0..3)
        .map(|n| failed_login(n, "bob", "h", n as i64 * SEC))
        .collect();
    let first = rules.analyze(&events, &windows, &ctx()).await.unwrap();
    let alert = first[2][0].clone();
    assert_eq!(alert.alert_id, alert_id_for("ANLY-SEC-001", id(2)));

    // Redelivered alone, later, with a different raising time: same id, same count.
    let mut later = ctx();
    later.raised_at = at_micros(3_600 * SEC);
    let again = rules.analyze(&events[2..], &windows, &later).await.unwrap();
    assert_eq!(again[0].len(), 1);
    assert_eq!(again[0][0].alert_id, alert.alert_id);
    assert_eq!(again[0][0].description, alert.description);
    // A redelivered non-firing event still does not fire, and does not count again.
    let again = rules.analyze(&events[..2], &windows, &ctx()).await.unwrap();
    assert!(again.iter().all(Vec::is_empty));
    let fourth = failed_login(3, "bob", "h", 3 * SEC);
    let alerts = rules.analyze(&[fourth], &windows, &ctx()).await.unwrap();
    assert!(alerts[0].is_empty(), "cooldown");
}

/// Wraps the in-memory state, counting `observe` calls.
#[derive(Default)]
struct Counting {
    inner: InMemoryWindowState,
    calls: AtomicUsize,
    observations: AtomicUsize,
}

#[async_trait::async_trait]
impl WindowState for Counting {
    async fn observe(&self, observations: &[Observation]) -> Result<Vec<Decision>, WindowError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.observations
            .fetch_add(observations.len(), Ordering::SeqCst);
        self.inner.observe(observations).await
    }

    async fn check(&self) -> Result<(), WindowError> {
        Ok(())
    }
}

#[tokio::test]
async fn one_observe_call_per_batch_and_none_without_threshold_matches() {
    let rules = RuleSet::builtin();
    let windows = Counting::default();
    let mut batch: Vec<Event> = (0..5)
        .map(|n| failed_login(n, "bob", "h", n as i64 * SEC))
        .collect();
    batch.push(file_modified(10, "/etc/shadow", true));
    let alerts = rules.analyze(&batch, &windows, &ctx()).await.unwrap();
    assert_eq!(windows.calls.load(Ordering::SeqCst), 1);
    assert_eq!(windows.observations.load(Ordering::SeqCst), 5);
    assert_eq!(
        alerts.iter().map(Vec::len).collect::<Vec<_>>(),
        [0, 0, 1, 0, 0, 1]
    );

    let files = [file_modified(11, "/etc/passwd", false)];
    rules.analyze(&files, &windows, &ctx()).await.unwrap();
    rules.analyze(&[], &windows, &ctx()).await.unwrap();
    assert_eq!(windows.calls.load(Ordering::SeqCst), 1);
}

/// A backend that fails, or answers with the wrong number of decisions.
struct Broken {
    fail: bool,
}

#[async_trait::async_trait]
impl WindowState for Broken {
    async fn observe(&self, _: &[Observation]) -> Result<Vec<Decision>, WindowError> {
        if self.fail {
            Err(WindowError::Unavailable("redis down".into()))
        } else {
            Ok(vec![])
        }
    }

    async fn check(&self) -> Result<(), WindowError> {
        Ok(())
    }
}

#[tokio::test]
async fn window_failures_are_returned_not_swallowed() {
    let rules = RuleSet::builtin();
    let batch = [failed_login(1, "bob", "h", 0)];
    let err = rules
        .analyze(&batch, &Broken { fail: true }, &ctx())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("redis down"));
    let err = rules
        .analyze(&batch, &Broken { fail: false }, &ctx())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("0 decisions for 1 observations"),
        "{err}"
    );
}

#[test]
fn analyze_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rules = RuleSet::builtin();
    let windows = InMemoryWindowState::default();
    let context = ctx();
    let fut = rules.analyze(&[], &windows, &context);
    assert_send(&fut);
}
