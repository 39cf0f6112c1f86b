//! Event-time windows for threshold rules, and the interface to their state.
//!
//! A threshold rule counts matching events per group (e.g. per user and
//! host) within a window of *event time*. The decision for one event is made
//! when it is first observed and then **recorded with the window state**, so
//! a redelivered event gets back exactly the decision it got the first time:
//! an event is counted once however often it arrives, and a crash between
//! deciding and acking can neither lose nor duplicate an alert.
//!
//! Semantics of [`GroupWindow::observe`] for an event `e` at time `t`:
//! 1. If `e` was observed before, return the recorded decision.
//! 2. Otherwise add `e`; `count` = members with time in `[t - window, t]`.
//! 3. Fire when `count >= threshold` and no earlier *fired* member lies
//!    within `cooldown` of `t` (either side, so late events respect it too).
//! 4. Record the decision; forget members older than the retention horizon
//!    (`2 * window + cooldown` before the newest time seen) once they were
//!    first observed more than [`DECISION_GRACE`] ago (processing time).
//!
//! Why the grace: a batch can hold a group's fired event and an event much
//! later in event time. Pruning by event time alone would drop the fired
//! event's recorded decision in the same commit; if the process then died
//! before publishing the alert, the redelivered event would be decided anew
//! on a window that no longer holds its neighbours, and the alert would be
//! lost. Decisions therefore live, whatever their event time, until well
//! after any redelivery of their event can happen.
//!
//! Late events are counted in the windows they fall into, but a decision
//! already made for a later event is never revised: alerts are not retracted.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Parameters of a threshold window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Width of the window in event time.
    pub window: Duration,
    /// Matching events within the window needed to fire.
    pub threshold: u32,
    /// After firing, the group stays quiet for this long in event time.
    pub cooldown: Duration,
}

/// How long a recorded decision is kept after its event was first observed
/// (processing time), whatever its event time: longer than any redelivery
/// of an unacked event can take.
pub const DECISION_GRACE: Duration = Duration::from_secs(15 * 60);

impl WindowSpec {
    /// How far behind the newest member state is kept.
    pub fn retention(&self) -> Duration {
        self.window * 2 + self.cooldown
    }
}

/// One matching event to count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Observation {
    /// The threshold rule.
    pub rule_id: String,
    /// The group, e.g. `attacker_bob\u{1f}prod-web-01`.
    pub group_key: String,
    /// The event.
    pub event_id: Uuid,
    /// The event's time.
    pub event_time: DateTime<Utc>,
    /// The rule's window.
    pub spec: WindowSpec,
}

/// What the window decided for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the rule fires for this event.
    pub fire: bool,
    /// Members in the event's window when it was decided, itself included.
    pub count: u32,
}

/// A member of a group window, as persisted by backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The event.
    pub event_id: Uuid,
    /// Its time, microseconds since the epoch.
    pub micros: i64,
    /// The decision recorded for it.
    pub decision: Decision,
    /// When it was first observed (processing time), microseconds since the
    /// epoch. 0 marks a member loaded by a rebuild ([`WindowSource`]): it
    /// counts in its neighbours' windows, but its own decision is made when
    /// it is observed (a stored event may not have been evaluated yet).
    pub observed_micros: i64,
}

