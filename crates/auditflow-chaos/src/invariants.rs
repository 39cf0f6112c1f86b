//! The invariants every scenario must keep, as pure functions over what was
//! sent and what the system holds at the end, so that each one can be shown
//! to catch a violation (see the tests below and the sabotage scenarios).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The invariants, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    /// Every event answered 202 is stored exactly once; nothing that was
    /// never sent is stored.
    AckedStoredOnce,
    /// The stored alerts are exactly the oracle's: none missing, none
    /// extra, none twice.
    AlertsMatchOracle,
    /// Each channel received every expected alert exactly once, and nothing else.
    DeliveredOncePerChannel,
    /// Every AuditFlow process answers `/readyz` with `ready` at the end.
    HealthyAgain,
    /// The load itself completed: every request acknowledged in time, and
    /// good input never refused.
    LoadCompleted,
    /// A scenario-specific expectation (named in the detail).
    Scenario,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Invariant::AckedStoredOnce => "acked events stored exactly once",
            Invariant::AlertsMatchOracle => "alerts == oracle",
            Invariant::DeliveredOncePerChannel => "delivered once per channel",
            Invariant::HealthyAgain => "healthy again",
            Invariant::LoadCompleted => "load completed",
            Invariant::Scenario => "scenario expectation",
        };
        f.write_str(name)
    }
}

/// One broken invariant, with enough detail to start a post-mortem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
}

impl Violation {
    pub fn new(invariant: Invariant, detail: impl Into<String>) -> Violation {
        Violation {
            invariant,
            detail: detail.into(),
        }
    }
}

/// What the clients sent and what the oracle expects.
#[derive(Debug, Default)]
pub struct Expectation {
    /// Every event id answered 202.
    pub acked: Vec<Uuid>,
    /// Every event id ever sent (acknowledged or not).
    pub sent: HashSet<Uuid>,
    /// Expected alert id -> (rule id, triggering event id).
    pub alerts: HashMap<Uuid, (String, Uuid)>,
}

/// What one channel delivered: one entry per delivery seen.
#[derive(Debug, Clone)]
pub struct ChannelLog {
    pub name: String,
    pub deliveries: Vec<Uuid>,
}

/// What the system holds at the end.
#[derive(Debug, Default)]
pub struct Observed {
    /// Stored event ids, one entry per listed event.
    pub events: Vec<Uuid>,
    /// Stored alerts as (alert id, rule id, correlation id), one per listed alert.
    pub alerts: Vec<(Uuid, String, Uuid)>,
    pub channels: Vec<ChannelLog>,
    /// Each process's `/readyz` status (`None`: no answer).
    pub health: Vec<(String, Option<String>)>,
}

/// Up to five items, for details.
fn sample<T: fmt::Debug>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<T> = items.into_iter().take(5).collect();
    format!("{items:?}")
}

fn counts(ids: &[Uuid]) -> HashMap<Uuid, usize> {
    let mut map = HashMap::new();
    for id in ids {
        *map.entry(*id).or_insert(0) += 1;
    }
    map
}

/// Acked events stored exactly once; nothing unsent stored.
pub fn acked_stored_once(expect: &Expectation, observed: &Observed) -> Vec<Violation> {
    let stored = counts(&observed.events);
    let mut out = Vec::new();
    let lost: Vec<&Uuid> = expect
        .acked
        .iter()
        .filter(|id| !stored.contains_key(id))
        .collect();
    if !lost.is_empty() {
        out.push(Violation::new(
            Invariant::AckedStoredOnce,
            format!(
                "{} acknowledged events not stored (lost), e.g. {}",
                lost.len(),
                sample(lost)
            ),
        ));
    }
    let twice: BTreeMap<Uuid, usize> = stored
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (*id, *n))
        .collect();
    if !twice.is_empty() {
        out.push(Violation::new(
            Invariant::AckedStoredOnce,
            format!(
                "{} events stored more than once, e.g. {}",
                twice.len(),
                sample(&twice)
            ),
        ));
    }
    let unsent: Vec<&Uuid> = stored
        .keys()
        .filter(|id| !expect.sent.contains(id))
        .collect();
    if !unsent.is_empty() {
        out.push(Violation::new(
            Invariant::AckedStoredOnce,
            format!(
                "{} stored events were never sent, e.g. {}",
                unsent.len(),
                sample(unsent)
            ),
        ));
    }
    out
}

