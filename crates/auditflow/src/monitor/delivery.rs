//! Sending system-alert notices: as AuditFlow alerts (so every channel kind
//! of notify works unchanged) to the monitor's channels, and to an fsync'd
//! fallback file when every channel refused.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use auditflow_core::alert::{AlertMetadata, AnalysisRule, ImpactedResource, TriggeredBy};
use auditflow_core::event::Severity;
use auditflow_core::Alert;
use uuid::Uuid;

use super::book::{Notice, State};
use super::MonitorConfig;
use crate::channels::{self, Channel};
use crate::config::{ChannelConfig, Config};

/// Namespace of the correlation ids of system alerts: one id per kind and
/// key, shared by its firing and resolved notices.
const SYSTEM_ALERT_NAMESPACE: Uuid = Uuid::from_u128(0x6d0f_3a1e_8b2c_4e57_9a41_c3d8_e5f7_0b29);

/// The monitor's channels and fallback file.
pub struct Delivery {
    channels: Vec<Arc<dyn Channel>>,
    fallback: Mutex<std::fs::File>,
    fallback_path: PathBuf,
}

impl Delivery {
    /// Opens the channels of `[monitor]` and the fallback file.
    pub fn build(
        config: &Config,
        monitor: &MonitorConfig,
        policies: &crate::resilient::Policies,
    ) -> anyhow::Result<Delivery> {
        let configs: Vec<ChannelConfig> = monitor
            .channels
            .iter()
            .map(|c| match c {
                ChannelConfig::File { name, path: None } => ChannelConfig::File {
                    name: name.clone(),
                    path: Some(config.data_dir.join("system-alerts.ndjson")),
                },
                other => other.clone(),
            })
            .collect();
        let channels = channels::build(&configs, &config.data_dir, policies)
            .context("building the monitor's channels")?;
        let fallback_path = monitor
            .fallback_file
            .clone()
            .unwrap_or_else(|| config.data_dir.join("system-alerts-fallback.ndjson"));
        Ok(Delivery {
            channels,
            fallback: Mutex::new(open_append(&fallback_path)?),
            fallback_path,
        })
    }

    /// Sends `notice` to every channel; true when at least one accepted it.
    /// When none did, appends it to the fallback file (fsync'd) and returns
    /// false: the notice does not count as sent.
    pub async fn send(&self, config: &Config, notice: &Notice) -> bool {
        let alert = to_alert(config, notice);
        // All channels at once: a hanging one (waiting out its own timeouts)
        // must not hold the notice back from the others.
        let shared = &alert;
        let results = futures::future::join_all(
            self.channels
                .iter()
                .map(|channel| async move { (channel, channel.deliver(&[shared]).await.pop()) }),
        )
        .await;
        let mut accepted = false;
        for (channel, result) in results {
            match result {
                Some(Ok(_)) => accepted = true,
                Some(Err(e)) => tracing::warn!(
                    channel = channel.name(),
                    error = %e,
                    kind = notice.condition.kind.as_str(),
                    "a channel refused a system alert"
                ),
                None => {}
            }
        }
        if !accepted {
            match self.write_fallback(&alert) {
                Ok(()) => tracing::error!(
                    path = %self.fallback_path.display(),
                    kind = notice.condition.kind.as_str(),
                    key = notice.condition.key,
                    "every channel refused a system alert; written to the fallback file"
                ),
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    kind = notice.condition.kind.as_str(),
                    key = notice.condition.key,
                    detail = notice.condition.detail,
                    "every channel and the fallback file refused a system alert"
                ),
            }
        }
        accepted
    }

    fn write_fallback(&self, alert: &Alert) -> anyhow::Result<()> {
        let mut line = alert.to_json_bytes();
        line.push(b'\n');
        let file = self
            .fallback
            .lock()
            .map_err(|_| anyhow::anyhow!("fallback file lock poisoned"))?;
        let mut file: &std::fs::File = &file;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("appending to {}", self.fallback_path.display()))
    }
}

fn open_append(path: &Path) -> anyhow::Result<std::fs::File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// A notice in the shape of an AuditFlow alert: rule id `SYS-<KIND>`,
/// `alert_type` `SYSTEM`, tags `system`, the kind and the state.
pub fn to_alert(config: &Config, notice: &Notice) -> Alert {
    let condition = &notice.condition;
    let kind = condition.kind.as_str();
    let state = match notice.state {
        State::Firing => "firing",
        State::Resolved => "resolved",
    };
    let (severity, title) = match notice.state {
        State::Firing => (Severity::Critical, format!("{kind}: {}", condition.key)),
        State::Resolved => (
            Severity::Info,
            format!("resolved: {kind}: {}", condition.key),
        ),
    };
    let description = match notice.state {
        State::Firing => condition.detail.clone(),
        State::Resolved => format!("no longer holds: {}", condition.detail),
    };
    let hostname = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    Alert {
        alert_id: Uuid::now_v7(),
        timestamp: chrono::Utc::now(),
        alert_name: title,
        alert_type: "SYSTEM".into(),
        severity,
        description,
        source_service_name: "auditflow-monitor".into(),
        analysis_rule: AnalysisRule {
            rule_id: format!("SYS-{}", kind.to_uppercase().replace('_', "-")),
            rule_name: kind.into(),
            rule_description: "AuditFlow system alert raised by the monitor role".into(),
        },
        triggered_by: TriggeredBy {
            actor_type: "system".into(),
            actor_id: "auditflow-monitor".into(),
            client_ip: String::new(),
        },
        impacted_resource: ImpactedResource {
            resource_type: kind.into(),
            resource_id: condition.key.clone(),
            server_hostname: hostname,
        },
        action_observed: state.to_uppercase(),
        correlation_id: Uuid::new_v5(
            &SYSTEM_ALERT_NAMESPACE,
            format!("{kind}/{}", condition.key).as_bytes(),
        ),
        raw_event_data: serde_json::json!({
            "kind": kind,
            "key": condition.key,
            "state": state,
            "detail": condition.detail,
        }),
        metadata: AlertMetadata {
            tags: vec!["system".into(), kind.into(), state.into()],
            environment: config.environment.clone(),
            remediation_guidance: format!("See the runbook: {}", condition.kind.runbook()),
            playbook_url: condition.kind.runbook().into(),
        },
        extra: serde_json::Map::new(),
    }
}
