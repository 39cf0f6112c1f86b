//! The log channel: one structured log line per alert.

use async_trait::async_trait;

use auditflow_core::Alert;

use super::{Channel, ChannelError, Outcome};

/// Writes alerts to the log (target `auditflow::alerts`, level WARN).
#[derive(Debug)]
pub struct LogChannel {
    name: String,
}

impl LogChannel {
    /// A log channel called `name`.
    pub fn new(name: String) -> Self {
        LogChannel { name }
    }
}

#[async_trait]
impl Channel for LogChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, alerts: &[&Alert]) -> Vec<Result<Outcome, ChannelError>> {
        alerts
            .iter()
            .map(|alert| {
                tracing::warn!(
                    target: "auditflow::alerts",
                    alert_id = %alert.alert_id,
                    correlation_id = %alert.correlation_id,
                    rule_id = %alert.analysis_rule.rule_id,
                    severity = %alert.severity,
                    actor_id = %alert.triggered_by.actor_id,
                    server_hostname = %alert.impacted_resource.server_hostname,
                    "{}: {}",
                    alert.alert_name,
                    alert.description
                );
                Ok(Outcome::Delivered)
            })
            .collect()
    }
}
