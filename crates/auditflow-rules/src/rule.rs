//! A compiled rule and the alert it raises.

use std::time::Duration;

use auditflow_core::alert::{AlertMetadata, AnalysisRule, ImpactedResource, TriggeredBy};
use auditflow_core::window::{Observation, WindowSpec};
use auditflow_core::{alert_id_for, Alert, Event, Severity};
use serde_json::{Map, Value};

use crate::condition::Condition;
use crate::field::FieldRef;
use crate::template::{Template, Vars, MISSING};
use crate::AlertContext;

/// Separator of group field values in a threshold group key.
pub const GROUP_KEY_SEPARATOR: char = '\u{1f}';

/// The two kinds of rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// Fires on every single event that satisfies all conditions.
    Match,
    /// Fires when `count` matching events of one group fall within a window of event time.
    Threshold,
}

impl RuleKind {
    /// The `kind` value in the rules file.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Match => "match",
            RuleKind::Threshold => "threshold",
        }
    }
}

impl std::fmt::Display for RuleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `threshold` table of a threshold rule.
#[derive(Debug, Clone)]
pub struct Threshold {
    pub(crate) spec: WindowSpec,
    pub(crate) group_by: Vec<String>,
    pub(crate) group_fields: Vec<FieldRef>,
}

impl Threshold {
    /// Matching events needed within the window.
    pub fn count(&self) -> u32 {
        self.spec.threshold
    }

    /// Width of the window, in event time.
    pub fn window(&self) -> Duration {
        self.spec.window
    }

    /// Quiet period after firing, in event time.
    pub fn cooldown(&self) -> Duration {
        self.spec.cooldown
    }

    /// The spec handed to the window state.
    pub fn spec(&self) -> WindowSpec {
        self.spec
    }

    /// The field paths events are grouped by.
    pub fn group_by(&self) -> &[String] {
        &self.group_by
    }

    /// The group key of `event`: the group field values joined with
    /// [`GROUP_KEY_SEPARATOR`]; an absent field contributes an empty value.
    pub fn group_key(&self, event: &Event) -> String {
        let mut key = String::new();
        for (i, field) in self.group_fields.iter().enumerate() {
            if i > 0 {
                key.push(GROUP_KEY_SEPARATOR);
            }
            if let Some(v) = field.get(event) {
                key.push_str(&v);
            }
        }
        key
    }
}

/// The alert part of a rule.
#[derive(Debug, Clone)]
pub(crate) struct AlertTemplate {
    pub alert_name: Template,
    pub alert_type: String,
    pub severity: Severity,
    pub description: Template,
    pub actor_type: String,
    pub resource_type: String,
    pub resource_id: Template,
    pub action_observed: Template,
    pub tags: Vec<String>,
    pub remediation_guidance: String,
    pub playbook_url: String,
}

/// One validated, compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) enabled: bool,
    pub(crate) when: Vec<Condition>,
    pub(crate) threshold: Option<Threshold>,
    pub(crate) alert: AlertTemplate,
}

impl Rule {
    /// Stable id, e.g. `ANLY-SEC-001` (the alert's `analysis_rule.rule_id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Human name (`analysis_rule.rule_name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the rule detects (`analysis_rule.rule_description`).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Match or threshold.
    pub fn kind(&self) -> RuleKind {
        if self.threshold.is_some() {
            RuleKind::Threshold
        } else {
            RuleKind::Match
        }
    }

    /// False when the file says `enabled = false`: the rule is validated but never evaluated.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The `when` conditions, all of which must hold.
    pub fn conditions(&self) -> &[Condition] {
        &self.when
    }

    /// The threshold parameters of a threshold rule.
    pub fn threshold(&self) -> Option<&Threshold> {
        self.threshold.as_ref()
    }

    /// The alert's severity.
    pub fn alert_severity(&self) -> Severity {
        self.alert.severity
    }

    /// Whether all conditions hold for `event` (ignores `enabled`).
    #[inline]
    pub fn matches(&self, event: &Event) -> bool {
        self.when.iter().all(|c| c.matches(event))
    }

    /// The observation a matching event makes for this threshold rule
    /// (`None` for a match rule).
    pub fn observation(&self, event: &Event) -> Option<Observation> {
        let threshold = self.threshold.as_ref()?;
        Some(Observation {
            rule_id: self.id.clone(),
            group_key: threshold.group_key(event),
            event_id: event.event_id,
            event_time: event.timestamp,
            spec: threshold.spec,
        })
    }

    /// Builds the alert this rule raises for `event`. `count` is the window
    /// count of a threshold decision (ignored, and 1 assumed, for match rules).
    pub fn alert_for(&self, event: &Event, count: u32, ctx: &AlertContext) -> Alert {
        let vars = match &self.threshold {
            Some(t) => Vars {
                count,
                threshold: t.spec.threshold,
                window_secs: t.spec.window.as_secs(),
            },
            None => Vars::default(),
        };
        let a = &self.alert;
        Alert {
            alert_id: alert_id_for(&self.id, event.event_id),
            timestamp: ctx.raised_at,
            alert_name: a.alert_name.render(event, &vars),
            alert_type: a.alert_type.clone(),
            severity: a.severity,
            description: a.description.render(event, &vars),
            source_service_name: event.source_service.clone(),
            analysis_rule: AnalysisRule {
                rule_id: self.id.clone(),
                rule_name: self.name.clone(),
                rule_description: self.description.clone(),
            },
            triggered_by: TriggeredBy {
                actor_type: a.actor_type.clone(),
                actor_id: event.user_id.clone(),
                client_ip: event.effective_client_ip().unwrap_or(MISSING).to_string(),
            },
            impacted_resource: ImpactedResource {
                resource_type: a.resource_type.clone(),
                resource_id: a.resource_id.render(event, &vars),
                server_hostname: event.server_hostname.clone(),
            },
            action_observed: a.action_observed.render(event, &vars),
            correlation_id: event.event_id,
            // Serializing an Event cannot fail (string keys, plain JSON values).
            raw_event_data: serde_json::to_value(event)
                .unwrap_or_else(|_| Value::Object(Map::new())),
            metadata: AlertMetadata {
                tags: a.tags.clone(),
                environment: ctx.environment.clone(),
                remediation_guidance: a.remediation_guidance.clone(),
                playbook_url: a.playbook_url.clone(),
            },
            extra: Map::new(),
        }
    }
}
