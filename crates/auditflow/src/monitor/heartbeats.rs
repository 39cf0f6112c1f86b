//! Heartbeats: every process sends one per role it runs, every
//! `monitor.heartbeat_interval`; the monitor judges each role instance with
//! a phi-accrual detector (crates/resilience/src/phi.rs).
//!
//! In `auditflow up` the heartbeats go to the monitor in the same process;
//! in the distributed mode each process POSTs them to `monitor.url`
//! (`POST /v1/heartbeats`, served by the process that runs the monitor).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use resilience::{MemberStatus, PhiConfig, PhiRegistry, SharedClock};
use serde::{Deserialize, Serialize};

/// One heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// `ingest`, `analyze`, `notify`, `api`, `monitor`.
    pub role: String,
    /// Which process: its listen address.
    pub instance: String,
}

impl Heartbeat {
    fn member(&self) -> String {
        format!("{}@{}", self.role, self.instance)
    }
}

/// The roles a heartbeat may name (bounded: the monitor keeps one detector
/// per role instance).
pub const ROLES: [&str; 6] = ["ingest", "analyze", "notify", "api", "dashboard", "monitor"];

/// The phi-accrual detectors of every role instance heard from.
pub struct Heartbeats {
    registry: PhiRegistry<String>,
}

impl std::fmt::Debug for Heartbeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeats").finish_non_exhaustive()
    }
}

/// A role instance's judged state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberState {
    /// `role@instance`.
    pub member: String,
    /// The role.
    pub role: String,
    /// Current phi.
    pub phi: f64,
    /// Dead when phi reached the threshold.
    pub dead: bool,
}

impl Heartbeats {
    /// Detectors configured by `phi`, reading `clock`.
    pub fn new(phi: PhiConfig, clock: SharedClock) -> Heartbeats {
        Heartbeats {
            registry: PhiRegistry::new(phi, clock),
        }
    }

    /// Records a heartbeat. Refuses an unknown role or an oversized instance
    /// name (they would grow the registry without bound).
    pub fn beat(&self, heartbeat: &Heartbeat) -> Result<(), String> {
        if !ROLES.contains(&heartbeat.role.as_str()) {
            return Err(format!("unknown role '{}'", heartbeat.role));
        }
        if heartbeat.instance.is_empty() || heartbeat.instance.len() > 128 {
            return Err("instance must be 1 to 128 bytes".into());
        }
        self.registry.heartbeat(&heartbeat.member());
        Ok(())
    }

    /// Every instance heard from, judged now.
    pub fn judge(&self) -> Vec<MemberState> {
        // evaluate() moves each detector's status to what its phi says now.
        self.registry.evaluate();
        let mut states: Vec<MemberState> = self
            .registry
            .phis()
            .into_iter()
            .map(|(member, phi)| MemberState {
                role: member.split('@').next().unwrap_or_default().to_string(),
                dead: self.registry.status(&member) == Some(MemberStatus::Dead),
                member,
                phi,
            })
            .collect();
        states.sort_by(|a, b| a.member.cmp(&b.member));
        states
    }
}

/// `POST /v1/heartbeats` (a role's heartbeat) and `GET /v1/heartbeats`
/// (every instance heard from, with its phi and whether it is dead).
pub fn router(heartbeats: Arc<Heartbeats>) -> Router {
    Router::new()
        .route("/v1/heartbeats", post(receive).get(members))
        .with_state(heartbeats)
}

async fn members(State(heartbeats): State<Arc<Heartbeats>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "members": heartbeats.judge() }))
}

async fn receive(
    State(heartbeats): State<Arc<Heartbeats>>,
    Json(heartbeat): Json<Heartbeat>,
) -> (StatusCode, Json<serde_json::Value>) {
    match heartbeats.beat(&heartbeat) {
        Ok(()) => (StatusCode::NO_CONTENT, Json(serde_json::Value::Null)),
        Err(reason) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": reason })),
        ),
    }
}

/// Where a process sends its heartbeats.
#[derive(Clone)]
pub enum Sink {
    /// The monitor in this process.
    Local(Arc<Heartbeats>),
    /// A monitor elsewhere.
    Http {
        /// HTTP client with a short timeout.
        client: reqwest::Client,
        /// `<monitor.url>/v1/heartbeats`.
        url: String,
        /// Bearer token, when the API needs one.
        token: Option<String>,
    },
}

impl Sink {
    async fn send(&self, heartbeat: &Heartbeat) -> Result<(), String> {
        match self {
            Sink::Local(heartbeats) => heartbeats.beat(heartbeat),
            Sink::Http { client, url, token } => {
                let mut request = client.post(url).json(heartbeat);
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.map_err(|e| e.to_string())?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("{url} answered {}", response.status()))
                }
            }
        }
    }
}

/// Sends a heartbeat for each of `roles` every `interval` until `stop`.
/// A monitor that cannot be reached is logged, not fatal: the roles work
/// without it.
pub async fn send_loop(
    sink: Sink,
    roles: Vec<&'static str>,
    instance: String,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let beats: Vec<Heartbeat> = roles
        .into_iter()
        .map(|role| Heartbeat {
            role: role.into(),
            instance: instance.clone(),
        })
        .collect();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for beat in &beats {
            match sink.send(beat).await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    tracing::warn!(error = %e, role = beat.role, "cannot send heartbeat to the monitor");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resilience::ManualClock;

    #[test]
    fn a_silent_instance_is_judged_dead_and_comes_back() {
        let clock = ManualClock::new();
        let heartbeats = Heartbeats::new(PhiConfig::default(), clock.shared());
        let beat = Heartbeat {
            role: "analyze".into(),
            instance: "127.0.0.1:9101".into(),
        };
        for _ in 0..20 {
            heartbeats.beat(&beat).unwrap();
            clock.advance(Duration::from_secs(1));
        }
        assert!(!heartbeats.judge()[0].dead);
        clock.advance(Duration::from_secs(10));
        let judged = heartbeats.judge();
        assert!(judged[0].dead, "{judged:?}");
        assert_eq!(judged[0].role, "analyze");
        heartbeats.beat(&beat).unwrap();
        assert!(!heartbeats.judge()[0].dead);
        assert!(heartbeats
            .beat(&Heartbeat {
                role: "mallory".into(),
                instance: "x".into()
            })
            .is_err());
    }
}
