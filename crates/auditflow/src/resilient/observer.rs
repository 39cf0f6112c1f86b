//! Exports resilience events as Prometheus metrics (`auditflow_resilience_*`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
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

fn call_histogram() -> Histogram {
    // 50 µs .. ~52 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 21))
}

/// Metrics of every policy; dependency names come from configuration (bounded).
#[derive(Debug, Clone)]
pub struct PrometheusObserver {
    calls: Family<CallLabels, Counter>,
    call_duration: Family<DependencyLabel, Histogram, fn() -> Histogram>,
    rejections: Family<RejectionLabels, Counter>,
    retries: Family<DependencyLabel, Counter>,
    budget_exhausted: Family<DependencyLabel, Counter>,
    breaker_state: Family<DependencyLabel, Gauge>,
    breaker_transitions: Family<TransitionLabels, Counter>,
}

impl Default for PrometheusObserver {
    fn default() -> Self {
        PrometheusObserver {
            calls: Family::default(),
            call_duration: Family::new_with_constructor(call_histogram as fn() -> Histogram),
            rejections: Family::default(),
            retries: Family::default(),
            budget_exhausted: Family::default(),
            breaker_state: Family::default(),
            breaker_transitions: Family::default(),
        }
    }
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
            "call_duration_seconds",
            "Duration of logical calls to a dependency (retries included)",
            observer.call_duration.clone(),
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

    /// Publishes a policy's metrics at zero (and its breaker's initial
    /// state), so every series exists before the first event: dashboards and
    /// `rate()` see 0 rather than nothing.
    pub fn register_policy(&self, dependency: &str, state: BreakerState) {
        let label = DependencyLabel {
            dependency: dependency.to_string(),
        };
        let _ = self.retries.get_or_create(&label);
        let _ = self.budget_exhausted.get_or_create(&label);
        for reason in [
            RejectReason::RateLimited,
            RejectReason::BulkheadFull,
            RejectReason::CircuitOpen,
        ] {
            let _ = self.rejections.get_or_create(&RejectionLabels {
                dependency: dependency.to_string(),
                reason: reason.as_str(),
            });
        }
        let _ = self.breaker_transitions.get_or_create(&TransitionLabels {
            dependency: dependency.to_string(),
            from: BreakerState::Closed.as_str(),
            to: BreakerState::Open.as_str(),
        });
        self.initial_state(dependency, state);
    }

    /// Publishes a breaker's state.
    pub fn initial_state(&self, dependency: &str, state: BreakerState) {
        self.breaker_state
            .get_or_create(&DependencyLabel {
                dependency: dependency.to_string(),
            })
            .set(i64::from(state.as_gauge()));
    }
}

impl PolicyObserver for PrometheusObserver {
    fn on_call(&self, policy: &str, outcome: CallOutcome, elapsed: Duration) {
        self.call_duration
            .get_or_create(&DependencyLabel {
                dependency: policy.to_string(),
            })
            .observe(elapsed.as_secs_f64());
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