/// The state of one `(rule, group)` window: a pure state machine that every
/// backend uses (or, for Redis, mirrors in a script) so semantics agree.
#[derive(Debug, Clone, Default)]
pub struct GroupWindow {
    by_time: BTreeMap<(i64, Uuid), (Decision, i64)>,
    by_id: HashMap<Uuid, i64>,
    newest: Option<i64>,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl GroupWindow {
    /// Rebuilds a window from persisted members.
    pub fn from_members(members: impl IntoIterator<Item = Member>) -> Self {
        let mut window = GroupWindow::default();
        for m in members {
            window.insert(m);
        }
        window
    }

    fn insert(&mut self, m: Member) {
        self.by_time
            .insert((m.micros, m.event_id), (m.decision, m.observed_micros));
        self.by_id.insert(m.event_id, m.micros);
        self.newest = Some(self.newest.map_or(m.micros, |n| n.max(m.micros)));
    }

    /// The decision recorded for `event_id`, if it was observed (and not
    /// yet forgotten). A member loaded by a rebuild has none yet.
    pub fn recorded(&self, event_id: Uuid) -> Option<Decision> {
        let t = *self.by_id.get(&event_id)?;
        self.by_time
            .get(&(t, event_id))
            .filter(|(_, observed)| *observed != 0)
            .map(|(d, _)| *d)
    }

    /// Observes one event at processing time `now`. Returns the decision
    /// and, when the event is new, the member to persist (`None` for a
    /// redelivery).
    pub fn observe(
        &mut self,
        event_id: Uuid,
        event_time: DateTime<Utc>,
        spec: &WindowSpec,
        now: DateTime<Utc>,
    ) -> (Decision, Option<Member>) {
        if let Some(decision) = self.recorded(event_id) {
            return (decision, None);
        }
        // A member loaded by a rebuild is already in the window (counted
        // once), and keeps `fire` if the store says it raised an alert.
        let rebuilt = self
            .by_id
            .get(&event_id)
            .and_then(|t| self.by_time.get(&(*t, event_id)))
            .map(|(d, _)| d.fire);
        let t = event_time.timestamp_micros();
        let window_start = t.saturating_sub(micros(spec.window));
        let count = self
            .by_time
            .range((window_start, Uuid::nil())..=(t, Uuid::max()))
            .count() as u32
            + u32::from(rebuilt.is_none());
        let cooldown = micros(spec.cooldown);
        let in_cooldown = cooldown > 0
            && self
                .by_time
                .range(
                    (t.saturating_sub(cooldown) + 1, Uuid::nil())
                        ..(t.saturating_add(cooldown), Uuid::nil()),
                )
                .any(|((_, id), (d, _))| d.fire && *id != event_id);
        let decision = Decision {
            fire: rebuilt == Some(true) || (count >= spec.threshold && !in_cooldown),
            count,
        };
        let member = Member {
            event_id,
            micros: t,
            decision,
            observed_micros: now.timestamp_micros(),
        };
        self.insert(member);
        self.prune(spec, now);
        (decision, Some(member))
    }

    /// The `(event-time horizon, observed-before)` pair below which members
    /// are forgotten: both must hold.
    pub fn prune_bounds(&self, spec: &WindowSpec, now: DateTime<Utc>) -> Option<(i64, i64)> {
        let newest = self.newest?;
        Some((
            newest.saturating_sub(micros(spec.retention())),
            now.timestamp_micros()
                .saturating_sub(micros(DECISION_GRACE)),
        ))
    }

    /// Forgets members older than the retention horizon whose decisions are
    /// past the grace period. Returns their ids.
    pub fn prune(&mut self, spec: &WindowSpec, now: DateTime<Utc>) -> Vec<Uuid> {
        let Some((horizon, observed_before)) = self.prune_bounds(spec, now) else {
            return Vec::new();
        };
        let expired: Vec<(i64, Uuid)> = self
            .by_time
            .range(..(horizon, Uuid::nil()))
            .filter(|(_, (_, observed))| *observed < observed_before)
            .map(|(key, _)| *key)
            .collect();
        for key in &expired {
            self.by_time.remove(key);
            self.by_id.remove(&key.1);
        }
        expired.into_iter().map(|(_, id)| id).collect()
    }

    /// Members currently held, oldest first.
    pub fn members(&self) -> impl Iterator<Item = Member> + '_ {
        self.by_time.iter().map(
            |(&(micros, event_id), &(decision, observed_micros))| Member {
                event_id,
                micros,
                decision,
                observed_micros,
            },
        )
    }

    /// Number of members held.
    pub fn len(&self) -> usize {
        self.by_time.len()
    }

    /// True when no member is held.
    pub fn is_empty(&self) -> bool {
        self.by_time.is_empty()
    }
}

/// Window-state failures.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// The state backend is unreachable or failed transiently; retry later.
    #[error("window state unavailable: {0}")]
    Unavailable(String),
}

/// Shared, durable window state for threshold rules.
#[async_trait]
pub trait WindowState: Send + Sync + 'static {
    /// Observes events in order and returns one decision each. Atomic per
    /// observation: a decision is returned only once it is recorded.
    async fn observe(&self, observations: &[Observation]) -> Result<Vec<Decision>, WindowError>;

    /// A cheap round trip proving the backend works (for readiness).
    async fn check(&self) -> Result<(), WindowError>;
}

/// The durable record a window state backend without durability of its own
/// (Redis without persistence) rebuilds a group from after losing it: the
/// stored events that matched the rule, and which of them raised an alert.
#[async_trait]
pub trait WindowSource: Send + Sync + 'static {
    /// Members of `(rule_id, group_key)` with event time at or after `since`,
    /// oldest first; `decision.fire` is true for events that raised an alert
    /// of this rule (`decision.count` may be 0: it is informational).
    async fn members(
        &self,
        rule_id: &str,
        group_key: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Member>, WindowError>;
}

