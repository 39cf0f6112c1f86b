//! Sliding windows of call outcomes.

use super::config::{BreakerConfig, WindowKind};
use crate::clock::duration_nanos;

/// Number of buckets in a time-based window.
pub(crate) const TIME_BUCKETS: u64 = 10;

const FAIL: u8 = 1;
const SLOW: u8 = 2;

/// Aggregated contents of a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowSnapshot {
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window (failed or not).
    pub slow: u64,
}

impl WindowSnapshot {
    /// `failures / calls` (0 when empty).
    pub fn failure_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.failures as f64 / self.calls as f64
        }
    }

    /// `slow / calls` (0 when empty).
    pub fn slow_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.slow as f64 / self.calls as f64
        }
    }
}

#[derive(Debug)]
pub(crate) struct CountWindow {
    ring: Box<[u8]>,
    pos: usize,
    len: usize,
    failures: u64,
    slow: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    calls: u64,
    failures: u64,
    slow: u64,
}

#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Box<[Bucket]>,
    bucket_nanos: u64,
}

#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn new(cfg: &BreakerConfig) -> Window {
        match cfg.window {
            WindowKind::Count => Window::Count(CountWindow {
                ring: vec![0u8; cfg.window_size.max(1) as usize].into_boxed_slice(),
                pos: 0,
                len: 0,
                failures: 0,
                slow: 0,
            }),
            WindowKind::Time => Window::Time(TimeWindow {
                buckets: vec![Bucket::default(); TIME_BUCKETS as usize].into_boxed_slice(),
                bucket_nanos: (duration_nanos(cfg.window_duration) / TIME_BUCKETS).max(1),
            }),
        }
    }

    pub(crate) fn record(&mut self, now: u64, failed: bool, slow: bool) {
        match self {
            Window::Count(w) => {
                let old = w.ring[w.pos];
                if w.len == w.ring.len() {
                    w.failures -= u64::from(old & FAIL);
                    w.slow -= u64::from((old & SLOW) >> 1);
                } else {
                    w.len += 1;
                }
                let new = (u8::from(failed) * FAIL) | (u8::from(slow) * SLOW);
                w.ring[w.pos] = new;
                w.failures += u64::from(failed);
                w.slow += u64::from(slow);
                w.pos = (w.pos + 1) % w.ring.len();
            }
            Window::Time(w) => {
                // Epochs start at 1 so that a zeroed bucket is never current.
                let epoch = now / w.bucket_nanos + 1;
                let b = &mut w.buckets[(epoch % TIME_BUCKETS) as usize];
                if b.epoch != epoch {
                    *b = Bucket {
                        epoch,
                        ..Bucket::default()
                    };
                }
                b.calls += 1;
                b.failures += u64::from(failed);
                b.slow += u64::from(slow);
            }
        }
    }

    pub(crate) fn snapshot(&self, now: u64) -> WindowSnapshot {
        match self {
            Window::Count(w) => WindowSnapshot {
                calls: w.len as u64,
                failures: w.failures,
                slow: w.slow,
            },
            Window::Time(w) => {
                let epoch = now / w.bucket_nanos + 1;
                let oldest = epoch.saturating_sub(TIME_BUCKETS - 1);
                let mut s = WindowSnapshot::default();
                for b in w
                    .buckets
                    .iter()
                    .filter(|b| b.epoch >= oldest && b.epoch <= epoch)
                {
                    s.calls += b.calls;
                    s.failures += b.failures;
                    s.slow += b.slow;
                }
                s
            }
        }
    }

    pub(crate) fn reset(&mut self) {
        match self {
            Window::Count(w) => {
                w.ring.iter_mut().for_each(|x| *x = 0);
                w.pos = 0;
                w.len = 0;
                w.failures = 0;
                w.slow = 0;
            }
            Window::Time(w) => w.buckets.iter_mut().for_each(|b| *b = Bucket::default()),
        }
    }
}
