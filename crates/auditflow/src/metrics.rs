//! Prometheus metrics shared by every role, exported on `/metrics`.
//!
//! Label values are bounded: rule ids, severities, channel names, routes and
//! status codes come from configuration or code, never from event content.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok`, `invalid`, `retried`...
    pub result: &'static str,
}

/// Labels of triggered alerts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// Rule id (from the rules file: bounded).
    pub rule_id: String,
    /// Alert severity.
    pub severity: &'static str,
}

/// Labels of notifications.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    /// Channel name (from config: bounded).
    pub channel: String,
    /// `delivered`, `failed` (for good), `retrying` (failed transiently,
    /// retried later), `gave_up` (retried for `notify.retry_for`),
    /// `duplicate_skipped`, `not_routed`.
    pub result: &'static str,
}

/// A channel, alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    /// Channel name (from config: bounded).
    pub channel: String,
}

/// Labels of HTTP requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Request method (`GET`, `POST`, ..., `other`): tells `POST /v1/events`
    /// (ingest) from `GET /v1/events` (read API).
    pub method: &'static str,
    /// Matched route template, e.g. `/v1/alerts/{id}`.
    pub route: String,
    /// Status code.
    pub code: u16,
}

/// Labels of per-queue gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// Queue name (from config: bounded).
    pub queue: String,
}

/// `dependency` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabel {
    /// `broker`, `store`, `windows` (bounded).
    pub dependency: &'static str,
}

/// `operation` label of store calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    /// The `Store` method, e.g. `insert_events` (bounded).
    pub operation: &'static str,
}

/// `slo` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloLabel {
    /// SLO name (from config: bounded).
    pub slo: String,
}

/// Labels of an SLO's burn rate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloWindowLabels {
    /// SLO name.
    pub slo: String,
    /// Window, e.g. `5m`, `1h`, `3d` (from the alert definitions: bounded).
    pub window: String,
}

/// Labels of an SLO burn-rate alert.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloAlertLabels {
    /// SLO name.
    pub slo: String,
    /// Alert name, e.g. `page_1h`.
    pub alert: String,
    /// `page` or `ticket`.
    pub severity: &'static str,
}

/// Labels of system-alert notices.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SystemAlertLabels {
    /// `role_dead`, `dependency_down`, ...
    pub kind: &'static str,
    /// `firing` or `resolved`.
    pub state: &'static str,
    /// `accepted` (a channel took it) or `fallback` (every channel refused).
    pub result: &'static str,
}

/// Labels of the monitor's instance counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleStatusLabels {
    /// `ingest`, `analyze`, ...
    pub role: String,
    /// `alive` or `dead`.
    pub status: &'static str,
}

/// The monitor's metrics.
#[derive(Debug, Default)]
pub struct MonitorMetrics {
    /// System-alert notices sent, by kind, state and result.
    pub system_alerts: Family<SystemAlertLabels, Counter>,
    /// Role instances heard from, alive or dead.
    pub role_instances: Family<RoleStatusLabels, Gauge>,
}

/// A gauge holding a float (ratios, burn rates).
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// The `auditflow_slo_*` gauges, set by the SLO evaluator.
#[derive(Debug, Default)]
pub struct SloMetrics {
    /// Target good ratio.
    pub objective: Family<SloLabel, FloatGauge>,
    /// Good ratio over the period.
    pub sli: Family<SloLabel, FloatGauge>,
    /// Error budget left over the period (1 untouched, 0 spent, < 0 overspent).
    pub error_budget_remaining: Family<SloLabel, FloatGauge>,
    /// Burn rate per window.
    pub burn_rate: Family<SloWindowLabels, FloatGauge>,
    /// 1 while a burn-rate alert fires.
    pub alert_firing: Family<SloAlertLabels, Gauge>,
}

