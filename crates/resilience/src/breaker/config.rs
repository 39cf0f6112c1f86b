//! Circuit-breaker configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Kind of sliding window over which failure and slow-call rates are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// The last `window_size` calls.
    #[default]
    Count,
    /// Calls in the last `window_duration`, in 10 buckets of
    /// `window_duration / 10` each (a bucket expires as a whole).
    Time,
}

/// Circuit-breaker configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// `false` builds a permanently [disabled](crate::BreakerState::Disabled)
    /// breaker that admits everything. Default `true`.
    pub enabled: bool,
    /// Window kind. Default `count`.
    pub window: WindowKind,
    /// Calls in a count window. Default `100`.
    pub window_size: u32,
    /// Span of a time window. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub window_duration: Duration,
    /// Calls required in the window before rates are evaluated. Default `20`.
    pub minimum_calls: u32,
    /// Open when `failures / calls >= failure_rate_threshold`. Default `0.5`.
    pub failure_rate_threshold: f64,
    /// Open when `slow / calls >= slow_call_rate_threshold`. Default `1.0`
    /// (only if every call is slow); use a value above `1.0` to disable.
    pub slow_call_rate_threshold: f64,
    /// A call taking at least this long is slow. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub slow_call_duration: Duration,
    /// How long the breaker stays open before admitting probes. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub open_duration: Duration,
    /// Each consecutive re-open (without closing in between) multiplies the
    /// open duration by this. `1.0` disables growth. Default `2.0`.
    pub open_duration_multiplier: f64,
    /// Cap on the grown open duration. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub max_open_duration: Duration,
    /// Probe calls admitted in half-open. Default `5`.
    pub half_open_probes: u32,
    /// Successful probes needed to close (capped at `half_open_probes`).
    /// Default `5`. Any failed or slow probe re-opens the breaker.
    pub half_open_successes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            window: WindowKind::Count,
            window_size: 100,
            window_duration: Duration::from_secs(60),
            minimum_calls: 20,
            failure_rate_threshold: 0.5,
            slow_call_rate_threshold: 1.0,
            slow_call_duration: Duration::from_secs(5),
            open_duration: Duration::from_secs(30),
            open_duration_multiplier: 2.0,
            max_open_duration: Duration::from_secs(300),
            half_open_probes: 5,
            half_open_successes: 5,
        }
    }
}
