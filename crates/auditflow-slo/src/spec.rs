//! What an SLO promises and when it alerts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Who an alert is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    /// Wake someone up: the budget goes fast.
    Page,
    /// Look at it during working hours: the budget goes steadily.
    Ticket,
}

impl AlertSeverity {
    /// Stable label value: `page`, `ticket`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Page => "page",
            AlertSeverity::Ticket => "ticket",
        }
    }
}

/// One multi-window burn-rate alert: fires while the burn rate over both
/// windows is at least `burn_rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnRateAlert {
    /// Stable name, used as a label (`page_1h`, ...).
    pub name: String,
    /// Page or ticket.
    pub severity: AlertSeverity,
    /// The window that makes the alert significant.
    #[serde(with = "humantime_serde")]
    pub long_window: Duration,
    /// The window that makes the alert stop soon after the burn stops.
    #[serde(with = "humantime_serde")]
    pub short_window: Duration,
    /// Threshold, in multiples of the budget-neutral error rate.
    pub burn_rate: f64,
}

/// The SRE workbook's recommended alerts for a 30-day period: 2 % of the
/// budget in 1 h, 5 % in 6 h (pages), 10 % in 3 days (ticket).
pub fn default_alerts() -> Vec<BurnRateAlert> {
    const MIN: u64 = 60;
    const HOUR: u64 = 3600;
    let alert = |name: &str, severity, long: u64, short: u64, burn_rate| BurnRateAlert {
        name: name.into(),
        severity,
        long_window: Duration::from_secs(long),
        short_window: Duration::from_secs(short),
        burn_rate,
    };
    vec![
        alert("page_1h", AlertSeverity::Page, HOUR, 5 * MIN, 14.4),
        alert("page_6h", AlertSeverity::Page, 6 * HOUR, 30 * MIN, 6.0),
        alert("ticket_3d", AlertSeverity::Ticket, 72 * HOUR, 6 * HOUR, 1.0),
    ]
}

/// An SLO: `objective` of events good over `period`, and its alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct SloSpec {
    /// Stable name, used as a label.
    pub name: String,
    /// Target good ratio, strictly between 0 and 1 (0.999 = 99.9 %).
    pub objective: f64,
    /// The period the error budget covers (typically 30 days).
    pub period: Duration,
    /// Burn-rate alerts.
    pub alerts: Vec<BurnRateAlert>,
}

/// An SLO that cannot be evaluated as declared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("SLO '{slo}': {reason}")]
pub struct SloError {
    /// The SLO's name.
    pub slo: String,
    /// What is wrong.
    pub reason: String,
}

impl SloSpec {
    /// A spec with the [`default_alerts`].
    pub fn new(name: impl Into<String>, objective: f64, period: Duration) -> SloSpec {
        SloSpec {
            name: name.into(),
            objective,
            period,
            alerts: default_alerts(),
        }
    }

    /// The error budget as a ratio of events: `1 - objective`.
    pub fn budget_ratio(&self) -> f64 {
        1.0 - self.objective
    }

    /// Checks that the numbers make sense.
    pub fn validate(&self) -> Result<(), SloError> {
        let fail = |reason: String| {
            Err(SloError {
                slo: self.name.clone(),
                reason,
            })
        };
        if !(self.objective > 0.0 && self.objective < 1.0) {
            return fail(format!(
                "objective {} must be strictly between 0 and 1 (0.999 = 99.9 %)",
                self.objective
            ));
        }
        if self.period < Duration::from_secs(3600) {
            return fail(format!("period {:?} is shorter than an hour", self.period));
        }
        for alert in &self.alerts {
            if alert.short_window.is_zero() || alert.short_window >= alert.long_window {
                return fail(format!(
                    "alert '{}': the short window must be positive and shorter than the long one",
                    alert.name
                ));
            }
            if alert.long_window > self.period {
                return fail(format!(
                    "alert '{}': the long window is longer than the period",
                    alert.name
                ));
            }
            if !(alert.burn_rate > 0.0 && alert.burn_rate.is_finite()) {
                return fail(format!(
                    "alert '{}': burn rate must be positive",
                    alert.name
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_numbers_are_refused() {
        let day = Duration::from_secs(86_400);
        assert!(SloSpec::new("x", 0.999, 30 * day).validate().is_ok());
        assert!(SloSpec::new("x", 1.0, 30 * day).validate().is_err());
        assert!(SloSpec::new("x", 0.0, 30 * day).validate().is_err());
        // A 3-day ticket window does not fit a 1-day period.
        assert!(SloSpec::new("x", 0.99, day).validate().is_err());
        let mut spec = SloSpec::new("x", 0.99, 30 * day);
        spec.alerts[0].short_window = spec.alerts[0].long_window;
        assert!(spec.validate().is_err());
    }
}