/// All metrics of the process.
#[derive(Debug)]
pub struct Metrics {
    /// Registry rendered by `/metrics`.
    pub registry: Registry,
    /// Events accepted by ingest (202).
    pub events_ingested: Counter,
    /// Items refused by ingest, by reason.
    pub events_rejected: Family<ResultLabel, Counter>,
    /// Events handled by analyze, by result.
    pub events_processed: Family<ResultLabel, Counter>,
    /// Alerts raised by analyze.
    pub alerts_triggered: Family<AlertLabels, Counter>,
    /// Notification outcomes.
    pub notifications: Family<ChannelLabels, Counter>,
    /// Outcomes of retried deliveries (one per retry), by channel.
    pub notification_retries: Family<ChannelLabels, Counter>,
    /// Deliveries recorded `retrying` in the store, by channel (as last
    /// read by this notify).
    pub notification_retry_backlog: Family<ChannelLabel, Gauge>,
    /// Time analyze spends on one batch (one observation per batch).
    pub event_processing_duration: Histogram,
    /// From ingest accepting an event to analyze acking it (per event).
    pub event_analysis_latency: Histogram,
    /// From ingest accepting an event to notify storing its alert.
    pub ingest_to_alert: Histogram,
    /// HTTP request durations.
    pub http_request_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    /// Messages ready in each queue.
    pub queue_depth: Family<QueueLabels, Gauge>,
    /// Messages in each queue's dead-letter queue.
    pub dead_letters: Family<QueueLabels, Gauge>,
    /// 1 when the last live check of a dependency succeeded.
    pub dependency_up: Family<DependencyLabel, Gauge>,
    /// 1 when a dependency answers but a role reports it degraded.
    pub dependency_degraded: Family<DependencyLabel, Gauge>,
    /// Durations of store calls (through their resilience policy), by operation.
    pub store_query_duration: Family<OperationLabel, Histogram, fn() -> Histogram>,
    /// Resilience events of every dependency policy.
    pub resilience: Arc<crate::resilient::PrometheusObserver>,
    /// SLO state.
    pub slo: SloMetrics,
    /// The monitor role.
    pub monitor: MonitorMetrics,
    /// Cumulative SLI counters the SLO evaluator reads.
    pub sli: crate::sli::Sli,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~52 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 21))
}

