//! Errors of constructing the state, and the mapping of Redis failures onto
//! [`WindowError`].

use auditflow_core::window::WindowError;

/// Errors constructing a [`crate::RedisWindowState`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The URL does not parse as a Redis URL.
    #[error("invalid Redis url: {0}")]
    Url(String),
    /// A setting is out of range.
    #[error("invalid Redis setting: {0}")]
    Invalid(String),
    /// Not called from within a Tokio runtime (the connection manager needs one).
    #[error("RedisWindowState must be created inside a Tokio runtime")]
    NoRuntime,
}

/// Every Redis failure is transient from the caller's point of view: the
/// analyze role pauses and retries, and never decides on empty state.
pub(crate) fn unavailable(context: impl std::fmt::Display, e: &redis::RedisError) -> WindowError {
    WindowError::Unavailable(format!("{context}: {e}"))
}

/// A reply the script should never give (a bug, or a foreign script under
/// the same name): reported as unavailable so nothing is decided on it.
pub(crate) fn protocol(context: impl std::fmt::Display) -> WindowError {
    WindowError::Unavailable(format!("unexpected reply from Redis: {context}"))
}
