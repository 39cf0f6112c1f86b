//! Errors of the read API and how each becomes an HTTP response.
//!
//! Every failure maps to a JSON body and a 4xx or 503 status: a store or
//! broker failure is never a 500, so load balancers and clients can tell "try
//! again later" (503 + `Retry-After`) from "your request is wrong" (4xx).

use auditflow_core::broker::BrokerError;
use auditflow_core::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Seconds a client should wait after a transient dependency failure.
pub const RETRY_AFTER_TRANSIENT_SECS: u32 = 5;
/// Seconds a client should wait after a permanent dependency failure (an
/// operator has to act, so retrying quickly is pointless).
pub const RETRY_AFTER_PERMANENT_SECS: u32 = 60;

/// Which dependency failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// The event/alert store.
    Store,
    /// The message broker.
    Broker,
}

impl Dependency {
    fn unavailable(self) -> &'static str {
        match self {
            Dependency::Store => "store unavailable",
            Dependency::Broker => "broker unavailable",
        }
    }
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400 `{"error": message}`; the message names the offending parameter.
    BadRequest(String),
    /// 404 `{"error": message}`.
    NotFound(&'static str),
    /// 404 `{"message": "Alert not found"}`, the legacy notification API's body.
    LegacyAlertNotFound,
    /// 503 `{"error": "<dependency> unavailable", "transient": bool}` with `Retry-After`.
    Unavailable {
        /// The failing dependency.
        dependency: Dependency,
        /// Whether retrying soon may succeed.
        transient: bool,
    },
}

impl ApiError {
    /// A 400 naming `param`: `parameter `param`: reason`.
    pub fn param(param: &str, reason: impl std::fmt::Display) -> ApiError {
        ApiError::BadRequest(format!("parameter `{param}`: {reason}"))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) | ApiError::LegacyAlertNotFound => StatusCode::NOT_FOUND,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        // The detail may name files or hosts: log it, do not return it.
        tracing::warn!(error = %err, transient = err.is_transient(), "read API: store call failed");
        ApiError::Unavailable {
            dependency: Dependency::Store,
            transient: err.is_transient(),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(err: BrokerError) -> ApiError {
        tracing::warn!(error = %err, transient = err.is_transient(), "read API: broker call failed");
        ApiError::Unavailable {
            dependency: Dependency::Broker,
            transient: err.is_transient(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            ApiError::BadRequest(message) => {
                (status, Json(json!({ "error": message }))).into_response()
            }
            ApiError::NotFound(message) => {
                (status, Json(json!({ "error": message }))).into_response()
            }
            ApiError::LegacyAlertNotFound => {
                (status, Json(json!({ "message": "Alert not found" }))).into_response()
            }
            ApiError::Unavailable {
                dependency,
                transient,
            } => {
                let retry_after = if transient {
                    RETRY_AFTER_TRANSIENT_SECS
                } else {
                    RETRY_AFTER_PERMANENT_SECS
                };
                let mut response = (
                    status,
                    Json(json!({ "error": dependency.unavailable(), "transient": transient })),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                response
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_become_503_with_retry_after() {
        let transient: ApiError = StoreError::Unavailable("db locked".into()).into();
        let response = transient.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");

        let permanent: ApiError = StoreError::Rejected("disk full".into()).into();
        assert_eq!(
            permanent,
            ApiError::Unavailable {
                dependency: Dependency::Store,
                transient: false
            }
        );
        assert_eq!(
            permanent.into_response().headers()[header::RETRY_AFTER],
            "60"
        );
    }

    #[test]
    fn broker_errors_are_classified() {
        let full: ApiError = BrokerError::Full {
            queue: "q".into(),
            depth: 1,
        }
        .into();
        assert!(matches!(
            full,
            ApiError::Unavailable {
                dependency: Dependency::Broker,
                transient: true
            }
        ));
        let closed: ApiError = BrokerError::Closed.into();
        assert!(matches!(
            closed,
            ApiError::Unavailable {
                transient: false,
                ..
            }
        ));
    }
}
