//! Which system-alert notices to send, and when: a pure state machine over
//! an injectable clock.
//!
//! Per condition (its kind and key, e.g. `role_dead` / `analyze@10.0.0.5:9101`):
//!
//! - while it holds, a **firing** notice is due when none was accepted yet,
//!   or the last accepted one is older than `repeat_interval` (the rate
//!   limit, per kind and key);
//! - a send counts only when a channel **accepted** it
//!   ([`AlertBook::record`] with `accepted = true`): when every channel
//!   failed, the notice stays due and the next evaluation tries again, so the
//!   limiter never suppresses an alert nobody received;
//! - once it no longer holds, a **resolved** notice is due (until accepted)
//!   if a firing notice was sent or attempted; after it, a new occurrence
//!   notifies at once.

use std::collections::BTreeMap;
use std::time::Duration;

use resilience::SharedClock;
use serde::Serialize;

/// Kinds of system alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A dependency does not answer its live check.
    DependencyDown,
    /// A role instance stopped sending heartbeats (phi over the threshold).
    RoleDead,
    /// Every analyze instance seen is dead: nothing analyses events.
    AllAnalyzersDead,
    /// A queue's backlog grew over the backlog window and is over the threshold.
    QueueBacklogGrowing,
    /// A queue's dead letters rose within the dead-letter window.
    DeadLettersRising,
    /// An SLO's paging burn-rate alert fires.
    SloBurn,
}

impl Kind {
    /// Stable name (labels, rule ids, runbook anchors).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DependencyDown => "dependency_down",
            Kind::RoleDead => "role_dead",
            Kind::AllAnalyzersDead => "all_analyzers_dead",
            Kind::QueueBacklogGrowing => "queue_backlog_growing",
            Kind::DeadLettersRising => "dead_letters_rising",
            Kind::SloBurn => "slo_burn",
        }
    }

    /// The runbook entry in docs/operations.md.
    pub fn runbook(self) -> &'static str {
        match self {
            Kind::DependencyDown => "docs/operations.md#dependency-down",
            Kind::RoleDead | Kind::AllAnalyzersDead => "docs/operations.md#role-dead",
            Kind::QueueBacklogGrowing => "docs/operations.md#queue-backlog-growing",
            Kind::DeadLettersRising => "docs/operations.md#dead-letters-rising",
            Kind::SloBurn => "docs/operations.md#slo-burn",
        }
    }
}

/// A condition that holds now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    /// Its kind.
    pub kind: Kind,
    /// What it is about (dependency, role instance, queue, SLO).
    pub key: String,
    /// One sentence for the notice.
    pub detail: String,
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The condition holds.
    Firing,
    /// It held and no longer does.
    Resolved,
}

/// A notice to send now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    /// Firing or resolved.
    pub state: State,
    /// The condition (for a resolved notice: as last seen).
    pub condition: Condition,
}

#[derive(Debug, Default)]
struct Entry {
    holds: bool,
    last: Option<Condition>,
    /// When a firing notice was last accepted by a channel.
    accepted_at: Option<u64>,
    /// A firing notice was sent or attempted since the condition began.
    notified: bool,
    resolve_due: bool,
}

/// Every condition's notification state.
#[derive(Debug)]
pub struct AlertBook {
    clock: SharedClock,
    repeat_interval: Duration,
    entries: BTreeMap<(Kind, String), Entry>,
}

impl AlertBook {
    /// A book whose firing notices repeat at most every `repeat_interval`.
    pub fn new(clock: SharedClock, repeat_interval: Duration) -> AlertBook {
        AlertBook {
            clock,
            repeat_interval,
            entries: BTreeMap::new(),
        }
    }

