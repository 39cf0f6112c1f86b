//! Where the dashboard's data comes from: the core [`Store`] and [`Broker`]
//! (already behind their resilience policies when the platform builds them)
//! and a [`HealthSource`] that the platform implements.

use std::sync::Arc;

use async_trait::async_trait;
use auditflow_core::{Broker, Store};
use chrono::{DateTime, Utc};

/// How a component is doing, as shown on the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Working.
    Up,
    /// Working with reduced capacity or guarantees.
    Degraded,
    /// Not working.
    Down,
}

impl Status {
    /// Lower-case name, also the CSS class of its badge.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Degraded => "degraded",
            Status::Down => "down",
        }
    }
}

/// Whether a component is something AuditFlow depends on or one of its roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    /// A backend: broker, store, window state.
    Dependency,
    /// A role of this process: ingest, analyze, notify, ...
    Role,
}

/// The health of one dependency or role.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentReport {
    /// Its name (`store`, `analyze`, ...).
    pub name: String,
    /// Dependency or role.
    pub kind: ComponentKind,
    /// Current status.
    pub status: Status,
    /// Why, when not up.
    pub detail: Option<String>,
    /// Since when it has had this status, when known.
    pub since: Option<DateTime<Utc>>,
    /// The last error seen, even after recovery.
    pub last_error: Option<String>,
    /// Circuit-breaker state of its resilience policy (`closed`, `open`,
    /// `half_open`, ...), for dependencies that have one.
    pub breaker: Option<String>,
}

/// Reports the health of every dependency and role of the process.
///
/// Implementations must bound their own probes (a hanging dependency is
/// reported as down, not waited for); the dashboard also cuts them off at
/// its panel timeout.
#[async_trait]
pub trait HealthSource: Send + Sync + 'static {
    /// One report per component, dependencies first.
    async fn report(&self) -> Vec<ComponentReport>;
}

/// The latest evaluation of the process's SLOs. In memory, so it cannot
/// hang; empty when no SLO is configured.
pub trait SloSource: Send + Sync + 'static {
    /// One report per SLO.
    fn reports(&self) -> Vec<auditflow_slo::SloReport>;
}

/// Everything the dashboard reads from.
#[derive(Clone)]
pub struct Sources {
    /// Events, alerts and deliveries.
    pub store: Arc<dyn Store>,
    /// Queues and dead letters.
    pub broker: Arc<dyn Broker>,
    /// The queues shown (and the only ones whose dead letters can be re-driven).
    pub queues: Vec<String>,
    /// Health of dependencies and roles.
    pub health: Arc<dyn HealthSource>,
    /// SLO status and error budgets.
    pub slo: Arc<dyn SloSource>,
}
