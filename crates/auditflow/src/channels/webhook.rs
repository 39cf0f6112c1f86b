//! The webhook channel: POSTs each alert as JSON with an `Idempotency-Key`
//! header (the alert id), so a receiver can drop the rare duplicate that a
//! crash between its 2xx and our delivery record would cause.
//!
//! Each POST goes through the channel's resilience policy (named after the
//! channel, configured by `[resilience.webhook]` and the channel's own
//! `resilience` keys): per-attempt timeout,
//! retries with jitter under a budget, and a breaker so a dead endpoint is
//! not hammered and does not hold up notify.

use async_trait::async_trait;
use resilience::{ErrorClass, Policy, PolicyError};

use auditflow_core::Alert;

use super::{Channel, ChannelError, Outcome};

/// Delivers alerts to an HTTP endpoint.
pub struct WebhookChannel {
    name: String,
    url: String,
    client: reqwest::Client,
    policy: Policy,
    format: Format,
}

/// What the POST body looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// The alert's own JSON.
    Alert,
    /// A Slack-compatible incoming-webhook message (`{"text": ...}`).
    Slack,
}

/// The Slack-compatible message for an alert: one `text` in Slack's
/// markdown, which Slack, Mattermost and Rocket.Chat all render.
pub fn slack_message(alert: &Alert) -> serde_json::Value {
    let icon = match alert.severity {
        auditflow_core::Severity::Critical | auditflow_core::Severity::Error => ":rotating_light:",
        auditflow_core::Severity::Warning => ":warning:",
        auditflow_core::Severity::Info => ":information_source:",
    };
    serde_json::json!({
        "text": format!(
            "{icon} *[{severity}] {name}*\n{description}\nrule `{rule}` · host `{host}` · actor `{actor}` · alert `{id}`",
            severity = alert.severity,
            name = alert.alert_name,
            description = alert.description,
            rule = alert.analysis_rule.rule_id,
            host = alert.impacted_resource.server_hostname,
            actor = alert.triggered_by.actor_id,
            id = alert.alert_id,
        )
    })
}

/// One failed POST.
#[derive(Debug, thiserror::Error)]
enum PostError {
    /// Worth retrying: network errors, 5xx, 408, 429.
    #[error("{0}")]
    Transient(String),
    /// The endpoint refused the alert for good (other 4xx).
    #[error("{0}")]
    Permanent(String),
}

impl WebhookChannel {
    /// A webhook channel posting to `url` through `policy`.
    pub fn new(name: String, url: String, policy: Policy) -> anyhow::Result<Self> {
        // Timeouts come from the policy; the client only bounds connecting.
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(WebhookChannel {
            name,
            url,
            client,
            policy,
            format: Format::Alert,
        })
    }

    /// A channel posting Slack-compatible messages to an incoming webhook.
    pub fn slack(name: String, url: String, policy: Policy) -> anyhow::Result<Self> {
        let mut channel = WebhookChannel::new(name, url, policy)?;
        channel.format = Format::Slack;
        Ok(channel)
    }

    async fn post_once(&self, alert: &Alert) -> Result<(), PostError> {
        let response = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", alert.alert_id.to_string())
            .header("Content-Type", "application/json")
            .body(match self.format {
                Format::Alert => alert.to_json_bytes(),
                Format::Slack => slack_message(alert).to_string().into_bytes(),
            })
            .send()
            .await
            .map_err(|e| PostError::Transient(format!("webhook request failed: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message = format!("webhook answered {status}");
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(PostError::Transient(message))
        } else {
            Err(PostError::Permanent(message))
        }
    }

    async fn post(&self, alert: &Alert) -> Result<Outcome, ChannelError> {
        let classify = |e: &PostError| match e {
            PostError::Transient(_) => ErrorClass::Transient,
            PostError::Permanent(_) => ErrorClass::Permanent,
        };
        // The policy retries; count the POSTs it actually made for the record.
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let post = || {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.post_once(alert)
        };
        match self.policy.call_classified(post, classify).await {
            Ok(()) => Ok(Outcome::Delivered),
            Err(error) => {
                let attempts = attempts.load(std::sync::atomic::Ordering::Relaxed);
                match &error {
                    // Only the endpoint's own refusal is final; a breaker,
                    // bulkhead, timeout or exhausted budget says nothing
                    // about the alert.
                    PolicyError::Inner(PostError::Permanent(e)) => {
                        Err(ChannelError::permanent(e.clone(), attempts))
                    }
                    PolicyError::Inner(e) | PolicyError::BudgetExhausted(e) => {
                        Err(ChannelError::transient(e.to_string(), attempts))
                    }
                    other => Err(ChannelError::transient(
                        crate::resilient::describe(&self.name, other).unwrap_or_default(),
                        attempts,
                    )),
                }
            }
        }
    }
}

#[async_trait]
impl Channel for WebhookChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, alerts: &[&Alert]) -> Vec<Result<Outcome, ChannelError>> {
        let mut out = Vec::with_capacity(alerts.len());
        for alert in alerts {
            out.push(self.post(alert).await);
        }
        out
    }
}
