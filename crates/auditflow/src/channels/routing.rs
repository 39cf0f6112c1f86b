//! Which channels get which alerts (`[[notify.routes]]`), in the spirit of
//! Alertmanager's routes.
//!
//! A channel that no route names gets every alert, so configurations
//! without routes behave as before. A channel named by routes gets exactly
//! the alerts that at least one of those routes matches. A route matches an
//! alert when every criterion it sets holds (severity one of, rule id one
//! of, at least one tag in common); a criterion left empty matches anything.

use std::collections::{HashMap, HashSet};

use auditflow_core::{Alert, Severity};
use serde::{Deserialize, Serialize};

/// One route: the channels it feeds and what it lets through.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// Names of the channels this route feeds (at least one).
    pub channels: Vec<String>,
    /// Severities let through; empty: any.
    pub severity: Vec<Severity>,
    /// Rule ids let through; empty: any.
    pub rule_id: Vec<String>,
    /// Tags of which an alert needs at least one; empty: any.
    pub tags: Vec<String>,
}

impl RouteConfig {
    fn matches(&self, alert: &Alert) -> bool {
        (self.severity.is_empty() || self.severity.contains(&alert.severity))
            && (self.rule_id.is_empty() || self.rule_id.contains(&alert.analysis_rule.rule_id))
            && (self.tags.is_empty() || alert.metadata.tags.iter().any(|t| self.tags.contains(t)))
    }
}

/// A route that cannot work, found when the configuration is loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A route names no channel.
    #[error("route {0} names no channel")]
    NoChannel(usize),
    /// A route names a channel that is not configured.
    #[error("route {index} names channel '{channel}', which is not in notify.channels")]
    UnknownChannel {
        /// The route's position in `notify.routes`.
        index: usize,
        /// The name it gave.
        channel: String,
    },
}

/// The routes, indexed by channel.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    by_channel: HashMap<String, Vec<RouteConfig>>,
}

impl Routes {
    /// Checks `routes` against the configured channel names and indexes them.
    pub fn new<'a>(
        routes: &[RouteConfig],
        channels: impl IntoIterator<Item = &'a str>,
    ) -> Result<Routes, RouteError> {
        let known: HashSet<&str> = channels.into_iter().collect();
        let mut by_channel: HashMap<String, Vec<RouteConfig>> = HashMap::new();
        for (index, route) in routes.iter().enumerate() {
            if route.channels.is_empty() {
                return Err(RouteError::NoChannel(index));
            }
            for channel in &route.channels {
                if !known.contains(channel.as_str()) {
                    return Err(RouteError::UnknownChannel {
                        index,
                        channel: channel.clone(),
                    });
                }
                by_channel
                    .entry(channel.clone())
                    .or_default()
                    .push(route.clone());
            }
        }
        Ok(Routes { by_channel })
    }

    /// Whether `channel` should get `alert`.
    pub fn wants(&self, channel: &str, alert: &Alert) -> bool {
        self.by_channel
            .get(channel)
            .is_none_or(|routes| routes.iter().any(|route| route.matches(alert)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: &str, severity: Severity, tags: &[&str]) -> Alert {
        // The earlier platform's alert, as the read API's tests keep it.
        let mut alert: Alert = serde_json::from_str(include_str!(
            "../../../auditflow-api/tests/fixtures/alert-failed-login-burst.json"
        ))
        .expect("the fixture alert parses");
        alert.analysis_rule.rule_id = rule.into();
        alert.severity = severity;
        alert.metadata.tags = tags.iter().map(|t| t.to_string()).collect();
        alert
    }

    fn route(channels: &[&str]) -> RouteConfig {
        RouteConfig {
            channels: channels.iter().map(|c| c.to_string()).collect(),
            ..RouteConfig::default()
        }
    }

    #[test]
    fn a_channel_without_routes_gets_everything() {
        let routes = Routes::new(&[], ["log", "file"]).unwrap();
        let a = alert("ANLY-SEC-001", Severity::Info, &[]);
        assert!(routes.wants("log", &a) && routes.wants("file", &a));
    }

    #[test]
    fn a_routed_channel_gets_what_any_of_its_routes_matches() {
        let critical_files = RouteConfig {
            severity: vec![Severity::Critical],
            rule_id: vec!["ANLY-SEC-002".into()],
            ..route(&["pager"])
        };
        let brute_force = RouteConfig {
            tags: vec!["brute-force".into()],
            ..route(&["pager", "chat"])
        };
        let routes = Routes::new(&[critical_files, brute_force], ["pager", "chat", "log"]).unwrap();
        let file = alert("ANLY-SEC-002", Severity::Critical, &["file-integrity"]);
        let warn_file = alert("ANLY-SEC-002", Severity::Warning, &["file-integrity"]);
        let burst = alert("ANLY-SEC-001", Severity::Warning, &["auth", "brute-force"]);
        // Every criterion of a route must hold.
        assert!(routes.wants("pager", &file));
        assert!(!routes.wants("pager", &warn_file));
        // Any route of the channel may let it through.
        assert!(routes.wants("pager", &burst));
        assert!(routes.wants("chat", &burst));
        assert!(!routes.wants("chat", &file));
        // Unrouted channels are unaffected.
        assert!(routes.wants("log", &warn_file));
    }

    #[test]
    fn routes_naming_no_or_unknown_channels_are_refused() {
        assert_eq!(
            Routes::new(&[route(&[])], ["log"]).unwrap_err(),
            RouteError::NoChannel(0)
        );
        assert_eq!(
            Routes::new(&[route(&["log"]), route(&["pagr"])], ["log"]).unwrap_err(),
            RouteError::UnknownChannel {
                index: 1,
                channel: "pagr".into()
            }
        );
    }
}
