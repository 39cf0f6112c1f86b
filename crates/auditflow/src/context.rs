//! What every role gets: configuration, backends behind their interfaces,
//! metrics, health and the shutdown signal.

use std::sync::Arc;

use auditflow_core::{Broker, Store, WindowState};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;

/// Shared by all roles of one process. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    /// Effective configuration.
    pub config: Arc<Config>,
    /// Queues.
    pub broker: Arc<dyn Broker>,
    /// Events, alerts, deliveries.
    pub store: Arc<dyn Store>,
    /// Threshold-rule windows.
    pub windows: Arc<dyn WindowState>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Component health.
    pub health: Arc<Health>,
    /// Cancelled when the process starts shutting down.
    pub shutdown: CancellationToken,
    /// Per-client ingest rate limiter, when `[http.rate_limit]` is enabled.
    pub ingest_limiter: Option<Arc<resilience::KeyedRateLimiter<String>>>,
    /// Permits for request-body bytes being ingested (`http.max_bytes_in_flight`).
    pub ingest_in_flight: Arc<tokio::sync::Semaphore>,
    /// The SLOs this process evaluates.
    pub slo: Arc<crate::slo::SloBoard>,
}
