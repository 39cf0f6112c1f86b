//! Errors: [`EmbeddedError`] for opening a data directory, and the internal
//! [`DbError`] that each backend maps onto its trait's error type.

use std::path::PathBuf;

use auditflow_core::broker::BrokerError;
use auditflow_core::store::StoreError;
use auditflow_core::window::WindowError;
use rusqlite::ErrorCode;

/// Why [`crate::Embedded::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// A file or directory could not be created or opened.
    #[error("{context} '{}': {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process (or another `Embedded` in this process) holds the directory.
    #[error(
        "data directory '{}' is already in use by another AuditFlow process (lock file '{}')",
        dir.display(),
        lock_file.display()
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// The lock file.
        lock_file: PathBuf,
    },
    /// SQLite refused to open or migrate a database file.
    #[error("{context} '{}': {source}", path.display())]
    Sqlite {
        /// What was being done.
        context: &'static str,
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer AuditFlow with a schema this one does not know.
    #[error(
        "database '{}' has schema version {found}, newer than the {supported} this build supports",
        path.display()
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// An option is out of range.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// A database failure with context, classified later by each backend.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum DbError {
    /// SQLite returned an error.
    #[error("{context}: {message}")]
    Sqlite {
        context: &'static str,
        code: Option<ErrorCode>,
        message: String,
    },
    /// The writer thread or read pool is gone (shutting down or crashed).
    #[error("{0}")]
    Closed(&'static str),
    /// An injected failure (failpoints) or data that could not be decoded.
    #[error("{0}")]
    Other(String),
}

impl DbError {
    pub(crate) fn sqlite(context: &'static str, e: &rusqlite::Error) -> DbError {
        DbError::Sqlite {
            context,
            code: e.sqlite_error_code(),
            message: e.to_string(),
        }
    }

    /// True when retrying later can succeed (busy, I/O, writer restarting).
    fn is_transient(&self) -> bool {
        match self {
            DbError::Sqlite { code, .. } => !matches!(
                code,
                Some(
                    ErrorCode::DiskFull
                        | ErrorCode::ConstraintViolation
                        | ErrorCode::TooBig
                        | ErrorCode::TypeMismatch
                        | ErrorCode::ReadOnly
                )
            ),
            DbError::Closed(_) | DbError::Other(_) => true,
        }
    }
}

/// Extension to attach context to rusqlite results.
pub(crate) trait Context<T> {
    fn ctx(self, context: &'static str) -> Result<T, DbError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn ctx(self, context: &'static str) -> Result<T, DbError> {
        self.map_err(|e| DbError::sqlite(context, &e))
    }
}

impl From<DbError> for BrokerError {
    fn from(e: DbError) -> BrokerError {
        // Every disk problem (full, I/O, corrupt) is a reason to shed load and
        // retry, never to panic or drop a message.
        BrokerError::Unavailable(format!("embedded broker: {e}"))
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> StoreError {
        if e.is_transient() {
            StoreError::Unavailable(format!("embedded store: {e}"))
        } else {
            StoreError::Rejected(format!("embedded store: {e}"))
        }
    }
}

impl From<DbError> for WindowError {
    fn from(e: DbError) -> WindowError {
        WindowError::Unavailable(format!("embedded window state: {e}"))
    }
}
