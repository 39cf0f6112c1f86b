//! The fault state: which faults are active, per direction.

use std::num::{NonZeroU64, NonZeroUsize};
use std::time::Duration;

/// One direction of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flow {
    /// Client to upstream (requests).
    Upstream,
    /// Upstream to client (answers).
    Downstream,
}

/// Which direction(s) a fault setting applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to upstream only.
    Upstream,
    /// Upstream to client only.
    Downstream,
    /// Both directions.
    Both,
}

impl Direction {
    /// The flows this selector covers.
    pub fn flows(self) -> &'static [Flow] {
        match self {
            Direction::Upstream => &[Flow::Upstream],
            Direction::Downstream => &[Flow::Downstream],
            Direction::Both => &[Flow::Upstream, Flow::Downstream],
        }
    }
}

/// Added delay: each chunk is held `base + uniform(0..=jitter)` after it was read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// The fixed part of the delay.
    pub base: Duration,
    /// The largest random extra delay (uniform); order is kept.
    pub jitter: Duration,
}

/// Splits each write into small pieces with a pause between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slicer {
    /// The largest piece written at once.
    pub chunk: NonZeroUsize,
    /// The pause after each piece.
    pub delay: Duration,
}

/// The faults of one direction. `Default` is "no fault".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionFaults {
    /// Delay added to every chunk.
    pub latency: Option<Latency>,
    /// Rate limit in bytes per second, per connection.
    pub bandwidth: Option<NonZeroU64>,
    /// Splitting of writes into small delayed pieces.
    pub slicer: Option<Slicer>,
    /// Close the connection once this many bytes have been forwarded in this
    /// direction (counted from the connection's start).
    pub data_limit: Option<u64>,
    /// Read and discard everything; forward nothing.
    pub blackhole: bool,
    /// Delay before a close (EOF) read on this direction's source is passed on.
    pub slow_close: Option<Duration>,
}

impl DirectionFaults {
    /// True when no fault is set.
    pub fn is_clear(&self) -> bool {
        *self == DirectionFaults::default()
    }
}

/// Every fault of a proxy, as read through [`crate::FaultHandle::faults`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    /// Faults of the client-to-upstream direction.
    pub upstream: DirectionFaults,
    /// Faults of the upstream-to-client direction.
    pub downstream: DirectionFaults,
    /// Down: new connections are refused (the listener is closed).
    pub down: bool,
    /// Probability in `0.0..=1.0` that a newly accepted connection is reset at once.
    pub reset_probability: f64,
}

impl Faults {
    /// The faults of one flow.
    pub fn flow(&self, flow: Flow) -> &DirectionFaults {
        match flow {
            Flow::Upstream => &self.upstream,
            Flow::Downstream => &self.downstream,
        }
    }

    /// The faults of one flow, mutably.
    pub fn flow_mut(&mut self, flow: Flow) -> &mut DirectionFaults {
        match flow {
            Flow::Upstream => &mut self.upstream,
            Flow::Downstream => &mut self.downstream,
        }
    }

    /// True when no fault at all is active.
    pub fn is_clear(&self) -> bool {
        self.upstream.is_clear()
            && self.downstream.is_clear()
            && !self.down
            && self.reset_probability == 0.0
    }
}
