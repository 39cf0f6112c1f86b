//! What a channel's answer means for the delivery record: delivered, failed
//! for good, or `retrying` at a time chosen by capped exponential backoff
//! with jitter (`notify.retry_*`).
//!
//! The backoff keeps no state outside the store: the wait before a retry is
//! its record's `next_attempt_at - recorded_at`, so the next wait (double
//! it) survives restarts and moves between replicas with the record.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng as _;
use uuid::Uuid;

use auditflow_core::store::{DeliveryRecord, DeliveryStatus};

use crate::channels::{ChannelError, Outcome};
use crate::config::NotifyConfig;

/// The `notify.retry_*` settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    interval: Duration,
    max_interval: Duration,
    retry_for: Duration,
    lease: Duration,
}

/// What the store knew of a delivery before this attempt (a retry's
/// record as claimed); `None` for the first attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prior {
    /// Attempts recorded so far.
    pub attempts: u32,
    /// The wait that preceded this retry.
    pub waited: Duration,
    /// When notify stored the alert (the give-up age counts from it).
    pub received_at: DateTime<Utc>,
}

impl Prior {
    /// The prior of a claimed `retrying` record.
    pub fn of(record: &DeliveryRecord, received_at: DateTime<Utc>) -> Prior {
        let waited = record
            .next_attempt_at
            .and_then(|next| (next - record.recorded_at).to_std().ok())
            .unwrap_or_default();
        Prior {
            attempts: record.attempts,
            waited,
            received_at,
        }
    }
}

/// A record to write and the result label to count it under.
pub(crate) type Recorded = (DeliveryRecord, &'static str);

impl Schedule {
    pub fn new(config: &NotifyConfig) -> Schedule {
        Schedule {
            interval: config.retry_interval,
            max_interval: config.retry_max_interval.max(config.retry_interval),
            retry_for: config.retry_for,
            lease: config.retry_lease,
        }
    }

    /// How long a claimed retry stays reserved.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How often a retry task looks for due retries: the first retry is due
    /// `interval` after a failure, so polling more often gains nothing;
    /// polling at least every 5 s keeps a long interval's lateness bounded.
    pub fn poll(&self) -> Duration {
        self.interval.min(Duration::from_secs(5))
    }

    /// Whether a delivery of an alert stored at `received_at` has been
    /// retried long enough.
    pub fn expired(&self, received_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        (now - received_at)
            .to_std()
            .is_ok_and(|age| age >= self.retry_for)
    }

    /// The wait after a failure: `interval` first, then twice the previous
    /// wait, at most `max_interval`, each within ±20 % so that alerts that
    /// failed together do not all come due in the same instant.
    pub fn delay_after(&self, prior: Option<&Prior>) -> Duration {
        let base = match prior {
            None => self.interval,
            Some(p) => (p.waited * 2).clamp(self.interval, self.max_interval),
        };
        let jittered = base.mul_f64(rand::rng().random_range(0.8..=1.2));
        jittered.min(self.max_interval)
    }

    /// The record for `channel`'s answer about `alert_id`.
    pub fn record(
        &self,
        channel: &str,
        alert_id: Uuid,
        outcome: Result<Outcome, ChannelError>,
        prior: Option<&Prior>,
        now: DateTime<Utc>,
    ) -> Recorded {
        let before = prior.map_or(0, |p| p.attempts);
        let record = |status, attempts: u32, last_error, next_attempt_at| DeliveryRecord {
            alert_id,
            channel: channel.to_string(),
            status,
            attempts: before.saturating_add(attempts),
            last_error,
            recorded_at: now,
            next_attempt_at,
        };
        match outcome {
            Ok(Outcome::Delivered) => (
                record(DeliveryStatus::Delivered, 1, None, None),
                "delivered",
            ),
            Ok(Outcome::AlreadyDelivered) => (
                record(DeliveryStatus::Delivered, 1, None, None),
                "duplicate_skipped",
            ),
            Err(e) if !e.retryable => (
                record(DeliveryStatus::Failed, e.attempts, Some(e.message), None),
                "failed",
            ),
            Err(e) if prior.is_some_and(|p| self.expired(p.received_at, now)) => {
                let message = format!(
                    "gave up after retrying for {}: {}",
                    humantime::format_duration(self.retry_for),
                    e.message
                );
                (
                    record(DeliveryStatus::Failed, e.attempts, Some(message), None),
                    "gave_up",
                )
            }
            Err(e) => {
                let wait = self.delay_after(prior);
                let next = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                (
                    record(
                        DeliveryStatus::Retrying,
                        e.attempts,
                        Some(e.message),
                        Some(next),
                    ),
                    "retrying",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule::new(&NotifyConfig {
            retry_interval: Duration::from_secs(1),
            retry_max_interval: Duration::from_secs(60),
            retry_for: Duration::from_secs(3600),
            ..NotifyConfig::default()
        })
    }

    fn prior(waited: Duration, age: chrono::Duration, now: DateTime<Utc>) -> Prior {
        Prior {
            attempts: 3,
            waited,
            received_at: now - age,
        }
    }

    #[test]
    fn waits_double_within_jitter_up_to_the_cap() {
        let s = schedule();
        let now = Utc::now();
        let first = s.delay_after(None);
        assert!((800..=1200).contains(&first.as_millis()), "{first:?}");
        let p = prior(Duration::from_secs(4), chrono::Duration::seconds(10), now);
        let next = s.delay_after(Some(&p));
        assert!((6400..=9600).contains(&next.as_millis()), "{next:?}");
        let p = prior(Duration::from_secs(50), chrono::Duration::seconds(10), now);
        assert!(s.delay_after(Some(&p)) <= Duration::from_secs(60));
    }

    #[test]
    fn transient_failures_retry_permanent_ones_do_not() {
        let s = schedule();
        let now = Utc::now();
        let id = Uuid::new_v4();
        let (r, result) = s.record(
            "hook",
            id,
            Err(ChannelError::transient("503", 2)),
            None,
            now,
        );
        assert_eq!(
            (r.status, result, r.attempts),
            (DeliveryStatus::Retrying, "retrying", 2)
        );
        assert!(r.next_attempt_at.is_some_and(|t| t > now));
        let (r, result) = s.record(
            "hook",
            id,
            Err(ChannelError::permanent("404", 1)),
            None,
            now,
        );
        assert_eq!((r.status, result), (DeliveryStatus::Failed, "failed"));
        assert_eq!(r.next_attempt_at, None);
    }

    #[test]
    fn a_retry_past_retry_for_gives_up_with_a_reason() {
        let s = schedule();
        let now = Utc::now();
        let old = prior(Duration::from_secs(60), chrono::Duration::hours(2), now);
        let (r, result) = s.record(
            "hook",
            Uuid::new_v4(),
            Err(ChannelError::transient("timed out", 1)),
            Some(&old),
            now,
        );
        assert_eq!(
            (r.status, result, r.attempts),
            (DeliveryStatus::Failed, "gave_up", 4)
        );
        assert!(r
            .last_error
            .is_some_and(|e| e.starts_with("gave up after retrying for 1h")));
        let (r, result) = s.record(
            "hook",
            Uuid::new_v4(),
            Ok(Outcome::Delivered),
            Some(&old),
            now,
        );
        assert_eq!(
            (r.status, result, r.attempts),
            (DeliveryStatus::Delivered, "delivered", 4)
        );
    }
}
