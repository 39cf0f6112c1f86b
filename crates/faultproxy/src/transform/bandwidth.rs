//! Bandwidth limit: paces writes so that a connection's direction carries at
//! most `rate` bytes per second.

use std::num::NonZeroU64;
use std::time::Duration;

use tokio::time::Instant;

/// Pieces are at most this long in time at the limited rate, so that a change
/// of the limit applies within about this delay.
const PIECE_TIME_DIVISOR: u64 = 20; // 50 ms

/// Paces one direction of one connection.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    next_free: Option<Instant>,
}

impl Pacer {
    /// The largest piece to write at once under `rate`.
    pub(crate) fn piece(rate: Option<NonZeroU64>, max: usize) -> usize {
        match rate {
            Some(r) => {
                let p = (r.get() / PIECE_TIME_DIVISOR).max(1);
                usize::try_from(p).unwrap_or(max).min(max)
            }
            None => max,
        }
    }

    /// When the next piece may be written (`None`: now).
    pub(crate) fn ready_at(&mut self, rate: Option<NonZeroU64>) -> Option<Instant> {
        if rate.is_none() {
            self.next_free = None;
        }
        self.next_free
    }

    /// Records that `n` bytes were written at `now` under `rate`.
    pub(crate) fn sent(&mut self, rate: Option<NonZeroU64>, n: usize, now: Instant) {
        if let Some(r) = rate {
            let start = match self.next_free {
                Some(t) if t > now => t,
                _ => now,
            };
            let cost = Duration::from_secs_f64(n as f64 / r.get() as f64);
            self.next_free = Some(start + cost);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_at_the_rate() {
        let rate = NonZeroU64::new(1000);
        assert_eq!(Pacer::piece(rate, 16384), 50);
        assert_eq!(Pacer::piece(None, 16384), 16384);
        let mut p = Pacer::default();
        let t = Instant::now();
        assert_eq!(p.ready_at(rate), None);
        p.sent(rate, 500, t);
        assert_eq!(p.ready_at(rate), Some(t + Duration::from_millis(500)));
        p.sent(rate, 500, t);
        assert_eq!(p.ready_at(rate), Some(t + Duration::from_secs(1)));
        assert_eq!(p.ready_at(None), None);
    }
}
