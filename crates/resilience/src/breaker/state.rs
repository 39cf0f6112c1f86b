//! Breaker states, transitions and metrics snapshots.

use std::sync::Arc;
use std::time::Duration;

use super::window::WindowSnapshot;

/// State of a [`CircuitBreaker`](super::CircuitBreaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Admitting calls and recording outcomes.
    Closed,
    /// Rejecting calls until the open duration elapses.
    Open,
    /// Admitting a bounded number of probe calls.
    HalfOpen,
    /// Rejecting everything until [`reset`](super::CircuitBreaker::reset).
    ForcedOpen,
    /// Admitting everything, recording nothing, until reset.
    Disabled,
}

impl BreakerState {
    pub(crate) const CLOSED: u64 = 0;
    pub(crate) const OPEN: u64 = 1;
    pub(crate) const HALF_OPEN: u64 = 2;
    pub(crate) const FORCED_OPEN: u64 = 3;
    pub(crate) const DISABLED: u64 = 4;

    pub(crate) fn from_code(code: u64) -> BreakerState {
        match code {
            Self::OPEN => BreakerState::Open,
            Self::HALF_OPEN => BreakerState::HalfOpen,
            Self::FORCED_OPEN => BreakerState::ForcedOpen,
            Self::DISABLED => BreakerState::Disabled,
            _ => BreakerState::Closed,
        }
    }

    pub(crate) fn code(self) -> u64 {
        match self {
            BreakerState::Closed => Self::CLOSED,
            BreakerState::Open => Self::OPEN,
            BreakerState::HalfOpen => Self::HALF_OPEN,
            BreakerState::ForcedOpen => Self::FORCED_OPEN,
            BreakerState::Disabled => Self::DISABLED,
        }
    }

    /// Stable lower-case label, e.g. for a Prometheus `state` label.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::ForcedOpen => "forced_open",
            BreakerState::Disabled => "disabled",
        }
    }

    /// Numeric gauge value: closed 0, open 1, half-open 2, forced-open 3,
    /// disabled 4.
    pub fn as_gauge(self) -> u8 {
        self.code() as u8
    }

    /// Whether calls are currently being rejected (open or forced open).
    pub fn is_rejecting(self) -> bool {
        matches!(self, BreakerState::Open | BreakerState::ForcedOpen)
    }
}

/// A state change, delivered to listeners after it has happened.
#[derive(Debug, Clone, PartialEq)]
pub struct StateTransition {
    /// Name of the breaker (the policy / dependency name).
    pub name: Arc<str>,
    /// Previous state.
    pub from: BreakerState,
    /// New state.
    pub to: BreakerState,
    /// Clock time of the change, in nanoseconds.
    pub at_nanos: u64,
    /// For transitions to [`BreakerState::Open`]: how long it will stay open.
    pub open_for: Option<Duration>,
}

/// Point-in-time counters of a breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerMetrics {
    /// Current state.
    pub state: BreakerState,
    /// Successful calls recorded since creation.
    pub successes: u64,
    /// Failed calls recorded since creation.
    pub failures: u64,
    /// Slow calls recorded since creation.
    pub slow_calls: u64,
    /// Calls rejected since creation.
    pub rejected: u64,
    /// Times the breaker has opened (automatically) since creation.
    pub opened: u64,
    /// Current window contents.
    pub window: WindowSnapshot,
}
