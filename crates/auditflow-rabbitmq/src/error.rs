//! Mapping of lapin errors onto [`BrokerError`], with context.

use auditflow_core::broker::BrokerError;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};

/// Errors constructing a [`crate::RabbitBroker`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The URL does not parse as an AMQP URI.
    #[error("invalid AMQP url: {0}")]
    Url(String),
    /// A setting is out of range.
    #[error("invalid RabbitMQ setting: {0}")]
    Invalid(String),
    /// Not called from within a Tokio runtime.
    #[error("RabbitBroker must be started inside a Tokio runtime")]
    NoRuntime,
}

/// The soft (channel-level) AMQP error carried by `e`, if any.
pub(crate) fn soft_error(e: &lapin::Error) -> Option<&AMQPSoftError> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => match p.kind() {
            AMQPErrorKind::Soft(s) => Some(s),
            AMQPErrorKind::Hard(_) => None,
        },
        _ => None,
    }
}

/// A transient failure: the connection or channel is gone or misbehaved.
pub(crate) fn unavailable(context: impl std::fmt::Display, e: &lapin::Error) -> BrokerError {
    BrokerError::Unavailable(format!("{context}: {e}"))
}

/// Classifies a failure of a request about `queue`: requests the broker
/// refuses on their merits (wrong arguments, no permission, bad name) are
/// `Rejected`, everything else is `Unavailable`.
pub(crate) fn classify(context: impl std::fmt::Display, e: &lapin::Error) -> BrokerError {
    match soft_error(e) {
        Some(AMQPSoftError::PRECONDITIONFAILED) => BrokerError::Rejected(format!(
            "{context}: {e} (does the queue exist with other arguments, e.g. \
             a classic queue while topology=quorum? use topology=compat or migrate it)"
        )),
        Some(AMQPSoftError::ACCESSREFUSED) | Some(AMQPSoftError::NOTFOUND) => {
            BrokerError::Rejected(format!("{context}: {e}"))
        }
        _ => unavailable(context, e),
    }
}

/// Rejects queue names RabbitMQ (or our `.dlq` suffix) cannot take.
pub(crate) fn validate_queue(queue: &str) -> Result<(), BrokerError> {
    if queue.is_empty() || queue.len() > 250 {
        return Err(BrokerError::Rejected(format!(
            "queue name must be 1 to 250 bytes (room for the '.dlq' suffix), got {} bytes",
            queue.len()
        )));
    }
    if queue.starts_with("amq.") {
        return Err(BrokerError::Rejected(format!(
            "queue name '{queue}' uses the reserved 'amq.' prefix"
        )));
    }
    Ok(())
}
