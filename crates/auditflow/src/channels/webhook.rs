//! The webhook channel: POSTs each alert as JSON with an `Idempotency-Key`
//! header (the alert id), so a receiver can drop the rare duplicate that a
//! crash between its 2xx and our delivery record would cause.

use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;

use auditflow_core::Alert;

use super::{Channel, ChannelError, Outcome};

/// Delivers alerts to an HTTP endpoint.
pub struct WebhookChannel {
    name: String,
    url: String,
    client: reqwest::Client,
    max_attempts: u32,
}

impl WebhookChannel {
    /// A webhook channel posting to `url`, each attempt bounded by `timeout`.
    pub fn new(
        name: String,
        url: String,
        timeout: Duration,
        max_attempts: u32,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(WebhookChannel {
            name,
            url,
            client,
            max_attempts: max_attempts.max(1),
        })
    }

    async fn post(&self, alert: &Alert) -> Result<Outcome, ChannelError> {
        let mut last_error = String::new();
        let mut ceiling = Duration::from_millis(100);
        for attempt in 1..=self.max_attempts {
            let sent = self
                .client
                .post(&self.url)
                .header("Idempotency-Key", alert.alert_id.to_string())
                .header("Content-Type", "application/json")
                .body(alert.to_json_bytes())
                .send()
                .await;
            let retryable = match sent {
                Ok(resp) if resp.status().is_success() => return Ok(Outcome::Delivered),
                Ok(resp) => {
                    let status = resp.status();
                    last_error = format!("webhook answered {status}");
                    status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429
                }
                Err(e) => {
                    last_error = format!("webhook request failed: {e}");
                    true
                }
            };
            if !retryable {
                return Err(ChannelError {
                    message: last_error,
                    attempts: attempt,
                });
            }
            if attempt < self.max_attempts {
                let delay = rand::rng().random_range(Duration::ZERO..=ceiling);
                ceiling = (ceiling * 2).min(Duration::from_secs(5));
                tokio::time::sleep(delay).await;
            }
        }
        Err(ChannelError {
            message: last_error,
            attempts: self.max_attempts,
        })
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
