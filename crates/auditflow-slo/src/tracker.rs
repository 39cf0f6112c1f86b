//! One SLO's counts over time, its budget and its alerts.

use std::time::Duration;

use resilience::SharedClock;
use serde::Serialize;

use crate::ring::{BucketRing, Counts};
use crate::spec::{AlertSeverity, SloSpec};

/// Resolution of windows up to [`FINE_SPAN`]: a 5-minute window is 30
/// buckets, so it clears within 10 s of the 5 minutes.
const FINE_WIDTH: Duration = Duration::from_secs(10);
/// Windows up to this long are read from the fine ring.
const FINE_SPAN: Duration = Duration::from_secs(6 * 3600);
/// Resolution of longer windows and of the period (30 days = 8,640 buckets).
const COARSE_WIDTH: Duration = Duration::from_secs(300);

/// `value >= threshold`, forgiving the rounding of `1 - objective`:
/// `1.0 - 0.999` is 0.0010000000000000009, so an error ratio of exactly
/// 1.44 % would otherwise compute to a burn of 14.399999999999984 and miss
/// a 14.4x threshold it meets.
fn at_least(value: f64, threshold: f64) -> bool {
    value >= threshold * (1.0 - 1e-9)
}

/// The burn rate over one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowBurn {
    /// The window.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Counts in the window.
    pub counts: Counts,
    /// `(bad / total) / (1 - objective)`; 0 without events.
    pub burn_rate: f64,
}

/// One alert's state at evaluation time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertState {
    /// The alert's name.
    pub name: String,
    /// Page or ticket.
    pub severity: AlertSeverity,
    /// Threshold.
    pub threshold: f64,
    /// Burn over the long window.
    pub long: WindowBurn,
    /// Burn over the short window.
    pub short: WindowBurn,
    /// Both burns at or above the threshold.
    pub firing: bool,
}

/// Everything known about one SLO now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloReport {
    /// The SLO's name.
    pub name: String,
    /// Target good ratio.
    pub objective: f64,
    /// Budget period.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// Counts over the period (or since start, when shorter).
    pub period_counts: Counts,
    /// Good ratio over the period; 1 without events.
    pub sli: f64,
    /// `1 - bad / ((1 - objective) * total)` over the period: 1 untouched,
    /// 0 spent, negative overspent. 1 without events.
    pub error_budget_remaining: f64,
    /// Each alert's burns and whether it fires.
    pub alerts: Vec<AlertState>,
}

impl SloReport {
    /// The alerts firing now.
    pub fn firing(&self) -> impl Iterator<Item = &AlertState> {
        self.alerts.iter().filter(|a| a.firing)
    }
}

/// Counts of one SLO in two fixed rings (10 s buckets for 6 h, 5 min buckets
/// for the period), read by the clock it was given.
#[derive(Debug, Clone)]
pub struct SloTracker {
    spec: SloSpec,
    clock: SharedClock,
    fine: BucketRing,
    coarse: BucketRing,
}

impl SloTracker {
    /// A tracker for a validated `spec`.
    pub fn new(spec: SloSpec, clock: SharedClock) -> Result<SloTracker, crate::SloError> {
        spec.validate()?;
        let longest = spec
            .alerts
            .iter()
            .map(|a| a.long_window)
            .max()
            .unwrap_or_default()
            .max(spec.period);
        Ok(SloTracker {
            fine: BucketRing::new(FINE_WIDTH, FINE_SPAN),
            coarse: BucketRing::new(COARSE_WIDTH, longest),
            spec,
            clock,
        })
    }

    /// The spec.
    pub fn spec(&self) -> &SloSpec {
        &self.spec
    }

    /// Bucket slots held (fixed at construction: memory does not grow).
    pub fn slots(&self) -> usize {
        self.fine.slots() + self.coarse.slots()
    }

    /// Records `good` of `total` events as happening now.
    pub fn record(&mut self, good: u64, total: u64) {
        let good = good.min(total);
        let now = self.clock.now_nanos();
        self.fine.record(now, good, total);
        self.coarse.record(now, good, total);
    }

    /// Counts over the last `window` (fine ring up to 6 h, else coarse).
    pub fn counts(&self, window: Duration) -> Counts {
        let now = self.clock.now_nanos();
        if window <= FINE_SPAN {
            self.fine.sum(now, window)
        } else {
            self.coarse.sum(now, window)
        }
    }

    /// The burn rate over the last `window`.
    pub fn burn(&self, window: Duration) -> WindowBurn {
        let counts = self.counts(window);
        WindowBurn {
            window,
            counts,
            burn_rate: counts.error_ratio() / self.spec.budget_ratio(),
        }
    }

    /// The budget, the SLI and every alert, now.
    pub fn report(&self) -> SloReport {
        let period_counts = self.counts(self.spec.period);
        let (sli, remaining) = if period_counts.total == 0 {
            (1.0, 1.0)
        } else {
            let allowed = self.spec.budget_ratio() * period_counts.total as f64;
            (
                period_counts.good as f64 / period_counts.total as f64,
                1.0 - period_counts.bad() as f64 / allowed,
            )
        };
        let alerts = self
            .spec
            .alerts
            .iter()
            .map(|alert| {
                let long = self.burn(alert.long_window);
                let short = self.burn(alert.short_window);
                AlertState {
                    name: alert.name.clone(),
                    severity: alert.severity,
                    threshold: alert.burn_rate,
                    firing: at_least(long.burn_rate, alert.burn_rate)
                        && at_least(short.burn_rate, alert.burn_rate),
                    long,
                    short,
                }
            })
            .collect();
        SloReport {
            name: self.spec.name.clone(),
            objective: self.spec.objective,
            period: self.spec.period,
            period_counts,
            sli,
            error_budget_remaining: remaining,
            alerts,
        }
    }
}
