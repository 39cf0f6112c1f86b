//! The window state behind its policy.

use std::sync::Arc;

use async_trait::async_trait;
use resilience::{ErrorClass, Policy};

use auditflow_core::window::{Decision, Observation, WindowError, WindowState};

/// A [`WindowState`] whose every call goes through the `windows` policy.
pub struct ResilientWindows {
    inner: Arc<dyn WindowState>,
    policy: Policy,
}

impl ResilientWindows {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn WindowState>, policy: Policy) -> Self {
        ResilientWindows { inner, policy }
    }

    async fn run<T, F, Fut>(&self, op: F) -> Result<T, WindowError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, WindowError>>,
    {
        self.policy
            .call_classified(op, |_: &WindowError| ErrorClass::Transient)
            .await
            .map_err(|error| match super::describe("windows", &error) {
                Some(message) => WindowError::Unavailable(message),
                None => error
                    .into_inner()
                    .unwrap_or_else(|| WindowError::Unavailable("windows: call failed".into())),
            })
    }
}

#[async_trait]
impl WindowState for ResilientWindows {
    async fn observe(&self, observations: &[Observation]) -> Result<Vec<Decision>, WindowError> {
        self.run(|| self.inner.observe(observations)).await
    }

    async fn check(&self) -> Result<(), WindowError> {
        self.run(|| self.inner.check()).await
    }
}