/// Finer buckets (25% apart, 100 µs .. ~65 s) for the end-to-end latency
/// that benchmarks and SLOs read quantiles from.
fn fine_latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 1.25, 60))
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("auditflow");
        let events_ingested = Counter::default();
        registry.register(
            "events_ingested",
            "Events accepted by ingest",
            events_ingested.clone(),
        );
        let events_rejected = Family::<ResultLabel, Counter>::default();
        registry.register(
            "events_rejected",
            "Items refused by ingest, by reason",
            events_rejected.clone(),
        );
        let events_processed = Family::<ResultLabel, Counter>::default();
        registry.register(
            "events_processed",
            "Events handled by analyze, by result",
            events_processed.clone(),
        );
        let alerts_triggered = Family::<AlertLabels, Counter>::default();
        registry.register(
            "alerts_triggered",
            "Alerts raised, by rule and severity",
            alerts_triggered.clone(),
        );
        let notifications = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "notifications",
            "Alert deliveries, by channel and result",
            notifications.clone(),
        );
        let notification_retries = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "notification_retries",
            "Retries of transiently failed deliveries, by channel and result",
            notification_retries.clone(),
        );
        let notification_retry_backlog = Family::<ChannelLabel, Gauge>::default();
        registry.register(
            "notification_retry_backlog",
            "Deliveries waiting to be retried, by channel",
            notification_retry_backlog.clone(),
        );
        let event_processing_duration = latency_histogram();
        registry.register(
            "event_processing_duration_seconds",
            "Time analyze spends per batch of events",
            event_processing_duration.clone(),
        );
        let event_analysis_latency =
            Histogram::new(crate::sli::ANALYSIS_LATENCY_BOUNDS.iter().copied());
        registry.register(
            "event_analysis_latency_seconds",
            "From ingest accepting an event to analyze acking it, per event",
            event_analysis_latency.clone(),
        );
        let ingest_to_alert = fine_latency_histogram();
        registry.register(
            "ingest_to_alert_seconds",
            "From ingest accepting the triggering event to notify storing the alert",
            ingest_to_alert.clone(),
        );
        let http_request_duration = Family::<HttpLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request durations by route and status code",
            http_request_duration.clone(),
        );
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Messages ready in a queue",
            queue_depth.clone(),
        );
        let dead_letters = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "dead_letters",
            "Messages in a queue's dead-letter queue",
            dead_letters.clone(),
        );
        let dependency_up = Family::<DependencyLabel, Gauge>::default();
        registry.register(
            "dependency_up",
            "1 when the last live check of the dependency succeeded",
            dependency_up.clone(),
        );
        let dependency_degraded = Family::<DependencyLabel, Gauge>::default();
        registry.register(
            "dependency_degraded",
            "1 when the dependency answers but a role reports it degraded",
            dependency_degraded.clone(),
        );
        let store_query_duration = Family::<OperationLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "store_query_duration_seconds",
            "Store call durations (retries included), by operation",
            store_query_duration.clone(),
        );
        let resilience = Arc::new(crate::resilient::PrometheusObserver::register(
            &mut registry,
        ));
        let slo = SloMetrics::default();
        {
            let sub = registry.sub_registry_with_prefix("slo");
            sub.register(
                "objective_ratio",
                "SLO target good ratio",
                slo.objective.clone(),
            );
            sub.register(
                "sli_ratio",
                "Good ratio over the SLO period",
                slo.sli.clone(),
            );
            sub.register(
                "error_budget_remaining_ratio",
                "Error budget left over the SLO period: 1 untouched, 0 spent, negative overspent",
                slo.error_budget_remaining.clone(),
            );
            sub.register(
                "burn_rate",
                "Error budget burn rate over a window (1 = exactly on budget)",
                slo.burn_rate.clone(),
            );
            sub.register(
                "alert_firing",
                "1 while a multi-window burn-rate alert fires",
                slo.alert_firing.clone(),
            );
        }
        let monitor = MonitorMetrics::default();
        registry.register(
            "system_alerts",
            "System-alert notices of the monitor, by kind, state and result",
            monitor.system_alerts.clone(),
        );
        registry.register(
            "monitor_role_instances",
            "Role instances the monitor hears heartbeats from, alive or dead",
            monitor.role_instances.clone(),
        );
        // Series that exist from the start read 0 rather than nothing
        // (dashboards, `rate()`, the SLO rules' denominators).
        for result in ["ok", "invalid"] {
            let _ = events_processed.get_or_create(&ResultLabel { result });
        }
        for result in ["malformed_body", "invalid", "queue_full", "unavailable"] {
            let _ = events_rejected.get_or_create(&ResultLabel { result });
        }
        Arc::new(Metrics {
            event_analysis_latency,
            dependency_up,
            dependency_degraded,
            store_query_duration,
            slo,
            monitor,
            sli: crate::sli::Sli::default(),
            resilience,
            registry,
            events_ingested,
            events_rejected,
            events_processed,
            alerts_triggered,
            notifications,
            notification_retries,
            notification_retry_backlog,
            event_processing_duration,
            ingest_to_alert,
            http_request_duration,
            queue_depth,
            dead_letters,
        })
    }

    /// Records one HTTP answer: its duration by method, route and code, and
    /// the availability SLI it counts towards.
    pub fn observe_http(&self, method: &str, route: String, code: u16, seconds: f64) {
        self.sli.observe_http(method, &route, code);
        self.http_request_duration
            .get_or_create(&HttpLabels {
                method: method_label(method),
                route,
                code,
            })
            .observe(seconds);
    }

    /// Renders the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// A bounded label for an HTTP method.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    KNOWN
        .iter()
        .find(|known| **known == method)
        .copied()
        .unwrap_or("other")
}
