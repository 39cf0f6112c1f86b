//! Queue conditions from periodic depth samples: a backlog that keeps
//! growing, dead letters that rise.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use auditflow_core::broker::QueueStats;
use resilience::SharedClock;

use super::book::{Condition, Kind};

/// Samples of each queue over the longer of the two windows (bounded: one
/// sample per check, dropped once older than the window).
#[derive(Debug)]
pub struct QueueWatch {
    clock: SharedClock,
    backlog_threshold: u64,
    backlog_window: Duration,
    dead_letter_window: Duration,
    samples: BTreeMap<String, VecDeque<(u64, QueueStats)>>,
}

impl QueueWatch {
    /// A watch with these thresholds.
    pub fn new(
        clock: SharedClock,
        backlog_threshold: u64,
        backlog_window: Duration,
        dead_letter_window: Duration,
    ) -> QueueWatch {
        QueueWatch {
            clock,
            backlog_threshold,
            backlog_window,
            dead_letter_window,
            samples: BTreeMap::new(),
        }
    }

    /// Adds a sample of `queue`; returns the conditions that hold.
    pub fn observe(&mut self, queue: &str, stats: &QueueStats) -> Vec<Condition> {
        let now = self.clock.now_nanos();
        let keep = nanos(self.backlog_window.max(self.dead_letter_window));
        let samples = self.samples.entry(queue.to_string()).or_default();
        samples.push_back((now, *stats));
        while samples
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > keep)
        {
            samples.pop_front();
        }
        let mut holding = Vec::new();
        // The newest sample at least a whole window old: until there is one,
        // the backlog has not had time to "keep growing".
        let backlog_since = samples
            .iter()
            .rev()
            .find(|(at, _)| now.saturating_sub(*at) >= nanos(self.backlog_window));
        if let Some((_, then)) = backlog_since {
            let window: Vec<u64> = samples
                .iter()
                .filter(|(at, _)| now.saturating_sub(*at) <= nanos(self.backlog_window))
                .map(|(_, s)| s.ready)
                .collect();
            let never_shrank = window.windows(2).all(|w| w[1] >= w[0]);
            if stats.ready > self.backlog_threshold && stats.ready > then.ready && never_shrank {
                holding.push(Condition {
                    kind: Kind::QueueBacklogGrowing,
                    key: queue.to_string(),
                    detail: format!(
                        "{queue} grew from {} to {} ready messages over {}",
                        then.ready,
                        stats.ready,
                        humantime::format_duration(self.backlog_window)
                    ),
                });
            }
        }
        let window_start = samples
            .iter()
            .find(|(at, _)| now.saturating_sub(*at) <= nanos(self.dead_letter_window));
        if let Some((_, then)) = window_start {
            if stats.dead_lettered > then.dead_lettered {
                holding.push(Condition {
                    kind: Kind::DeadLettersRising,
                    key: queue.to_string(),
                    detail: format!(
                        "{queue}: {} new dead letters within {} ({} in all)",
                        stats.dead_lettered - then.dead_lettered,
                        humantime::format_duration(self.dead_letter_window),
                        stats.dead_lettered
                    ),
                });
            }
        }
        holding
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use resilience::ManualClock;

    fn stats(ready: u64, dead_lettered: u64) -> QueueStats {
        QueueStats {
            ready,
            unacked: 0,
            dead_lettered,
        }
    }

    fn kinds(conditions: &[Condition]) -> Vec<Kind> {
        conditions.iter().map(|c| c.kind).collect()
    }

    #[test]
    fn a_backlog_alerts_only_after_growing_a_whole_window() {
        let clock = ManualClock::new();
        let mut watch = QueueWatch::new(
            clock.shared(),
            100,
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        for i in 0..60 {
            assert!(watch.observe("q", &stats(200 + i, 0)).is_empty(), "at {i}");
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(
            kinds(&watch.observe("q", &stats(300, 0))),
            [Kind::QueueBacklogGrowing]
        );
        // Shrinking once within the window ends it.
        clock.advance(Duration::from_secs(1));
        assert!(watch.observe("q", &stats(250, 0)).is_empty());
    }

    #[test]
    fn dead_letters_alert_while_they_rose_within_the_window() {
        let clock = ManualClock::new();
        let mut watch = QueueWatch::new(
            clock.shared(),
            100,
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        assert!(watch.observe("q", &stats(0, 5)).is_empty());
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            kinds(&watch.observe("q", &stats(0, 6))),
            [Kind::DeadLettersRising]
        );
        clock.advance(Duration::from_secs(61));
        assert!(
            watch.observe("q", &stats(0, 6)).is_empty(),
            "quiet for a window"
        );
    }
}
