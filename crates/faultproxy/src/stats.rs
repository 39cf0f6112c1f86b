//! Counters of a proxy.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::fault::Flow;

/// A snapshot of a proxy's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted since the start.
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// Connections closed with a reset: by a fault (reset, down, probability,
    /// unreachable upstream) or passed on from a side that reset.
    pub connections_reset: u64,
    /// Connections whose upstream could not be reached.
    pub upstream_connect_failures: u64,
    /// Bytes forwarded client to upstream.
    pub bytes_upstream: u64,
    /// Bytes forwarded upstream to client.
    pub bytes_downstream: u64,
    /// Bytes read and discarded by a blackhole (both directions).
    pub bytes_blackholed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) reset: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) bytes_up: AtomicU64,
    pub(crate) bytes_down: AtomicU64,
    pub(crate) blackholed: AtomicU64,
}

impl Counters {
    pub(crate) fn add_bytes(&self, flow: Flow, n: usize) {
        let c = match flow {
            Flow::Upstream => &self.bytes_up,
            Flow::Downstream => &self.bytes_down,
        };
        c.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            connections_accepted: r(&self.accepted),
            connections_active: r(&self.active),
            connections_reset: r(&self.reset),
            upstream_connect_failures: r(&self.connect_failures),
            bytes_upstream: r(&self.bytes_up),
            bytes_downstream: r(&self.bytes_down),
            bytes_blackholed: r(&self.blackholed),
        }
    }
}

/// Counts a connection as active while it lives.
pub(crate) struct ActiveGuard<'a>(&'a Counters);

impl<'a> ActiveGuard<'a> {
    pub(crate) fn new(c: &'a Counters) -> Self {
        c.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(c)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}
