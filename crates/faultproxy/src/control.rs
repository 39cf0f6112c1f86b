//! The run-time control of a proxy: shared state and the cloneable handle.

use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::Error;
use crate::fault::{Direction, DirectionFaults, Faults, Latency, Slicer};
use crate::rng::Rng;
use crate::stats::{Counters, Stats};

/// What every task of a proxy watches.
#[derive(Clone, Debug, Default)]
pub(crate) struct Control {
    pub(crate) faults: Faults,
    /// Bumped to reset every connection open at that moment.
    pub(crate) reset_epoch: u64,
}

/// State shared by the handle, the listener and the connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) control: watch::Sender<Control>,
    pub(crate) counters: Counters,
    pub(crate) rng: Rng,
    pub(crate) listen: SocketAddr,
    pub(crate) upstream: SocketAddr,
    pub(crate) connect_timeout: Duration,
    /// True while the listener is bound (false while down, until bound again).
    pub(crate) listening: AtomicBool,
}

/// A cheap, cloneable handle that changes a running proxy's faults.
///
/// Every setter takes effect at once, on existing connections too (from the
/// next chunk read or written), without a restart.
#[derive(Clone, Debug)]
pub struct FaultHandle {
    pub(crate) shared: Arc<Shared>,
}

impl FaultHandle {
    /// The address the proxy listens on.
    pub fn listen_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    /// The address connections are forwarded to.
    pub fn upstream_addr(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// True while the listener is bound: false once [`FaultHandle::down`] has
    /// taken effect, true again once [`FaultHandle::up`] has bound it again.
    pub fn is_listening(&self) -> bool {
        self.shared.listening.load(Ordering::Acquire)
    }

    /// The faults active now.
    pub fn faults(&self) -> Faults {
        self.shared.control.borrow().faults
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Changes the faults of the flows `dir` selects with `f`.
    pub fn update(&self, dir: Direction, f: impl Fn(&mut DirectionFaults)) {
        self.shared.control.send_modify(|c| {
            for flow in dir.flows() {
                f(c.faults.flow_mut(*flow));
            }
        });
    }

    /// Adds `base + uniform(0..=jitter)` to every chunk of `dir`.
    pub fn set_latency(&self, dir: Direction, base: Duration, jitter: Duration) {
        self.update(dir, |d| d.latency = Some(Latency { base, jitter }));
    }

    /// Removes the latency of `dir`.
    pub fn clear_latency(&self, dir: Direction) {
        self.update(dir, |d| d.latency = None);
    }

    /// Limits each connection's `dir` to `bytes_per_sec`.
    pub fn set_bandwidth(&self, dir: Direction, bytes_per_sec: NonZeroU64) {
        self.update(dir, |d| d.bandwidth = Some(bytes_per_sec));
    }

    /// Removes the bandwidth limit of `dir`.
    pub fn clear_bandwidth(&self, dir: Direction) {
        self.update(dir, |d| d.bandwidth = None);
    }

    /// Splits writes of `dir` into pieces of at most `chunk` bytes with `delay` after each.
    pub fn set_slicer(&self, dir: Direction, chunk: NonZeroUsize, delay: Duration) {
        self.update(dir, |d| d.slicer = Some(Slicer { chunk, delay }));
    }

    /// Removes the slicer of `dir`.
    pub fn clear_slicer(&self, dir: Direction) {
        self.update(dir, |d| d.slicer = None);
    }

    /// Closes a connection once `bytes` have been forwarded in `dir` (counted
    /// from the connection's start; a connection already past it closes at its
    /// next chunk).
    pub fn set_data_limit(&self, dir: Direction, bytes: u64) {
        self.update(dir, |d| d.data_limit = Some(bytes));
    }

    /// Removes the data limit of `dir`.
    pub fn clear_data_limit(&self, dir: Direction) {
        self.update(dir, |d| d.data_limit = None);
    }

    /// Blackhole on or off: data of `dir` is read and discarded, the connection stays open.
    pub fn set_blackhole(&self, dir: Direction, on: bool) {
        self.update(dir, |d| d.blackhole = on);
    }

    /// Waits `delay` before passing on a close read on `dir`'s source side.
    pub fn set_slow_close(&self, dir: Direction, delay: Duration) {
        self.update(dir, |d| d.slow_close = Some(delay));
    }

    /// Removes the slow close of `dir`.
    pub fn clear_slow_close(&self, dir: Direction) {
        self.update(dir, |d| d.slow_close = None);
    }

    /// Resets (RST, `SO_LINGER` 0) both sides of every connection open now.
    pub fn reset_connections(&self) {
        self.shared.control.send_modify(|c| c.reset_epoch += 1);
    }

    /// Each new connection is reset at once with probability `p` (`0.0` turns it off).
    pub fn set_reset_probability(&self, p: f64) -> Result<(), Error> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::InvalidFault(format!(
                "reset probability {p} is not within 0.0..=1.0"
            )));
        }
        self.shared
            .control
            .send_modify(|c| c.faults.reset_probability = p);
        Ok(())
    }

    /// Down: closes the listener (new connections are refused) and resets
    /// every open connection.
    pub fn down(&self) {
        self.shared.control.send_modify(|c| {
            c.faults.down = true;
            c.reset_epoch += 1;
        });
    }

    /// Up again: the listener is bound again on the same address.
    pub fn up(&self) {
        self.shared.control.send_modify(|c| c.faults.down = false);
    }

    /// Removes every fault (and brings the proxy up).
    pub fn clear_all(&self) {
        self.shared
            .control
            .send_modify(|c| c.faults = Faults::default());
    }
}
