//! The roles one process can run.

pub mod analyze;
pub mod ingest;
pub mod notify;

/// A role that `auditflow run ROLE` can start on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// HTTP ingest (`POST /v1/events`) plus health and metrics.
    Ingest,
    /// Rules over the event stream.
    Analyze,
    /// Alert store and delivery channels.
    Notify,
    /// The read API (events, alerts, dead letters, legacy `/alerts`).
    Api,
    /// The web dashboard (`/dashboard`).
    Dashboard,
    /// Checks dependencies and roles (heartbeats) and raises system alerts.
    Monitor,
}