/// Volatile window state, for offline rule tests and unit tests.
#[derive(Debug, Default)]
pub struct InMemoryWindowState {
    groups: std::sync::Mutex<HashMap<(String, String), GroupWindow>>,
}

#[async_trait]
impl WindowState for InMemoryWindowState {
    async fn observe(&self, observations: &[Observation]) -> Result<Vec<Decision>, WindowError> {
        let mut groups = self
            .groups
            .lock()
            .map_err(|_| WindowError::Unavailable("window state lock poisoned".into()))?;
        let now = Utc::now();
        Ok(observations
            .iter()
            .map(|o| {
                groups
                    .entry((o.rule_id.clone(), o.group_key.clone()))
                    .or_default()
                    .observe(o.event_id, o.event_time, &o.spec, now)
                    .0
            })
            .collect())
    }

    async fn check(&self) -> Result<(), WindowError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPEC: WindowSpec = WindowSpec {
        window: Duration::from_secs(60),
        threshold: 3,
        cooldown: Duration::from_secs(60),
    };

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    /// Processing time of the tests' observations: all within the grace
    /// period, so only event time decides what is kept.
    fn now() -> DateTime<Utc> {
        at(0)
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n + 1)
    }

    #[test]
    fn fires_on_the_third_event_within_the_window_then_cools_down() {
        let mut w = GroupWindow::default();
        assert!(!w.observe(id(1), at(0), &SPEC, now()).0.fire);
        assert!(!w.observe(id(2), at(10), &SPEC, now()).0.fire);
        let third = w.observe(id(3), at(60), &SPEC, now()).0; // exactly 60 s after the first: inside
        assert_eq!(
            third,
            Decision {
                fire: true,
                count: 3
            }
        );
        assert!(!w.observe(id(4), at(70), &SPEC, now()).0.fire, "cooldown");
        // Once the window has slid past all of them, three more fire again.
        assert_eq!(w.observe(id(5), at(131), &SPEC, now()).0.count, 1);
        assert!(!w.observe(id(6), at(132), &SPEC, now()).0.fire);
        assert!(w.observe(id(7), at(133), &SPEC, now()).0.fire);
    }

    #[test]
    fn events_further_apart_than_the_window_do_not_fire() {
        let mut w = GroupWindow::default();
        w.observe(id(1), at(0), &SPEC, now());
        w.observe(id(2), at(30), &SPEC, now());
        let d = w.observe(id(3), at(61), &SPEC, now()).0;
        assert_eq!(
            d,
            Decision {
                fire: false,
                count: 2
            }
        );
    }

    #[test]
    fn a_redelivered_event_gets_its_recorded_decision_and_is_counted_once() {
        let mut w = GroupWindow::default();
        w.observe(id(1), at(0), &SPEC, now());
        for _ in 0..5 {
            let (d, member) = w.observe(id(1), at(0), &SPEC, now());
            assert_eq!(d.count, 1);
            assert!(member.is_none());
        }
        w.observe(id(2), at(1), &SPEC, now());
        let (fired, _) = w.observe(id(3), at(2), &SPEC, now());
        assert!(fired.fire);
        assert_eq!(w.observe(id(3), at(2), &SPEC, now()).0, fired);
    }

    #[test]
    fn late_events_count_in_their_own_window_and_respect_cooldown() {
        let mut w = GroupWindow::default();
        w.observe(id(1), at(100), &SPEC, now());
        w.observe(id(2), at(101), &SPEC, now());
        assert!(w.observe(id(3), at(102), &SPEC, now()).0.fire);
        // A late event at 99: its window [39, 99] holds only itself.
        assert_eq!(
            w.observe(id(4), at(99), &SPEC, now()).0,
            Decision {
                fire: false,
                count: 1
            }
        );
        // A late event at 103 would count 4 but is within cooldown of the fire at 102.
        assert!(!w.observe(id(5), at(103), &SPEC, now()).0.fire);
    }

    #[test]
    fn rebuilding_from_members_reproduces_decisions() {
        let mut w = GroupWindow::default();
        for n in 0..5 {
            w.observe(id(n), at(n as i64), &SPEC, now());
        }
        let rebuilt = GroupWindow::from_members(w.members().collect::<Vec<_>>());
        for n in 0..5 {
            assert_eq!(rebuilt.recorded(id(n)), w.recorded(id(n)));
        }
    }

    #[test]
    fn a_decision_outlives_event_time_pruning_until_its_grace_has_passed() {
        // One batch holds a fired burst and, far later in event time, another
        // burst. A crash before the alert is published makes the first burst
        // come back: it must get its recorded decisions, not new ones.
        let mut w = GroupWindow::default();
        let times = [0, 1, 2, 200, 201, 202];
        let first: Vec<bool> = times
            .iter()
            .enumerate()
            .map(|(n, &t)| w.observe(id(n as u128), at(t), &SPEC, now()).0.fire)
            .collect();
        assert_eq!(first, [false, false, true, false, false, true]);
        let mut rebuilt = GroupWindow::from_members(w.members().collect::<Vec<_>>());
        let replay: Vec<bool> = times
            .iter()
            .enumerate()
            .map(|(n, &t)| rebuilt.observe(id(n as u128), at(t), &SPEC, now()).0.fire)
            .collect();
        assert_eq!(replay, first);
        // Once the grace period is over, event-time pruning applies.
        let later = now()
            + chrono::Duration::from_std(DECISION_GRACE).unwrap()
            + chrono::Duration::seconds(1);
        let pruned = rebuilt.prune(&SPEC, later);
        assert_eq!(pruned.len(), 3, "the first burst is forgotten");
        assert_eq!(rebuilt.len(), 3);
    }

    #[test]
    fn a_rebuilt_member_counts_for_others_and_is_decided_when_observed() {
        // After a state loss the group is rebuilt from the store, which may
        // hold events not evaluated yet (stored, then the process died).
        let rebuilt = |n: u128, secs: i64, fire: bool| Member {
            event_id: id(n),
            micros: at(secs).timestamp_micros(),
            decision: Decision { fire, count: 0 },
            observed_micros: 0,
        };
        let mut w = GroupWindow::from_members([
            rebuilt(1, 0, false),
            rebuilt(2, 1, false),
            rebuilt(3, 2, false),
        ]);
        assert_eq!(w.recorded(id(3)), None, "no decision yet");
        // The redelivered events are decided now, each counted once.
        assert_eq!(
            w.observe(id(1), at(0), &SPEC, now()).0,
            Decision {
                fire: false,
                count: 1
            }
        );
        assert_eq!(
            w.observe(id(2), at(1), &SPEC, now()).0,
            Decision {
                fire: false,
                count: 2
            }
        );
        assert_eq!(
            w.observe(id(3), at(2), &SPEC, now()).0,
            Decision {
                fire: true,
                count: 3
            }
        );
        assert_eq!(w.len(), 3);
        // An event the store says fired stays fired (the same alert id again).
        let mut w = GroupWindow::from_members([
            rebuilt(1, 0, false),
            rebuilt(2, 1, false),
            rebuilt(3, 2, true),
        ]);
        assert!(w.observe(id(3), at(2), &SPEC, now()).0.fire);
        assert!(
            !w.observe(id(4), at(3), &SPEC, now()).0.fire,
            "cooldown of the rebuilt fire"
        );
    }

    /// Reference model: a plain list scanned in full. Every observation is
    /// within the decision grace period, so nothing is forgotten.
    fn model(history: &[(u128, i64)], spec: &WindowSpec) -> Vec<Decision> {
        let mut seen: Vec<(u128, i64, Decision)> = Vec::new();
        let mut out = Vec::new();
        for &(n, t) in history {
            if let Some(&(_, _, d)) = seen.iter().find(|(m, _, _)| *m == n) {
                out.push(d);
                continue;
            }
            let w = spec.window.as_secs() as i64;
            let c = spec.cooldown.as_secs() as i64;
            let count = 1 + seen
                .iter()
                .filter(|(_, s, _)| *s >= t - w && *s <= t)
                .count() as u32;
            let cooling = c > 0 && seen.iter().any(|(_, s, d)| d.fire && (*s - t).abs() < c);
            let d = Decision {
                fire: count >= spec.threshold && !cooling,
                count,
            };
            seen.push((n, t, d));
            out.push(d);
        }
        out
    }

    proptest! {
        /// Under random lateness and redeliveries the window agrees with the
        /// list-scanning model.
        #[test]
        fn matches_the_unpruned_model(
            steps in proptest::collection::vec((0u128..40, 0i64..5, -90i64..=0), 1..200),
        ) {
            let mut clock = 0i64;
            let mut times: HashMap<u128, i64> = HashMap::new();
            let mut history = Vec::new();
            for (n, advance, lateness) in steps {
                clock += advance;
                let t = *times.entry(n).or_insert((clock + lateness).max(0));
                history.push((n, t));
            }
            let expected = model(&history, &SPEC);
            let mut w = GroupWindow::default();
            for ((n, t), want) in history.iter().zip(expected) {
                let got = w.observe(id(*n), at(*t), &SPEC, now()).0;
                prop_assert_eq!(got, want);
            }
        }
    }
}
