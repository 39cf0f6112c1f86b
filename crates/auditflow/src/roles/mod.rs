//! The roles one process can run.

pub mod analyze;
pub mod ingest;
pub mod notify;

/// Sends the acks a consumer's subscription still holds back (see
/// [`auditflow_core::broker::Subscription::flush`]) before the consumer
/// stops: their effects are durable, so a clean stop leaves nothing to
/// redeliver. Bounded by the shutdown grace; an ack lost here only means a
/// redelivery.
pub(crate) async fn flush_acks(
    ctx: &crate::context::Context,
    sub: &mut dyn auditflow_core::broker::Subscription,
) {
    match tokio::time::timeout(ctx.config.http.shutdown_grace, sub.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot send the last acks; they will be redelivered")
        }
        Err(_) => tracing::warn!("the last acks timed out; they will be redelivered"),
    }
}

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
