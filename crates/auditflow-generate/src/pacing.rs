//! Rate pacing: a schedule that holds an aggregate rate of events per second.
//!
//! The driver has one dispatcher that asks the [`Pacer`] before handing each
//! batch to a worker, so the rate is held across all workers however many
//! there are. Event `k` is due at `origin + k / rate`; a dispatcher that fell
//! behind may catch up by at most [`Pacer::max_lag`] worth of events at once
//! (the origin moves forward instead), so a stall never turns into a flood.

use std::time::Duration;

use tokio::time::Instant;

/// Paces events to a target rate.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Events per second; `None` means as fast as possible.
    rate: Option<f64>,
    origin: Instant,
    issued: u64,
    max_lag: Duration,
}

impl Pacer {
    /// A pacer for `rate` events per second starting now; `rate <= 0` (or
    /// not finite) means unpaced.
    pub fn new(rate: f64) -> Pacer {
        Pacer::starting_at(rate, Instant::now())
    }

    /// A pacer whose first event is due at `origin`.
    pub fn starting_at(rate: f64, origin: Instant) -> Pacer {
        let rate = (rate.is_finite() && rate > 0.0).then_some(rate);
        Pacer {
            rate,
            origin,
            issued: 0,
            max_lag: Duration::from_millis(250),
        }
    }

    /// Sets how far behind schedule the pacer may be before it stops trying
    /// to catch up (default 250 ms).
    pub fn with_max_lag(mut self, max_lag: Duration) -> Pacer {
        self.max_lag = max_lag;
        self
    }

    /// How far behind schedule the pacer may be before it stops catching up.
    pub fn max_lag(&self) -> Duration {
        self.max_lag
    }

    /// Events issued so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// When the next event is due (`None` when unpaced).
    pub fn next_due(&self) -> Option<Instant> {
        let rate = self.rate?;
        Some(self.origin + Duration::from_secs_f64(self.issued as f64 / rate))
    }

    /// Waits until the next event is due, then issues `n` events.
    pub async fn acquire(&mut self, n: u64) {
        if let Some(due) = self.next_due() {
            let now = Instant::now();
            if now > due + self.max_lag {
                // Fell behind (a stall, or workers could not keep up): move
                // the schedule rather than bursting to catch up.
                self.origin += now - due - self.max_lag;
            } else if now < due {
                tokio::time::sleep_until(due).await;
            }
        }
        self.issued += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_the_rate_in_virtual_time() {
        let start = Instant::now();
        let mut pacer = Pacer::new(100.0);
        for _ in 0..50 {
            pacer.acquire(1).await;
        }
        // Event 49 is due at 490 ms.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(489) && elapsed <= Duration::from_millis(491),
            "{elapsed:?}"
        );
        assert_eq!(pacer.issued(), 50);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_consume_their_size() {
        let start = Instant::now();
        let mut pacer = Pacer::new(100.0);
        for _ in 0..10 {
            pacer.acquire(10).await;
        }
        // The tenth batch (events 90..100) is due at 900 ms.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(899) && elapsed <= Duration::from_millis(901),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_does_not_become_a_flood() {
        let mut pacer = Pacer::new(100.0).with_max_lag(Duration::from_millis(100));
        pacer.acquire(1).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = Instant::now();
        for _ in 0..30 {
            pacer.acquire(1).await;
        }
        // At most 100 ms (10 events) of catch-up, then the rate again.
        let elapsed = before.elapsed();
        assert!(elapsed >= Duration::from_millis(180), "{elapsed:?}");
    }

    #[tokio::test]
    async fn zero_rate_is_unpaced() {
        let start = std::time::Instant::now();
        let mut pacer = Pacer::new(0.0);
        for _ in 0..10_000 {
            pacer.acquire(1).await;
        }
        assert!(pacer.next_due().is_none());
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
