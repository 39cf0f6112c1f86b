//! Prometheus metrics shared by every role, exported on `/metrics`.
//!
//! Label values are bounded: rule ids, severities, channel names, routes and
//! status codes come from configuration or code, never from event content.

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
    /// `delivered`, `failed`, `duplicate_skipped`.
    pub result: &'static str,
}

/// Labels of HTTP requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
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
    /// Time to analyze one batch, per event.
    pub event_processing_duration: Histogram,
    /// From ingest accepting an event to notify storing its alert.
    pub ingest_to_alert: Histogram,
    /// HTTP request durations.
    pub http_request_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    /// Messages ready in each queue.
    pub queue_depth: Family<QueueLabels, Gauge>,
    /// Messages in each queue's dead-letter queue.
    pub dead_letters: Family<QueueLabels, Gauge>,
    /// Resilience events of every dependency policy.
    pub resilience: Arc<crate::resilient::PrometheusObserver>,
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
        let event_processing_duration = latency_histogram();
        registry.register(
            "event_processing_duration_seconds",
            "Time analyze spends per batch of events",
            event_processing_duration.clone(),
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
        let resilience = Arc::new(crate::resilient::PrometheusObserver::register(
            &mut registry,
        ));
        Arc::new(Metrics {
            resilience,
            registry,
            events_ingested,
            events_rejected,
            events_processed,
            alerts_triggered,
            notifications,
            event_processing_duration,
            ingest_to_alert,
            http_request_duration,
            queue_depth,
            dead_letters,
        })
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
