//! AuditFlow's detection rules, as data.
//!
//! A rules file (TOML, format in this crate's `README.md`) holds `[[rule]]`
//! tables of two kinds:
//!
//! - **match** rules fire on each single event that satisfies all their
//!   `when` conditions;
//! - **threshold** rules count matching events per group (`group_by`) within
//!   a window of *event time*. The counting is not done here: matching events
//!   become [`Observation`]s for an [`auditflow_core::window::WindowState`],
//!   whose [`Decision`](auditflow_core::window::Decision)s say when to fire.
//!
//! [`RuleSet::from_toml_str`] / [`RuleSet::load`] validate the whole file up
//! front (every error names the rule and the key) and precompile conditions
//! and templates, so [`RuleSet::evaluate`] is cheap. [`RuleSet::analyze`]
//! turns a batch of events into alerts; [`test_events`] runs a rules file
//! over an NDJSON file offline.
//!
//! ```
//! use auditflow_rules::RuleSet;
//! let rules = RuleSet::builtin();
//! assert_eq!(rules.rules()[0].id(), "ANLY-SEC-001");
//! ```
#![deny(missing_docs)]

mod condition;
mod error;
mod field;
mod parse;
mod rule;
mod runner;
mod template;

use std::path::Path;

use auditflow_core::window::{Observation, WindowError, WindowState};
use auditflow_core::{Alert, Event};
use chrono::{DateTime, Utc};

pub use condition::{Condition, OpKind};
pub use error::RulesError;
pub use rule::{Rule, RuleKind, Threshold, GROUP_KEY_SEPARATOR};
pub use runner::{test_events, LineError, TestReport};

/// The built-in rules file, `rules/default.toml`.
pub const BUILTIN_RULES_TOML: &str = include_str!("../rules/default.toml");

/// What the caller knows about the alerts being raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertContext {
    /// Deployment environment, copied to `metadata.environment`.
    pub environment: String,
    /// The alerts' `timestamp`.
    pub raised_at: DateTime<Utc>,
}

/// A validated, compiled set of rules, in file order.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

/// What one event does under a [`RuleSet`], before any window state is consulted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Indices (into [`RuleSet::rules`]) of the match rules that fire.
    pub matched: Vec<usize>,
    /// For each threshold rule the event matches: its index and the observation to record.
    pub observations: Vec<(usize, Observation)>,
}

impl Evaluation {
    /// True when no rule matched the event.
    pub fn is_empty(&self) -> bool {
        self.matched.is_empty() && self.observations.is_empty()
    }
}

impl RuleSet {
    /// Parses and validates a rules file's text.
    pub fn from_toml_str(src: &str) -> Result<RuleSet, RulesError> {
        parse::parse_rules(src).map(|rules| RuleSet { rules })
    }

    /// Reads, parses and validates a rules file; errors name the path.
    pub fn load(path: &Path) -> Result<RuleSet, RulesError> {
        let src = std::fs::read_to_string(path).map_err(|source| RulesError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        RuleSet::from_toml_str(&src).map_err(|e| RulesError::File {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// The built-in rules (`ANLY-SEC-001` failed-login burst, `ANLY-SEC-002`
    /// sensitive file modification), from the embedded `rules/default.toml`.
    pub fn builtin() -> RuleSet {
        match RuleSet::from_toml_str(BUILTIN_RULES_TOML) {
            Ok(rules) => rules,
            // The embedded file is fixed at compile time and covered by tests.
            Err(e) => panic!("built-in rules are invalid: {e}"),
        }
    }

    /// All rules, in file order (disabled ones included).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id() == id)
    }

    /// Pure: which match rules fire and which threshold observations this event produces.
    pub fn evaluate(&self, event: &Event) -> Evaluation {
        let mut out = Evaluation::default();
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.enabled() || !rule.matches(event) {
                continue;
            }
            match rule.observation(event) {
                Some(obs) => out.observations.push((i, obs)),
                None => out.matched.push(i),
            }
        }
        out
    }

    /// Full analysis of a batch, in order: one [`WindowState::observe`] call
    /// for all threshold observations of the batch (none when there are
    /// none), then per event the alerts it raises (match alerts and fired
    /// thresholds), in rule order.
    ///
    /// A redelivered event gets the window's recorded decision back, so it
    /// yields the same alerts with the same ids as the first time.
    pub async fn analyze(
        &self,
        events: &[Event],
        windows: &dyn WindowState,
        ctx: &AlertContext,
    ) -> Result<Vec<Vec<Alert>>, WindowError> {
        let mut raised: Vec<Vec<(usize, Alert)>> = Vec::with_capacity(events.len());
        let mut observations = Vec::new();
        let mut owners: Vec<(usize, usize)> = Vec::new();
        for (e, event) in events.iter().enumerate() {
            let eval = self.evaluate(event);
            raised.push(
                eval.matched
                    .iter()
                    .map(|&r| (r, self.rules[r].alert_for(event, 1, ctx)))
                    .collect(),
            );
            for (r, obs) in eval.observations {
                owners.push((e, r));
                observations.push(obs);
            }
        }
        if !observations.is_empty() {
            let decisions = windows.observe(&observations).await?;
            if decisions.len() != observations.len() {
                return Err(WindowError::Unavailable(format!(
                    "window state returned {} decisions for {} observations",
                    decisions.len(),
                    observations.len()
                )));
            }
            for ((e, r), decision) in owners.into_iter().zip(decisions) {
                if decision.fire {
                    let alert = self.rules[r].alert_for(&events[e], decision.count, ctx);
                    raised[e].push((r, alert));
                }
            }
        }
        Ok(raised
            .into_iter()
            .map(|mut alerts| {
                alerts.sort_by_key(|(r, _)| *r);
                alerts.into_iter().map(|(_, a)| a).collect()
            })
            .collect())
    }
}