/// Stored alerts == the oracle's.
pub fn alerts_match_oracle(expect: &Expectation, observed: &Observed) -> Vec<Violation> {
    let ids: Vec<Uuid> = observed.alerts.iter().map(|(id, _, _)| *id).collect();
    let stored = counts(&ids);
    let mut out = Vec::new();
    let missing: Vec<(&Uuid, &(String, Uuid))> = expect
        .alerts
        .iter()
        .filter(|(id, _)| !stored.contains_key(id))
        .collect();
    if !missing.is_empty() {
        out.push(Violation::new(
            Invariant::AlertsMatchOracle,
            format!(
                "{} expected alerts missing (alert id, (rule, event)), e.g. {}",
                missing.len(),
                sample(missing)
            ),
        ));
    }
    let extra: Vec<&(Uuid, String, Uuid)> = observed
        .alerts
        .iter()
        .filter(|(id, _, _)| !expect.alerts.contains_key(id))
        .collect();
    if !extra.is_empty() {
        out.push(Violation::new(
            Invariant::AlertsMatchOracle,
            format!(
                "{} stored alerts the oracle does not expect (alert id, rule, event), e.g. {}",
                extra.len(),
                sample(extra)
            ),
        ));
    }
    let twice: Vec<(&Uuid, &usize)> = stored.iter().filter(|(_, n)| **n > 1).collect();
    if !twice.is_empty() {
        out.push(Violation::new(
            Invariant::AlertsMatchOracle,
            format!(
                "{} alerts stored more than once, e.g. {}",
                twice.len(),
                sample(twice)
            ),
        ));
    }
    let wrong: Vec<&(Uuid, String, Uuid)> = observed
        .alerts
        .iter()
        .filter(|(id, rule, event)| {
            expect
                .alerts
                .get(id)
                .is_some_and(|(r, e)| r != rule || e != event)
        })
        .collect();
    if !wrong.is_empty() {
        out.push(Violation::new(
            Invariant::AlertsMatchOracle,
            format!(
                "{} alerts name another rule or event than the oracle's, e.g. {}",
                wrong.len(),
                sample(wrong)
            ),
        ));
    }
    out
}

