//! A fixed ring of time buckets holding good/total counts.

use std::time::Duration;

/// Good and total event counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Events that met the objective.
    pub good: u64,
    /// All events.
    pub total: u64,
}

impl Counts {
    /// Events that did not meet the objective.
    pub fn bad(&self) -> u64 {
        self.total.saturating_sub(self.good)
    }

    /// `bad / total`, 0 when there were no events.
    pub fn error_ratio(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.bad() as f64 / self.total as f64
        }
    }
}

/// One bucket's counts, 12 bytes: every SLO of every process keeps
/// about 10,800 of them (6 h of 10 s buckets and 30 days of 5 min ones),
/// 130 KB per SLO instead of the 260 KB of 64-bit fields.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Which bucket (time / width) the counts belong to; a slot whose index
    /// is not the one a query expects is stale and counts as empty, so the
    /// ring never needs a sweep. 32 bits hold every index because buckets
    /// are wider than 2^32 ns (see [`BucketRing::new`]).
    index: u32,
    /// Saturating: 2^32 events in one bucket is 14 million a second for 5
    /// minutes.
    good: u32,
    total: u32,
}

impl Slot {
    const EMPTY: Slot = Slot {
        index: u32::MAX,
        good: 0,
        total: 0,
    };
}

/// A bucket index as a slot keeps it. Exact: buckets are wider than 2^32
/// ns, so u64::MAX ns / width < 2^32 (see [`BucketRing::new`]).
fn stored_index(index: u64) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// `n` as a bucket count, saturating.
fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Counts per bucket of `width`, covering at least `span` back from now,
/// in a fixed number of slots: memory does not grow with traffic or time.
#[derive(Debug, Clone)]
pub struct BucketRing {
    width_nanos: u64,
    slots: Vec<Slot>,
}

impl BucketRing {
    /// A ring of buckets of `width` reaching `span` into the past.
    ///
    /// # Panics
    /// When `width` is 2^32 ns (4.3 s) or less, so that a bucket's index
    /// fits in 32 bits (a programming error: widths are constants).
    pub fn new(width: Duration, span: Duration) -> BucketRing {
        let width_nanos = u64::try_from(width.as_nanos()).unwrap_or(u64::MAX);
        assert!(
            width_nanos > u64::MAX >> 32,
            "bucket width must be over 4.3 s (32-bit bucket indexes)"
        );
        let span_nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        // One more slot than the span needs, for the current partial bucket.
        let len = span_nanos.div_ceil(width_nanos).saturating_add(1);
        BucketRing {
            width_nanos,
            slots: vec![Slot::EMPTY; usize::try_from(len).unwrap_or(usize::MAX)],
        }
    }

    /// The bucket width.
    pub fn width(&self) -> Duration {
        Duration::from_nanos(self.width_nanos)
    }

    /// How far back the ring reaches.
    pub fn span(&self) -> Duration {
        Duration::from_nanos(self.width_nanos * (self.slots.len() as u64 - 1))
    }

    /// Adds counts at time `now_nanos`.
    pub fn record(&mut self, now_nanos: u64, good: u64, total: u64) {
        let index = now_nanos / self.width_nanos;
        let len = self.slots.len() as u64;
        let slot = &mut self.slots[(index % len) as usize];
        if slot.index != stored_index(index) {
            *slot = Slot {
                index: stored_index(index),
                ..Slot::EMPTY
            };
        }
        slot.good = slot.good.saturating_add(saturate(good));
        slot.total = slot.total.saturating_add(saturate(total));
    }

