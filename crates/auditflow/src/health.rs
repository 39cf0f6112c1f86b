//! Health of dependencies and roles, as reported by the components themselves
//! and by live probes, for `/readyz`, `/healthz` and the dashboard.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// How a component is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Working.
    Up,
    /// Working with reduced capacity or guarantees (e.g. paused, retrying).
    Degraded,
    /// Not working.
    Down,
}

/// The last reported state of one component.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentHealth {
    /// Current status.
    pub status: Status,
    /// Why, when not up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Since when the component has had this status.
    pub since: DateTime<Utc>,
    /// The last error seen, even after recovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Registry of component health, shared by every role in the process.
#[derive(Debug, Default)]
pub struct Health {
    components: RwLock<BTreeMap<String, ComponentHealth>>,
    draining: AtomicBool,
}

impl Health {
    /// Records `status` for `component`; `since` only moves when the status changes.
    pub fn set(&self, component: &str, status: Status, detail: Option<String>) {
        let Ok(mut map) = self.components.write() else {
            return;
        };
        let now = Utc::now();
        match map.get_mut(component) {
            Some(current) => {
                if current.status != status {
                    current.since = now;
                    if status != Status::Up {
                        tracing::warn!(
                            component,
                            ?status,
                            detail = detail.as_deref(),
                            "component health changed"
                        );
                    } else {
                        tracing::info!(component, "component recovered");
                    }
                }
                if detail.is_some() && status != Status::Up {
                    current.last_error.clone_from(&detail);
                }
                current.status = status;
                current.detail = detail;
            }
            None => {
                map.insert(
                    component.to_string(),
                    ComponentHealth {
                        status,
                        last_error: detail.clone().filter(|_| status != Status::Up),
                        detail,
                        since: now,
                    },
                );
            }
        }
    }

    /// Shorthand for `set(component, Up, None)`.
    pub fn up(&self, component: &str) {
        self.set(component, Status::Up, None);
    }

    /// A copy of every component's health.
    pub fn snapshot(&self) -> BTreeMap<String, ComponentHealth> {
        self.components
            .read()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// The worst status of all components (Up when none reported).
    pub fn overall(&self) -> Status {
        self.snapshot()
            .values()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Up)
    }

    /// Marks the process as draining: readiness fails, ingest refuses new work.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// True once shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_is_the_worst_and_last_error_survives_recovery() {
        let health = Health::default();
        health.up("broker");
        health.set("store", Status::Down, Some("disk I/O error".into()));
        assert_eq!(health.overall(), Status::Down);
        health.up("store");
        assert_eq!(health.overall(), Status::Up);
        let store = &health.snapshot()["store"];
        assert_eq!(store.last_error.as_deref(), Some("disk I/O error"));
        assert!(store.detail.is_none());
    }
}
