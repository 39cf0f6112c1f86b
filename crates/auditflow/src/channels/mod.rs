//! Notification channels: where notify delivers alerts.
//!
//! Notify records every delivery per `(alert, channel)`, so a redelivered
//! alert is not sent again to a channel that already took it. The one gap
//! left, a crash after the channel took the alert and before the record was
//! written, each channel closes its own way: the file channel remembers what
//! it wrote, the webhook sends an `Idempotency-Key` the receiver can use, a
//! mail carries a Message-ID derived from the alert id.
//!
//! Webhook, Slack and email channels each have a resilience policy of their
//! own ([`policy`]), and notify delivers to each channel through its own
//! [`lane`], so one slow or failing channel never holds up another.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use auditflow_core::Alert;

use crate::config::ChannelConfig;

pub mod email;
pub mod file;
pub mod lane;
pub mod log;
pub mod policy;
pub mod routing;
pub mod webhook;

/// What a channel did with an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent now.
    Delivered,
    /// The channel already had it (e.g. written before a crash); not sent again.
    AlreadyDelivered,
}

/// A delivery that did not succeed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ChannelError {
    /// What went wrong, for the delivery record.
    pub message: String,
    /// Attempts made.
    pub attempts: u32,
    /// Whether trying again later may succeed (timeouts, 5xx, breaker open,
    /// bulkhead full): notify then records the delivery `retrying`. False
    /// when the channel refused the alert for good (webhook 4xx, SMTP 5xx).
    pub retryable: bool,
}

impl ChannelError {
    /// A failure worth retrying later.
    pub fn transient(message: impl Into<String>, attempts: u32) -> Self {
        ChannelError {
            message: message.into(),
            attempts,
            retryable: true,
        }
    }

    /// A refusal that retrying would only repeat.
    pub fn permanent(message: impl Into<String>, attempts: u32) -> Self {
        ChannelError {
            message: message.into(),
            attempts,
            retryable: false,
        }
    }
}

/// One destination for alerts.
#[async_trait]
pub trait Channel: Send + Sync {
    /// The configured name (delivery records use it).
    fn name(&self) -> &str;

    /// Delivers a batch, in order; one result per alert.
    async fn deliver(&self, alerts: &[&Alert]) -> Vec<Result<Outcome, ChannelError>>;
}

/// Builds the configured channels. `data_dir` hosts default file paths.
pub fn build(
    configs: &[ChannelConfig],
    data_dir: &Path,
    policies: &crate::resilient::Policies,
) -> anyhow::Result<Vec<Arc<dyn Channel>>> {
    configs
        .iter()
        .map(|config| -> anyhow::Result<Arc<dyn Channel>> {
            let name = config.name().to_string();
            // The channel's own policy: its kind's section, its overrides.
            let policy = || match config.policy() {
                Some((section, overrides)) => policies.for_channel(section, &name, overrides),
                None => Err(anyhow::anyhow!("channel '{name}' has no resilience policy")),
            };
            Ok(match config {
                ChannelConfig::Log { .. } => Arc::new(log::LogChannel::new(name.clone())),
                ChannelConfig::File { path, .. } => {
                    let path = path
                        .clone()
                        .unwrap_or_else(|| data_dir.join("alerts.ndjson"));
                    Arc::new(file::FileChannel::open(name.clone(), &path)?)
                }
                ChannelConfig::Slack { url, .. } => Arc::new(webhook::WebhookChannel::slack(
                    name.clone(),
                    url.clone(),
                    policy()?,
                )?),
                ChannelConfig::Webhook { url, .. } => Arc::new(webhook::WebhookChannel::new(
                    name.clone(),
                    url.clone(),
                    policy()?,
                )?),
                ChannelConfig::Email(email) => {
                    Arc::new(email::EmailChannel::new(email, policy()?)?)
                }
            })
        })
        .collect()
}
