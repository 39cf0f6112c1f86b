//! The monitor role (`auditflow run monitor`, part of `up`): checks every
//! dependency and role on an interval and raises **system alerts** through
//! its notification channels.
//!
//! - dependencies: the live check of broker, store and window state;
//! - roles: heartbeats judged by phi-accrual detectors ([`heartbeats`]);
//!   `role_dead` per instance, `all_analyzers_dead` when every analyze
//!   instance heard from is dead;
//! - queues: backlog growing over `backlog_window` and above
//!   `backlog_threshold`; dead letters rising within `dead_letter_window`;
//! - SLOs: a paging burn-rate alert of this process's SLO evaluation.
//!
//! Notices go to `[monitor] channels` (the notify role's channel kinds; by
//! default the log and `<data_dir>/system-alerts.ndjson`), rate limited per
//! kind and key ([`book`]); a notice every channel refused is appended,
//! fsync'd, to the fallback file and not counted as sent.

pub mod book;
pub mod delivery;
pub mod heartbeats;
pub mod queues;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ChannelConfig;
use crate::context::Context;
use book::{AlertBook, Condition, Kind};
use heartbeats::Heartbeats;

/// `[monitor]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Base URL of the process running the monitor, where the other
    /// processes send heartbeats (distributed mode). Unset: heartbeats stay
    /// in-process (`up`), or are not sent.
    pub url: Option<String>,
    /// How often each process sends a heartbeat per role.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How often the monitor checks everything.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// A firing system alert is repeated at most this often (per kind and key).
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Duration,
    /// Queue depth above which a growing backlog alerts.
    pub backlog_threshold: u64,
    /// A backlog must have grown over this long.
    #[serde(with = "humantime_serde")]
    pub backlog_window: Duration,
    /// Dead letters that rose within this window alert.
    #[serde(with = "humantime_serde")]
    pub dead_letter_window: Duration,
    /// Phi-accrual detector of heartbeats (threshold 8, acceptable pause 3 s...).
    pub phi: resilience::PhiConfig,
    /// Where system alerts go. A `file` channel without a path writes
    /// `<data_dir>/system-alerts.ndjson`.
    pub channels: Vec<ChannelConfig>,
    /// Where a notice goes when every channel refused it;
    /// `<data_dir>/system-alerts-fallback.ndjson` when unset.
    pub fallback_file: Option<PathBuf>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            url: None,
            heartbeat_interval: Duration::from_secs(1),
            check_interval: Duration::from_secs(1),
            repeat_interval: Duration::from_secs(300),
            backlog_threshold: 1000,
            backlog_window: Duration::from_secs(300),
            dead_letter_window: Duration::from_secs(600),
            phi: resilience::PhiConfig::default(),
            channels: vec![
                ChannelConfig::Log {
                    name: "system-log".into(),
                },
                ChannelConfig::File {
                    name: "system-file".into(),
                    path: None,
                },
            ],
            fallback_file: None,
        }
    }
}

/// Runs the monitor until shutdown.
pub async fn run(
    ctx: Context,
    heartbeats: Arc<Heartbeats>,
    policies: crate::resilient::Policies,
) -> anyhow::Result<()> {
    let config = ctx.config.monitor.clone();
    let deliver = delivery::Delivery::build(&ctx.config, &config, &policies)?;
    let clock: resilience::SharedClock = Arc::new(resilience::SystemClock);
    let mut book = AlertBook::new(Arc::clone(&clock), config.repeat_interval);
    let queues = [
        ctx.config.broker.events_queue.clone(),
        ctx.config.broker.alerts_queue.clone(),
    ];
    let mut watch = queues::QueueWatch::new(
        Arc::clone(&clock),
        config.backlog_threshold,
        config.backlog_window,
        config.dead_letter_window,
    );
    ctx.health.up("monitor");
    tracing::info!(interval = ?config.check_interval, "monitor started");
    let mut tick = tokio::time::interval(config.check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let mut holding = Vec::new();
        let checks = futures::future::join_all(
            crate::dependencies::DEPENDENCIES
                .iter()
                .map(|d| crate::dependencies::check(&ctx, d)),
        )
        .await;
        for (dependency, result) in crate::dependencies::DEPENDENCIES.iter().zip(checks) {
            if let Err(e) = result {
                holding.push(Condition {
                    kind: Kind::DependencyDown,
                    key: (*dependency).into(),
                    detail: format!("{dependency} does not answer its live check: {e}"),
                });
            }
        }
        let members = heartbeats.judge();
        export_instances(&ctx, &members);
        holding.extend(role_conditions(&members));
        for queue in &queues {
            match ctx.broker.stats(queue).await {
                Ok(stats) => holding.extend(watch.observe(queue, &stats)),
                Err(e) => tracing::debug!(queue, error = %e, "no queue stats"),
            }
        }
        for report in ctx.slo.latest() {
            if let Some(alert) = report
                .firing()
                .find(|a| a.severity == auditflow_slo::AlertSeverity::Page)
            {
                holding.push(Condition {
                    kind: Kind::SloBurn,
                    key: report.name.clone(),
                    detail: format!(
                        "SLO {} burns its error budget at {:.1}x over {} and {:.1}x over {} ({} remaining)",
                        report.name,
                        alert.long.burn_rate,
                        humantime::format_duration(alert.long.window),
                        alert.short.burn_rate,
                        humantime::format_duration(alert.short.window),
                        format_args!("{:.1} %", report.error_budget_remaining * 100.0),
                    ),
                });
            }
        }
        for notice in book.update(holding) {
            let accepted = deliver.send(&ctx.config, &notice).await;
            ctx.metrics
                .monitor
                .system_alerts
                .get_or_create(&crate::metrics::SystemAlertLabels {
                    kind: notice.condition.kind.as_str(),
                    state: match notice.state {
                        book::State::Firing => "firing",
                        book::State::Resolved => "resolved",
                    },
                    result: if accepted { "accepted" } else { "fallback" },
                })
                .inc();
            book.record(&notice, accepted);
        }
    }
    tracing::info!("monitor stopped");
    Ok(())
}

/// Sets `auditflow_monitor_role_instances` from the judged members.
fn export_instances(ctx: &Context, members: &[heartbeats::MemberState]) {
    for role in heartbeats::ROLES {
        for (status, dead) in [("alive", false), ("dead", true)] {
            let count = members
                .iter()
                .filter(|m| m.role == role && m.dead == dead)
                .count();
            ctx.metrics
                .monitor
                .role_instances
                .get_or_create(&crate::metrics::RoleStatusLabels {
                    role: role.to_string(),
                    status,
                })
                .set(count as i64);
        }
    }
}

/// `role_dead` for each dead instance; `all_analyzers_dead` when analyze
/// instances were heard from and all of them are dead.
pub fn role_conditions(members: &[heartbeats::MemberState]) -> Vec<Condition> {
    let mut holding: Vec<Condition> = members
        .iter()
        .filter(|m| m.dead)
        .map(|m| Condition {
            kind: Kind::RoleDead,
            key: m.member.clone(),
            detail: format!("{} sends no heartbeats (phi {:.1})", m.member, m.phi),
        })
        .collect();
    let analyzers: Vec<_> = members.iter().filter(|m| m.role == "analyze").collect();
    if !analyzers.is_empty() && analyzers.iter().all(|m| m.dead) {
        holding.push(Condition {
            kind: Kind::AllAnalyzersDead,
            key: "analyze".into(),
            detail: format!(
                "all {} analyze instances are dead: events are not analysed",
                analyzers.len()
            ),
        });
    }
    holding
}
