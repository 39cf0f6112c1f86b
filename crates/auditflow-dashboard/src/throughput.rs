//! Events and alerts per second, from the store's totals sampled while
//! someone watches the overview.
//!
//! Sampling happens when the overview (or its live refresh) is served, at
//! most once per [`MIN_INTERVAL`], so an idle dashboard puts no load on the
//! store. The rate between two samples is their difference over the time
//! between them; a gap (nobody watching) shows as one averaged column.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use auditflow_core::store::StoreCounts;

/// Samples closer together than this are not taken (several viewers share them).
pub const MIN_INTERVAL: Duration = Duration::from_millis(1500);
/// How many samples are kept (a few minutes at the refresh interval).
pub const KEEP: usize = 90;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    counts: StoreCounts,
}

/// Rates per second between consecutive samples, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    /// Events stored per second.
    pub events: Vec<f64>,
    /// Alerts stored per second.
    pub alerts: Vec<f64>,
}

/// The recent samples of the store's totals.
#[derive(Debug, Default)]
pub struct Throughput {
    samples: Mutex<VecDeque<Sample>>,
}

impl Throughput {
    /// Records the totals observed at `now`, unless the newest sample is
    /// younger than [`MIN_INTERVAL`].
    pub fn record(&self, now: Instant, counts: StoreCounts) {
        let mut samples = self.lock();
        if samples
            .back()
            .is_some_and(|last| now.duration_since(last.at) < MIN_INTERVAL)
        {
            return;
        }
        samples.push_back(Sample { at: now, counts });
        while samples.len() > KEEP {
            samples.pop_front();
        }
    }

    /// Rates between consecutive samples.
    pub fn rates(&self) -> Rates {
        let samples = self.lock();
        let mut rates = Rates::default();
        for (before, after) in samples.iter().zip(samples.iter().skip(1)) {
            let secs = after.at.duration_since(before.at).as_secs_f64();
            if secs <= 0.0 {
                continue;
            }
            // Totals only grow; a smaller one means another store (a
            // restart on a new data directory): no rate for that step.
            let per_sec = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
            rates
                .events
                .push(per_sec(before.counts.events, after.counts.events));
            rates
                .alerts
                .push(per_sec(before.counts.alerts, after.counts.alerts));
        }
        rates
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        match self.samples.lock() {
            Ok(samples) => samples,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(events: u64, alerts: u64) -> StoreCounts {
        StoreCounts { events, alerts }
    }

    #[test]
    fn rates_are_differences_over_elapsed_time() {
        let throughput = Throughput::default();
        let t0 = Instant::now();
        throughput.record(t0, counts(100, 1));
        // Too soon: ignored, so two viewers do not make a zero-length step.
        throughput.record(t0 + Duration::from_millis(100), counts(150, 1));
        throughput.record(t0 + Duration::from_secs(2), counts(140 + 60, 3));
        throughput.record(t0 + Duration::from_secs(4), counts(200, 3));
        assert_eq!(
            throughput.rates(),
            Rates {
                events: vec![50.0, 0.0],
                alerts: vec![1.0, 0.0]
            }
        );
    }

    #[test]
    fn only_the_newest_samples_are_kept() {
        let throughput = Throughput::default();
        let t0 = Instant::now();
        for i in 0..(KEEP as u64 + 10) {
            throughput.record(t0 + Duration::from_secs(2 * i), counts(i, 0));
        }
        assert_eq!(throughput.rates().events.len(), KEEP - 1);
    }
}