    /// Takes the conditions that hold now; returns the notices due.
    pub fn update(&mut self, holding: Vec<Condition>) -> Vec<Notice> {
        let now = self.clock.now_nanos();
        let repeat = u64::try_from(self.repeat_interval.as_nanos()).unwrap_or(u64::MAX);
        let mut seen = std::collections::BTreeSet::new();
        let mut due = Vec::new();
        for condition in holding {
            let key = (condition.kind, condition.key.clone());
            seen.insert(key.clone());
            let entry = self.entries.entry(key).or_default();
            entry.holds = true;
            entry.resolve_due = false;
            entry.last = Some(condition.clone());
            let limited = entry
                .accepted_at
                .is_some_and(|at| now.saturating_sub(at) < repeat);
            if !limited {
                entry.notified = true;
                due.push(Notice {
                    state: State::Firing,
                    condition,
                });
            }
        }
        for (key, entry) in &mut self.entries {
            if entry.holds && !seen.contains(key) {
                entry.holds = false;
                entry.resolve_due = entry.notified;
            }
            if entry.resolve_due {
                if let Some(condition) = &entry.last {
                    due.push(Notice {
                        state: State::Resolved,
                        condition: condition.clone(),
                    });
                }
            }
        }
        // Forget conditions that are over and fully notified.
        self.entries.retain(|_, e| e.holds || e.resolve_due);
        due
    }

    /// Records the outcome of sending `notice`: only an accepted notice
    /// counts as sent.
    pub fn record(&mut self, notice: &Notice, accepted: bool) {
        let key = (notice.condition.kind, notice.condition.key.clone());
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        match notice.state {
            State::Firing if accepted => entry.accepted_at = Some(self.clock.now_nanos()),
            State::Firing => {}
            State::Resolved if accepted && !entry.holds => {
                self.entries.remove(&key);
            }
            State::Resolved => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resilience::ManualClock;

    fn role_dead() -> Condition {
        Condition {
            kind: Kind::RoleDead,
            key: "analyze@a".into(),
            detail: "no heartbeat".into(),
        }
    }

    fn states(notices: &[Notice]) -> Vec<State> {
        notices.iter().map(|n| n.state).collect()
    }

    #[test]
    fn fires_once_per_repeat_interval_then_resolves() {
        let clock = ManualClock::new();
        let mut book = AlertBook::new(clock.shared(), Duration::from_secs(300));
        let notices = book.update(vec![role_dead()]);
        assert_eq!(states(&notices), [State::Firing]);
        book.record(&notices[0], true);
        clock.advance(Duration::from_secs(60));
        assert!(book.update(vec![role_dead()]).is_empty(), "rate limited");
        clock.advance(Duration::from_secs(240));
        let notices = book.update(vec![role_dead()]);
        assert_eq!(states(&notices), [State::Firing], "repeats after 5 min");
        book.record(&notices[0], true);
        let notices = book.update(vec![]);
        assert_eq!(states(&notices), [State::Resolved]);
        book.record(&notices[0], true);
        assert!(book.update(vec![]).is_empty(), "resolved once");
        // A new occurrence notifies at once.
        assert_eq!(states(&book.update(vec![role_dead()])), [State::Firing]);
    }

    #[test]
    fn a_notice_no_channel_accepted_is_not_counted_as_sent() {
        let clock = ManualClock::new();
        let mut book = AlertBook::new(clock.shared(), Duration::from_secs(300));
        let notices = book.update(vec![role_dead()]);
        book.record(&notices[0], false);
        clock.advance(Duration::from_secs(1));
        let notices = book.update(vec![role_dead()]);
        assert_eq!(states(&notices), [State::Firing], "tried again at once");
        book.record(&notices[0], true);
        clock.advance(Duration::from_secs(1));
        assert!(book.update(vec![role_dead()]).is_empty());
        // A resolved notice nobody took is due again too.
        let notices = book.update(vec![]);
        book.record(&notices[0], false);
        assert_eq!(states(&book.update(vec![])), [State::Resolved]);
    }

    #[test]
    fn a_condition_that_returns_before_its_resolve_was_accepted_keeps_firing() {
        let clock = ManualClock::new();
        let mut book = AlertBook::new(clock.shared(), Duration::from_secs(300));
        let notices = book.update(vec![role_dead()]);
        book.record(&notices[0], true);
        let notices = book.update(vec![]);
        assert_eq!(states(&notices), [State::Resolved]);
        book.record(&notices[0], false);
        // Back before the resolve got through: no resolve, and the firing
        // notice is within its repeat interval.
        assert!(book.update(vec![role_dead()]).is_empty());
    }
}
