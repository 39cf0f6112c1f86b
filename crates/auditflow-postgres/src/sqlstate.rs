//! Classification of PostgreSQL failures by SQLSTATE, never by message text.
//!
//! Transient (retry later, [`ErrorClass::Transient`]):
//! - class `08` (connection exception);
//! - `57P01` admin shutdown, `57P02` crash shutdown, `57P03` cannot connect now
//!   (the server is starting or stopping);
//! - `57014` query canceled (our `statement_timeout`, or a cancel request);
//! - `40001` serialization failure, `40P01` deadlock detected, `40003`
//!   statement completion unknown;
//! - `53300` too many connections, `53200` out of memory;
//! - `55P03` lock not available (`lock_timeout`);
//! - `25P03` idle-in-transaction session timeout.
//!
//! Everything else is [`ErrorClass::Permanent`]: integrity constraints
//! (`23*`), data exceptions (`22*`), syntax and access errors (`42*`), disk
//! full (`53100`, which the store contract lists as a refusal), ...
//!
//! Errors without a SQLSTATE (the client's own) are classified by
//! [`classify_client_error`]: a closed connection, an I/O error or a timeout
//! is transient; a value that cannot be converted is permanent.

use std::error::Error as _;

use tokio_postgres::error::SqlState;

/// Whether a failure is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The server was unreachable, shutting down, busy or lost a race:
    /// retrying the same request later can succeed.
    Transient,
    /// The request itself is refused; retrying it cannot help.
    Permanent,
}

impl ErrorClass {
    /// True for [`ErrorClass::Transient`].
    pub fn is_transient(self) -> bool {
        self == ErrorClass::Transient
    }
}

/// SQLSTATEs (outside class `08`) that are transient.
const TRANSIENT: [&str; 10] = [
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now
    "57014", // query_canceled (statement_timeout)
    "40001", // serialization_failure
    "40P01", // deadlock_detected
    "40003", // statement_completion_unknown
    "53300", // too_many_connections
    "53200", // out_of_memory
    "55P03", // lock_not_available
];

/// `25P03` idle_in_transaction_session_timeout.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";

/// Classifies a SQLSTATE.
pub fn classify(state: &SqlState) -> ErrorClass {
    classify_code(state.code())
}

/// Classifies a SQLSTATE given as its five-character code.
pub fn classify_code(code: &str) -> ErrorClass {
    if code.starts_with("08") || TRANSIENT.contains(&code) || code == IDLE_IN_TRANSACTION_TIMEOUT {
        ErrorClass::Transient
    } else {
        ErrorClass::Permanent
    }
}

/// Whether a permanent failure is about the data of the statement rather
/// than the server or the schema: class `22` (data exception: a value the
/// type cannot hold, U+0000 in text), `23` (integrity constraint violation)
/// and `54` (program limit exceeded: an index entry or a value too large).
/// A batch refused for these can still be written item by item, and only
/// the items refused again are the problem.
pub fn refuses_data(code: &str) -> bool {
    ["22", "23", "54"]
        .iter()
        .any(|class| code.starts_with(class))
}

/// Classifies an error of the PostgreSQL client: by its SQLSTATE when the
/// server sent one, otherwise transient for a closed connection, an I/O
/// failure (anywhere in the source chain) or a failure without a cause
/// (connect timeout, unexpected message), and permanent for the rest
/// (conversion of a value to or from SQL, bad configuration).
pub fn classify_client_error(err: &tokio_postgres::Error) -> ErrorClass {
    if let Some(state) = err.code() {
        return classify(state);
    }
    if err.is_closed() {
        return ErrorClass::Transient;
    }
    let mut source = err.source();
    if source.is_none() {
        return ErrorClass::Transient;
    }
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return ErrorClass::Transient;
        }
        source = s.source();
    }
    ErrorClass::Permanent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_exceptions_and_shutdowns_are_transient() {
        for state in [
            SqlState::CONNECTION_EXCEPTION,
            SqlState::CONNECTION_FAILURE,
            SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            SqlState::SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION,
            SqlState::CONNECTION_DOES_NOT_EXIST,
            SqlState::PROTOCOL_VIOLATION,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ] {
            assert_eq!(classify(&state), ErrorClass::Transient, "{}", state.code());
        }
    }

    #[test]
    fn contention_and_overload_are_transient() {
        for state in [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::T_R_STATEMENT_COMPLETION_UNKNOWN,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::OUT_OF_MEMORY,
            SqlState::QUERY_CANCELED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
        ] {
            assert_eq!(classify(&state), ErrorClass::Transient, "{}", state.code());
        }
    }

    #[test]
    fn constraint_data_and_other_errors_are_permanent() {
        for state in [
            SqlState::INTEGRITY_CONSTRAINT_VIOLATION,
            SqlState::UNIQUE_VIOLATION,
            SqlState::NOT_NULL_VIOLATION,
            SqlState::FOREIGN_KEY_VIOLATION,
            SqlState::CHECK_VIOLATION,
            SqlState::DATA_EXCEPTION,
            SqlState::INVALID_TEXT_REPRESENTATION,
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
            SqlState::STRING_DATA_RIGHT_TRUNCATION,
            SqlState::INVALID_DATETIME_FORMAT,
            SqlState::SYNTAX_ERROR,
            SqlState::UNDEFINED_TABLE,
            SqlState::INSUFFICIENT_PRIVILEGE,
            SqlState::DISK_FULL,
            SqlState::INVALID_PASSWORD,
            SqlState::DATABASE_DROPPED,
            SqlState::INTERNAL_ERROR,
            SqlState::T_R_INTEGRITY_CONSTRAINT_VIOLATION,
        ] {
            assert_eq!(classify(&state), ErrorClass::Permanent, "{}", state.code());
        }
    }

    #[test]
    fn raw_codes_classify_like_states() {
        assert!(classify_code("08006").is_transient());
        assert!(classify_code("08XYZ").is_transient(), "the whole class");
        assert!(classify_code("57P01").is_transient());
        assert!(!classify_code("57P04").is_transient());
        assert!(!classify_code("23505").is_transient());
        assert!(!classify_code("22P02").is_transient());
        for code in ["22021", "22P05", "23514", "23502", "54000"] {
            assert!(refuses_data(code), "{code}");
        }
        for code in ["42P01", "42501", "53100", "08006", "57014", "XX000"] {
            assert!(!refuses_data(code), "{code}");
        }
        assert_eq!(
            classify(&SqlState::from_code("40P01")),
            ErrorClass::Transient
        );
    }
}