/// Every channel: every expected alert exactly once, nothing else.
pub fn delivered_once_per_channel(expect: &Expectation, observed: &Observed) -> Vec<Violation> {
    let mut out = Vec::new();
    for channel in &observed.channels {
        let seen = counts(&channel.deliveries);
        let missing = expect
            .alerts
            .keys()
            .filter(|id| !seen.contains_key(id))
            .count();
        let twice: Vec<(&Uuid, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
        let unknown = seen
            .keys()
            .filter(|id| !expect.alerts.contains_key(id))
            .count();
        if missing > 0 {
            out.push(Violation::new(
                Invariant::DeliveredOncePerChannel,
                format!(
                    "channel {}: {missing} expected alerts never delivered",
                    channel.name
                ),
            ));
        }
        if !twice.is_empty() {
            out.push(Violation::new(
                Invariant::DeliveredOncePerChannel,
                format!(
                    "channel {}: {} alerts delivered more than once, e.g. {}",
                    channel.name,
                    twice.len(),
                    sample(twice)
                ),
            ));
        }
        if unknown > 0 {
            out.push(Violation::new(
                Invariant::DeliveredOncePerChannel,
                format!(
                    "channel {}: {unknown} deliveries of alerts the oracle does not expect",
                    channel.name
                ),
            ));
        }
    }
    out
}

/// Every process ready.
pub fn healthy_again(observed: &Observed) -> Vec<Violation> {
    observed
        .health
        .iter()
        .filter(|(_, status)| status.as_deref() != Some("ready"))
        .map(|(name, status)| {
            Violation::new(
                Invariant::HealthyAgain,
                format!("{name}: /readyz status {status:?} at the end"),
            )
        })
        .collect()
}

/// All four invariants.
pub fn check_all(expect: &Expectation, observed: &Observed) -> Vec<Violation> {
    let mut out = acked_stored_once(expect, observed);
    out.extend(alerts_match_oracle(expect, observed));
    out.extend(delivered_once_per_channel(expect, observed));
    out.extend(healthy_again(observed));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A consistent world: 4 events sent and acked, 2 alerts, one channel
    /// that has both, one ready process.
    fn world() -> (Expectation, Observed) {
        let events: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        let alerts: Vec<Uuid> = (0..2).map(|_| Uuid::new_v4()).collect();
        let expect = Expectation {
            acked: events.clone(),
            sent: events.iter().copied().collect(),
            alerts: HashMap::from([
                (alerts[0], ("R1".to_string(), events[0])),
                (alerts[1], ("R2".to_string(), events[1])),
            ]),
        };
        let observed = Observed {
            events: events.clone(),
            alerts: vec![
                (alerts[0], "R1".into(), events[0]),
                (alerts[1], "R2".into(), events[1]),
            ],
            channels: vec![ChannelLog {
                name: "file".into(),
                deliveries: alerts.clone(),
            }],
            health: vec![("up".into(), Some("ready".into()))],
        };
        (expect, observed)
    }

    fn only(violations: &[Violation]) -> Invariant {
        assert_eq!(violations.len(), 1, "{violations:#?}");
        violations[0].invariant
    }

    #[test]
    fn a_consistent_world_has_no_violation() {
        let (expect, observed) = world();
        assert_eq!(check_all(&expect, &observed), vec![]);
    }

    #[test]
    fn a_lost_acked_event_is_caught() {
        let (expect, mut observed) = world();
        observed.events.pop();
        let v = check_all(&expect, &observed);
        assert_eq!(only(&v), Invariant::AckedStoredOnce);
        assert!(v[0].detail.contains("1 acknowledged events not stored"));
    }

    #[test]
    fn an_event_stored_twice_or_never_sent_is_caught() {
        let (expect, mut observed) = world();
        observed.events.push(observed.events[0]);
        assert_eq!(
            only(&check_all(&expect, &observed)),
            Invariant::AckedStoredOnce
        );
        let (expect, mut observed) = world();
        observed.events.push(Uuid::new_v4());
        let v = check_all(&expect, &observed);
        assert_eq!(only(&v), Invariant::AckedStoredOnce);
        assert!(v[0].detail.contains("never sent"));
    }

    #[test]
    fn an_unacked_but_sent_event_may_be_stored() {
        // Stored before the answer was lost: allowed (the client retries).
        let (mut expect, observed) = world();
        expect.acked.pop();
        assert_eq!(check_all(&expect, &observed), vec![]);
    }

    #[test]
    fn a_missing_an_extra_and_a_duplicate_alert_are_caught() {
        let (expect, mut observed) = world();
        observed.alerts.pop();
        observed.channels.clear();
        assert_eq!(
            only(&check_all(&expect, &observed)),
            Invariant::AlertsMatchOracle
        );

        let (expect, mut observed) = world();
        observed
            .alerts
            .push((Uuid::new_v4(), "R1".into(), expect.acked[2]));
        let v = check_all(&expect, &observed);
        assert_eq!(only(&v), Invariant::AlertsMatchOracle);
        assert!(v[0].detail.contains("does not expect"));

        let (expect, mut observed) = world();
        let first = observed.alerts[0].clone();
        observed.alerts.push(first);
        let v = check_all(&expect, &observed);
        assert_eq!(only(&v), Invariant::AlertsMatchOracle);
        assert!(v[0].detail.contains("more than once"));
    }

    #[test]
    fn an_alert_for_the_wrong_event_is_caught() {
        let (expect, mut observed) = world();
        observed.alerts[0].2 = expect.acked[3];
        let v = check_all(&expect, &observed);
        assert_eq!(only(&v), Invariant::AlertsMatchOracle);
        assert!(v[0].detail.contains("another rule or event"));
    }

    #[test]
    fn a_channel_missing_doubling_or_inventing_a_delivery_is_caught() {
        for change in 0..3 {
            let (expect, mut observed) = world();
            let deliveries = &mut observed.channels[0].deliveries;
            match change {
                0 => {
                    deliveries.pop();
                }
                1 => deliveries.push(deliveries[0]),
                _ => deliveries.push(Uuid::new_v4()),
            }
            let v = check_all(&expect, &observed);
            assert_eq!(
                only(&v),
                Invariant::DeliveredOncePerChannel,
                "change {change}"
            );
        }
    }

    #[test]
    fn a_process_not_ready_or_silent_is_caught() {
        let (expect, mut observed) = world();
        observed
            .health
            .push(("analyze".into(), Some("degraded".into())));
        observed.health.push(("notify".into(), None));
        let v = check_all(&expect, &observed);
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|v| v.invariant == Invariant::HealthyAgain));
    }
}
