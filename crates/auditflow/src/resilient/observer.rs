//! Exports resilience events as Prometheus metrics (`auditflow_resilience_*`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use resilience::{BreakerState, CallOutcome, PolicyObserver, RejectReason, StateTransition};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    dependency: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabel {
    dependency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    dependency: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    dependency: String,
    from: &'static str,
    to: &'static str,
}

/// Metrics of every policy; dependency names come from configuration (bounded).
#[derive(Debug, Clone, Default)]
pub struct PrometheusObserver {
    calls: Family<CallLabels, Counter>,
    rejections: Family<RejectionLabels, Counter>,
    retries: Family<DependencyLabel, Counter>,
    budget_exhausted: Family<DependencyLabel, Counter>,
    breaker_state: Family<DependencyLabel, Gauge>,
    breaker_transitions: Family<TransitionLabels, Counter>,
}

impl PrometheusObserver {
    /// Registers the metrics under `registry` (prefix `auditflow_resilience`).
    pub fn register(registry: &mut Registry) -> PrometheusObserver {
        let observer = PrometheusObserver::default();
        let sub = registry.sub_registry_with_prefix("resilience");
        sub.register(
            "calls",
            "Logical calls to a dependency by final outcome",
            observer.calls.clone(),
        );
        sub.register(
            "rejections",
            "Calls refused before reaching the dependency",
            observer.rejections.clone(),
        );
        sub.register("retries", "Retry attempts", observer.retries.clone());
        sub.register(
            "budget_exhausted",
            "Retries refused because the retry budget was empty",
            observer.budget_exhausted.clone(),
        );
        sub.register(
            "breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled",
            observer.breaker_state.clone(),
        );
        sub.register(
            "breaker_transitions",
            "Circuit breaker state changes",
            observer.breaker_transitions.clone(),
        );
        observer
    }

    /// Publishes a breaker's initial state, so the gauge exists before any transition.
    pub fn initial_state(&self, dependency: &str, state: BreakerState) {
        self.breaker_state
            .get_or_create(&DependencyLabel {
                dependency: dependency.to_string(),
            })
            .set(i64::from(state.as_gauge()));
    }
}

impl PolicyObserver for PrometheusObserver {
    fn on_call(&self, policy: &str, outcome: CallOutcome, _elapsed: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                dependency: policy.to_string(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    fn on_rejected(&self, policy: &str, reason: RejectReason) {
        self.rejections
            .get_or_create(&RejectionLabels {
                dependency: policy.to_string(),
                reason: reason.as_str(),
            })
            .inc();
    }

    fn on_retry(&self, policy: &str, _attempt: u32, _delay: Duration) {
        self.retries
            .get_or_create(&DependencyLabel {
                dependency: policy.to_string(),
            })
            .inc();
    }

    fn on_budget_exhausted(&self, policy: &str) {
        self.budget_exhausted
            .get_or_create(&DependencyLabel {
                dependency: policy.to_string(),
            })
            .inc();
    }

    fn on_breaker_transition(&self, policy: &str, transition: &StateTransition) {
        tracing::warn!(
            dependency = policy,
            from = transition.from.as_str(),
            to = transition.to.as_str(),
            open_for = ?transition.open_for,
            "circuit breaker changed state"
        );
        self.initial_state(policy, transition.to);
        self.breaker_transitions
            .get_or_create(&TransitionLabels {
                dependency: policy.to_string(),
                from: transition.from.as_str(),
                to: transition.to.as_str(),
            })
            .inc();
    }
}
