//! [`PgError`] and its mapping onto the core error types.

use std::time::Duration;

use auditflow_core::store::StoreError;
use auditflow_core::window::WindowError;
use deadpool_postgres::PoolError;

use crate::sqlstate::{classify_client_error, ErrorClass};

/// Failures of the PostgreSQL backends.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The configuration is invalid (bad URL, schema name, pool size).
    #[error("invalid PostgreSQL configuration: {0}")]
    Config(String),
    /// The server or the client library reported an error.
    #[error("{context}: {}", describe(.source))]
    Db {
        /// What was being done.
        context: &'static str,
        /// The client error (with the server's SQLSTATE, when it sent one).
        #[source]
        source: tokio_postgres::Error,
    },
    /// No connection could be had from the pool (timeout, connect failure).
    #[error("{context}: {}", describe_pool(.source))]
    Pool {
        /// What was being done.
        context: &'static str,
        /// The pool's error.
        #[source]
        source: PoolError,
    },
    /// A call did not complete within its time bound.
    #[error("{0} timed out after {1:?}")]
    Timeout(&'static str, Duration),
    /// The schema was migrated by a newer build.
    #[error(
        "schema `{schema}` is at migration version {found}; this build knows up to {supported}"
    )]
    SchemaTooNew {
        /// The schema.
        schema: String,
        /// Newest version applied in the database.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// A value could not be encoded for, or decoded from, the database.
    #[error("{0}")]
    Data(String),
}

/// The error with its whole cause chain, and the SQLSTATE when the server
/// sent one (e.g. `db error: ERROR: ... [23514]`).
fn describe(err: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if let Some(state) = err.code() {
        text.push_str(&format!(" [{}]", state.code()));
    }
    text
}

fn describe_pool(err: &PoolError) -> String {
    match err {
        PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}

impl PgError {
    pub(crate) fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> PgError {
        move |source| PgError::Db { context, source }
    }

    /// How the failure is classified (see [`crate::sqlstate`]).
    pub fn class(&self) -> ErrorClass {
        match self {
            PgError::Db { source, .. } => classify_client_error(source),
            PgError::Pool { source, .. } => match source {
                PoolError::Backend(e) => classify_client_error(e),
                PoolError::NoRuntimeSpecified => ErrorClass::Permanent,
                PoolError::Timeout(_) | PoolError::Closed | PoolError::PostCreateHook(_) => {
                    ErrorClass::Transient
                }
            },
            PgError::Timeout(..) => ErrorClass::Transient,
            PgError::Config(_) | PgError::SchemaTooNew { .. } | PgError::Data(_) => {
                ErrorClass::Permanent
            }
        }
    }

    /// True for failures worth retrying.
    pub fn is_transient(&self) -> bool {
        self.class().is_transient()
    }

    /// The server's SQLSTATE, when the failure came from the server.
    pub fn sqlstate(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            PgError::Db { source, .. } => source.code(),
            PgError::Pool {
                source: PoolError::Backend(e),
                ..
            } => e.code(),
            _ => None,
        }
    }
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> StoreError {
        if e.is_transient() {
            StoreError::Unavailable(e.to_string())
        } else if e
            .sqlstate()
            .is_some_and(|s| crate::sqlstate::refuses_data(s.code()))
        {
            StoreError::Refused(e.to_string())
        } else {
            StoreError::Rejected(e.to_string())
        }
    }
}

impl From<PgError> for WindowError {
    fn from(e: PgError) -> WindowError {
        WindowError::Unavailable(e.to_string())
    }
}
