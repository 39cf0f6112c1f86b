//! Every call AuditFlow makes to a dependency goes through that dependency's
//! resilience policy (timeout, retries under a budget, circuit breaker,
//! bulkhead), built in one place from `[resilience.<dependency>]`.
//!
//! The policies wrap the backends as decorators implementing the same
//! interfaces ([`ResilientStore`], [`ResilientBroker`], [`ResilientWindows`]),
//! so roles cannot bypass them and backends stay unaware of them.
//!
//! Policy errors are folded back into the interface's own error type as
//! transient failures whose message names the dependency and the cause
//! ("store: call timed out after 2s"), so the roles' pause-and-retry logic
//! treats an open breaker like any other outage.

mod broker;
mod observer;
pub mod policies;
mod recovery;
mod store;
mod windows;

pub use broker::ResilientBroker;
pub use observer::PrometheusObserver;
pub use policies::{default_policies, Policies};
pub use store::ResilientStore;
pub use windows::ResilientWindows;

use std::time::Duration;

use resilience::PolicyError;

/// Describes a policy refusal or timeout for an error message.
pub(crate) fn describe<E>(dependency: &str, error: &PolicyError<E>) -> Option<String> {
    Some(match error {
        PolicyError::Timeout { after } => format!("{dependency}: call timed out after {after:?}"),
        // Shown to people (dashboard, logs): whole milliseconds, no `Some(..)`.
        PolicyError::CircuitOpen {
            retry_after: Some(after),
        } => format!(
            "{dependency}: circuit breaker open (next probe in {:?})",
            Duration::from_millis(after.as_millis() as u64)
        ),
        PolicyError::CircuitOpen { retry_after: None } => {
            format!("{dependency}: circuit breaker open")
        }
        PolicyError::BulkheadFull => {
            format!("{dependency}: too many calls in flight (bulkhead full)")
        }
        PolicyError::RateLimited { retry_after } => {
            format!("{dependency}: rate limited (retry in {retry_after:?})")
        }
        PolicyError::BudgetExhausted(_) | PolicyError::Inner(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_breaker_reads_well() {
        let open = PolicyError::<()>::CircuitOpen {
            retry_after: Some(Duration::from_micros(609_228)),
        };
        assert_eq!(
            describe("store", &open).as_deref(),
            Some("store: circuit breaker open (next probe in 609ms)")
        );
        let unknown = PolicyError::<()>::CircuitOpen { retry_after: None };
        assert_eq!(
            describe("store", &unknown).as_deref(),
            Some("store: circuit breaker open")
        );
    }
}
