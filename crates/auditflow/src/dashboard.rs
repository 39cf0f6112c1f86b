//! The `dashboard` role: wires [`auditflow_dashboard`] to this process's
//! context (its policy-wrapped store and broker, the configured token) and
//! reports the health of every dependency and role to it.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;

use auditflow_dashboard::{ComponentKind, ComponentReport, HealthSource, Sources, Status};

use crate::context::Context;
use crate::health::{self, ComponentHealth};
use crate::platform::Plan;
use crate::resilient::Policies;

/// A live check gives up after this, well inside the dashboard's panel
/// timeout, so a hanging dependency shows as down instead of hiding the panel.
const CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// The dependencies every process has, in display order.
const DEPENDENCIES: [&str; 3] = ["broker", "store", "windows"];

/// The dashboard's routes for this process.
pub fn router(ctx: &Context, policies: &Policies, plan: Plan) -> Router {
    let sources = Sources {
        store: ctx.store.clone(),
        broker: ctx.broker.clone(),
        queues: vec![
            ctx.config.broker.events_queue.clone(),
            ctx.config.broker.alerts_queue.clone(),
        ],
        health: std::sync::Arc::new(PlatformHealth {
            ctx: ctx.clone(),
            policies: policies.clone(),
            plan,
        }),
        slo: std::sync::Arc::new(BoardSlos(std::sync::Arc::clone(&ctx.slo))),
    };
    let auth = auditflow_dashboard::Auth::new(ctx.config.http.auth_token.clone());
    auditflow_dashboard::router(auditflow_dashboard::Dashboard::new(sources, auth))
}

/// The SLO reports of this process's last evaluation.
struct BoardSlos(std::sync::Arc<crate::slo::SloBoard>);

impl auditflow_dashboard::SloSource for BoardSlos {
    fn reports(&self) -> Vec<auditflow_slo::SloReport> {
        self.0.latest()
    }
}

/// Health of this process: live checks of its backends (through their
/// policies), what its roles reported, and the breakers' states.
struct PlatformHealth {
    ctx: Context,
    policies: Policies,
    plan: Plan,
}

fn status(status: health::Status) -> Status {
    match status {
        health::Status::Up => Status::Up,
        health::Status::Degraded => Status::Degraded,
        health::Status::Down => Status::Down,
    }
}

async fn check<E: std::fmt::Display>(
    call: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

impl PlatformHealth {
    /// The roles this process runs, in display order.
    fn roles(&self) -> Vec<&'static str> {
        let plan = &self.plan;
        [
            ("ingest", plan.ingest),
            ("analyze", plan.analyze),
            ("notify", plan.notify),
            ("api", plan.read_api),
            ("dashboard", plan.dashboard),
            ("generate", plan.demo),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
    }

    fn role(&self, name: &str, reported: Option<&ComponentHealth>) -> ComponentReport {
        let draining = self.ctx.health.is_draining();
        let (status, detail) = match (reported, draining) {
            (_, true) => (
                Status::Degraded,
                Some("draining: shutting down".to_string()),
            ),
            (Some(r), false) => (status(r.status), r.detail.clone()),
            // Served by this very HTTP server, so up while it answers.
            (None, false) if matches!(name, "ingest" | "api" | "dashboard" | "generate") => {
                (Status::Up, None)
            }
            (None, false) => (Status::Degraded, Some("starting: not reported yet".into())),
        };
        ComponentReport {
            name: name.to_string(),
            kind: ComponentKind::Role,
            status,
            detail,
            since: reported.map(|r| r.since),
            last_error: reported.and_then(|r| r.last_error.clone()),
            breaker: None,
        }
    }
}

#[async_trait]
impl HealthSource for PlatformHealth {
    async fn report(&self) -> Vec<ComponentReport> {
        let ctx = &self.ctx;
        let (broker, store, windows) = tokio::join!(
            check(ctx.broker.check()),
            check(ctx.store.check()),
            check(ctx.windows.check()),
        );
        let mut reported = ctx.health.snapshot();
        let breakers = self.policies.breaker_states();
        let mut out = Vec::new();
        for (name, live) in DEPENDENCIES.into_iter().zip([broker, store, windows]) {
            out.push(dependency(
                name,
                live,
                reported.remove(name),
                breakers.get(name).copied(),
            ));
        }
        for role in self.roles() {
            let report = self.role(role, reported.remove(role).as_ref());
            out.push(report);
        }
        // Whatever else reported itself (delivery channels, ...).
        for (name, health) in reported {
            out.push(other(name, health, &breakers));
        }
        out
    }
}

/// A backend: the worse of its live check and what the roles saw.
fn dependency(
    name: &str,
    live: Result<(), String>,
    reported: Option<ComponentHealth>,
    breaker: Option<&'static str>,
) -> ComponentReport {
    let live_status = if live.is_ok() {
        Status::Up
    } else {
        Status::Down
    };
    let reported_status = reported.as_ref().map(|r| status(r.status));
    let worst = reported_status.map_or(live_status, |r| r.max(live_status));
    let detail = live
        .as_ref()
        .err()
        .cloned()
        .or_else(|| reported.as_ref().and_then(|r| r.detail.clone()));
    let last_error = reported
        .as_ref()
        .and_then(|r| r.last_error.clone())
        .or_else(|| live.err());
    ComponentReport {
        name: name.to_string(),
        kind: ComponentKind::Dependency,
        status: worst,
        detail,
        since: reported
            .as_ref()
            .filter(|_| reported_status == Some(worst))
            .map(|r| r.since),
        last_error,
        breaker: breaker.map(str::to_string),
    }
}

fn other(
    name: String,
    health: ComponentHealth,
    breakers: &BTreeMap<String, &'static str>,
) -> ComponentReport {
    ComponentReport {
        breaker: breakers.get(&name).map(|b| b.to_string()),
        name,
        kind: ComponentKind::Dependency,
        status: status(health.status),
        detail: health.detail,
        since: Some(health.since),
        last_error: health.last_error,
    }
}
