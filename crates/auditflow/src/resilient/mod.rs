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
mod store;
mod windows;

pub use broker::ResilientBroker;
pub use observer::PrometheusObserver;
pub use policies::{default_policies, Policies};
pub use store::ResilientStore;
pub use windows::ResilientWindows;

use resilience::PolicyError;

/// Describes a policy refusal or timeout for an error message.
pub(crate) fn describe<E>(dependency: &str, error: &PolicyError<E>) -> Option<String> {
    Some(match error {
        PolicyError::Timeout { after } => format!("{dependency}: call timed out after {after:?}"),
        PolicyError::CircuitOpen { retry_after } => {
            format!("{dependency}: circuit breaker open (next probe in {retry_after:?})")
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
