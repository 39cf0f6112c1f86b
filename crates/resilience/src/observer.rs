//! Metrics hooks.
//!
//! [`PolicyObserver`] receives every interesting event with the policy (or
//! member) name, so exporting to any backend is a thin mapping, e.g. for
//! Prometheus:
//!
//! | hook | metric |
//! |------|--------|
//! | [`on_call`](PolicyObserver::on_call) | `auditflow_resilience_calls_total{dependency,outcome}`, `auditflow_resilience_call_duration_seconds{dependency}` |
//! | [`on_rejected`](PolicyObserver::on_rejected) | `auditflow_resilience_rejections_total{dependency,reason}` |
//! | [`on_retry`](PolicyObserver::on_retry) | `auditflow_resilience_retries_total{dependency}` |
//! | [`on_budget_exhausted`](PolicyObserver::on_budget_exhausted) | `auditflow_resilience_retry_budget_exhausted_total{dependency}` |
//! | [`on_breaker_transition`](PolicyObserver::on_breaker_transition) | `auditflow_resilience_breaker_state{dependency}` (gauge, [`BreakerState::as_gauge`](crate::BreakerState::as_gauge)), `auditflow_resilience_breaker_transitions_total{dependency,to}` |
//! | [`on_phi`](PolicyObserver::on_phi) | `auditflow_resilience_phi{member}` |
//! | [`on_member_status`](PolicyObserver::on_member_status) | `auditflow_resilience_member_status_changes_total{member,to}` |
//!
//! All methods have empty default bodies; [`NoopObserver`] is the default.
//! Hooks are called inline on the request path: keep them cheap and
//! non-blocking (atomic counters), and do not allocate per event if the
//! zero-allocation property of the call path matters to you.

use std::time::Duration;

use crate::breaker::StateTransition;
use crate::phi::StatusChange;

/// Why a call was refused before reaching the dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Refused by the rate limiter.
    RateLimited,
    /// No bulkhead slot.
    BulkheadFull,
    /// The circuit breaker is open.
    CircuitOpen,
}

impl RejectReason {
    /// Stable label: `rate_limited`, `bulkhead_full`, `circuit_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::RateLimited => "rate_limited",
            RejectReason::BulkheadFull => "bulkhead_full",
            RejectReason::CircuitOpen => "circuit_open",
        }
    }
}

/// Final outcome of one logical call (all attempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// Returned `Ok`.
    Success,
    /// Returned the dependency's error (after any retries).
    Failure,
    /// The last attempt timed out.
    Timeout,
    /// Refused before (or between) attempts.
    Rejected(RejectReason),
}

impl CallOutcome {
    /// Stable label: `success`, `failure`, `timeout`, `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Success => "success",
            CallOutcome::Failure => "failure",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Rejected(_) => "rejected",
        }
    }
}

/// Receives resilience events. Every method defaults to doing nothing.
pub trait PolicyObserver: Send + Sync + 'static {
    /// A logical call finished with `outcome` after `elapsed` (all attempts).
    fn on_call(&self, policy: &str, outcome: CallOutcome, elapsed: Duration) {
        let _ = (policy, outcome, elapsed);
    }

    /// A call was refused (also reported to `on_call` as `Rejected`).
    fn on_rejected(&self, policy: &str, reason: RejectReason) {
        let _ = (policy, reason);
    }

    /// Attempt number `attempt` (≥ 2) will start after `delay`.
    fn on_retry(&self, policy: &str, attempt: u32, delay: Duration) {
        let _ = (policy, attempt, delay);
    }

    /// A retry was wanted but the retry budget had no token.
    fn on_budget_exhausted(&self, policy: &str) {
        let _ = policy;
    }

    /// The policy's circuit breaker changed state.
    fn on_breaker_transition(&self, policy: &str, transition: &StateTransition) {
        let _ = (policy, transition);
    }

    /// Current phi of a monitored member (see
    /// [`PhiRegistry::report`](crate::PhiRegistry::report)).
    fn on_phi(&self, member: &str, phi: f64) {
        let _ = (member, phi);
    }

    /// A monitored member changed status.
    fn on_member_status(&self, member: &str, change: &StatusChange) {
        let _ = (member, change);
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl PolicyObserver for NoopObserver {}
