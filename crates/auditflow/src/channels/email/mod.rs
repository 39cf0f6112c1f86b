//! The email channel: each alert as one mail over SMTP (lettre, tokio,
//! native TLS).
//!
//! - Connection: plain (`tls = "none"`, for a relay on localhost),
//!   `STARTTLS` required (default), or implicit TLS; SMTP AUTH when a
//!   username is set. Certificates are checked against `host`.
//! - Each send goes through the channel's own resilience policy
//!   (`[resilience.email]` with the channel's `resilience` keys over it).
//!   A 5xx answer is permanent: not retried, the delivery is recorded failed
//!   with the server's reason. 4xx answers (greylisting, a full queue),
//!   connection errors and timeouts are transient and retried with backoff.
//! - The Message-ID is derived from the alert id ([`message::message_id`]),
//!   so a redelivered alert's mail is recognisable as the same mail.

pub mod config;
pub mod message;
pub mod template;

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context as _;
use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use resilience::{ErrorClass, Policy, PolicyError};

use auditflow_core::Alert;

pub use config::{EmailConfig, Secret, TlsMode};
use template::Template;

use super::{Channel, ChannelError, Outcome};

/// Delivers alerts as mail.
pub struct EmailChannel {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: Template,
    policy: Policy,
}

/// Permanent unless the server said "try later" or we never got an answer:
/// 5xx means this mail will not be accepted as it is, so retrying only adds
/// load (and, for a 5xx to a misconfigured recipient, more bounces).
fn classify(error: &lettre::transport::smtp::Error) -> ErrorClass {
    if error.is_permanent() {
        ErrorClass::Permanent
    } else {
        ErrorClass::Transient
    }
}

impl EmailChannel {
    /// A channel for `config` sending through `policy`.
    pub fn new(config: &EmailConfig, policy: Policy) -> anyhow::Result<Self> {
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("email channel '{}': {e}", config.name))?;
        let from: Mailbox = config.from.parse().context("from")?;
        let to = config
            .to
            .iter()
            .map(|to| to.parse::<Mailbox>().with_context(|| format!("to: {to}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let subject =
            Template::parse(&config.subject).map_err(|e| anyhow::anyhow!("subject: {e}"))?;
        let tls = match config.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls => {
                Tls::Required(TlsParameters::new(config.host.clone()).context("TLS parameters")?)
            }
            TlsMode::Tls => {
                Tls::Wrapper(TlsParameters::new(config.host.clone()).context("TLS parameters")?)
            }
        };
        // `builder_dangerous` only means "you choose the TLS mode": `tls`
        // above is what protects the connection.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port())
            .tls(tls);
        if let (Some(username), Some(password)) = (
            &config.username,
            config
                .password()
                .map_err(|e| anyhow::anyhow!("email channel '{}': {e}", config.name))?,
        ) {
            builder =
                builder.credentials(Credentials::new(username.clone(), password.expose().into()));
        }
        Ok(EmailChannel {
            name: config.name.clone(),
            transport: builder.build(),
            from,
            to,
            subject,
            policy,
        })
    }

    async fn send(&self, alert: &Alert) -> Result<Outcome, ChannelError> {
        // An alert that cannot be made into a message never will be.
        let message = message::build(alert, &self.from, &self.to, &self.subject)
            .map_err(|e| ChannelError::permanent(format!("email: {e}"), 0))?;
        let envelope: Envelope = message.envelope().clone();
        let raw = message.formatted();
        // The policy retries; count the SMTP transactions it made for the record.
        let attempts = AtomicU32::new(0);
        let attempt = || {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.transport.send_raw(&envelope, &raw)
        };
        match self.policy.call_classified(attempt, classify).await {
            Ok(_response) => Ok(Outcome::Delivered),
            Err(error) => {
                let attempts = attempts.load(Ordering::Relaxed);
                match &error {
                    // A 5xx reply is the server's final word on this mail.
                    PolicyError::Inner(e) if e.is_permanent() => {
                        Err(ChannelError::permanent(format!("smtp: {e}"), attempts))
                    }
                    PolicyError::Inner(e) | PolicyError::BudgetExhausted(e) => {
                        Err(ChannelError::transient(format!("smtp: {e}"), attempts))
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
impl Channel for EmailChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, alerts: &[&Alert]) -> Vec<Result<Outcome, ChannelError>> {
        let mut out = Vec::with_capacity(alerts.len());
        for alert in alerts {
            out.push(self.send(alert).await);
        }
        out
    }
}