    /// The counts of the buckets covering the last `window` up to
    /// `now_nanos`, the current (partial) bucket included. The window is
    /// rounded up to whole buckets and capped at the ring's span.
    pub fn sum(&self, now_nanos: u64, window: Duration) -> Counts {
        let now_index = now_nanos / self.width_nanos;
        let window_nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let buckets = window_nanos
            .div_ceil(self.width_nanos)
            .clamp(1, self.slots.len() as u64);
        let len = self.slots.len() as u64;
        let mut sum = Counts::default();
        for index in now_index.saturating_sub(buckets - 1)..=now_index {
            let slot = &self.slots[(index % len) as usize];
            if slot.index == stored_index(index) {
                sum.good += u64::from(slot.good);
                sum.total += u64::from(slot.total);
            }
        }
        sum
    }

    /// Number of slots (fixed at construction).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn sums_only_buckets_inside_the_window() {
        let mut ring = BucketRing::new(Duration::from_secs(10), Duration::from_secs(60));
        assert_eq!(ring.slots(), 7);
        ring.record(5 * S, 9, 10); // bucket 0
        ring.record(25 * S, 1, 2); // bucket 2
        ring.record(29 * S, 1, 1); // bucket 2
        let at = 30 * S; // bucket 3
        assert_eq!(ring.sum(at, Duration::from_secs(10)), Counts::default());
        assert_eq!(
            ring.sum(at, Duration::from_secs(20)),
            Counts { good: 2, total: 3 }
        );
        assert_eq!(
            ring.sum(at, Duration::from_secs(40)),
            Counts {
                good: 11,
                total: 13
            }
        );
    }

    #[test]
    fn a_reused_slot_forgets_its_old_bucket() {
        let mut ring = BucketRing::new(Duration::from_secs(10), Duration::from_secs(30));
        ring.record(0, 5, 5);
        // 4 slots: bucket 4 reuses bucket 0's slot.
        ring.record(40 * S, 0, 1);
        assert_eq!(
            ring.sum(40 * S, Duration::from_secs(3600)),
            Counts { good: 0, total: 1 }
        );
        // Long after, nothing is left even where no write reused the slot.
        assert_eq!(
            ring.sum(1000 * S, Duration::from_secs(30)),
            Counts::default()
        );
    }

    #[test]
    fn a_slot_is_twelve_bytes_and_counts_saturate() {
        assert_eq!(std::mem::size_of::<Slot>(), 12);
        let mut ring = BucketRing::new(Duration::from_secs(10), Duration::from_secs(30));
        ring.record(S, u64::MAX, u64::MAX);
        ring.record(S, 1, 1);
        let max = u64::from(u32::MAX);
        assert_eq!(
            ring.sum(S, Duration::from_secs(10)),
            Counts {
                good: max,
                total: max
            }
        );
    }

    #[test]
    #[should_panic(expected = "32-bit bucket indexes")]
    fn buckets_too_narrow_for_32_bit_indexes_are_refused() {
        // 1 s buckets would reach index 2^32 within a u64 of nanoseconds,
        // where bucket 2^32 and bucket 0 would look alike.
        BucketRing::new(Duration::from_secs(1), Duration::from_secs(3));
    }

    proptest::proptest! {
        /// Whatever the records, the ring's sum equals a naive sum over the
        /// buckets of the window (memory stays fixed).
        #[test]
        fn matches_a_naive_sum(records in proptest::collection::vec((0u64..600, 0u64..5, 0u64..5), 0..200), window in 1u64..200) {
            let mut ring = BucketRing::new(Duration::from_secs(10), Duration::from_secs(120));
            let mut sorted = records.clone();
            sorted.sort_by_key(|r| r.0);
            for &(t, good, extra) in &sorted {
                ring.record(t * S, good, good + extra);
            }
            let now = sorted.last().map_or(0, |r| r.0);
            let buckets = window.div_ceil(10).min(13);
            let first = (now / 10).saturating_sub(buckets - 1);
            let mut expected = Counts::default();
            for &(t, good, extra) in &sorted {
                if t / 10 >= first && t / 10 <= now / 10 {
                    expected.good += good;
                    expected.total += good + extra;
                }
            }
            proptest::prop_assert_eq!(ring.sum(now * S, Duration::from_secs(window)), expected);
        }
    }
}
