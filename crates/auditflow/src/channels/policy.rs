//! Per-channel resilience: a channel's own `resilience` table, laid key by
//! key over the defaults of its kind (`[resilience.webhook]` for webhook and
//! Slack channels, `[resilience.email]` for email channels).
//!
//! The table is kept as raw TOML rather than as a [`PolicyConfig`] because a
//! `PolicyConfig` fills every absent key with the crate's defaults: an
//! operator who sets only `timeout.per_attempt` on one channel must keep the
//! kind's configured retries and breaker, not the library's.

use resilience::PolicyConfig;
use serde::{Deserialize, Serialize};

/// A channel's resilience keys, e.g. `[notify.channels.resilience.timeout]
/// per_attempt = "500ms"`; keys not set come from the kind's section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelResilience(toml::Table);

impl ChannelResilience {
    /// Overrides from a TOML table (the same shape as `[resilience.*]`).
    pub fn new(table: toml::Table) -> Self {
        ChannelResilience(table)
    }

    /// The effective policy: `base` with these keys laid over it, checked.
    /// The error names the offending key.
    pub fn apply(&self, base: &PolicyConfig) -> Result<PolicyConfig, String> {
        if self.0.contains_key("name") {
            return Err("name: a channel's policy is named after the channel".into());
        }
        let mut merged = toml::Table::try_from(base)
            .map_err(|e| format!("cannot represent the base policy: {e}"))?;
        overlay(&mut merged, &self.0);
        let config: PolicyConfig = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        config
            .validate()
            .map_err(|e| format!("{}: {}", e.field, e.reason))?;
        Ok(config)
    }
}

/// Lays `from` over `into`: tables merge recursively, other values replace.
fn overlay(into: &mut toml::Table, from: &toml::Table) {
    for (key, value) in from {
        match (into.get_mut(key), value) {
            (Some(toml::Value::Table(mine)), toml::Value::Table(theirs)) => overlay(mine, theirs),
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn overrides(text: &str) -> ChannelResilience {
        ChannelResilience::new(toml::from_str(text).expect("TOML"))
    }

    #[test]
    fn only_the_keys_set_change() {
        let mut base = PolicyConfig::default();
        base.retry.max_attempts = 5;
        base.breaker.minimum_calls = 7;
        let effective =
            overrides("[timeout]\nper_attempt = \"250ms\"\n[breaker]\nwindow_size = 9\n")
                .apply(&base)
                .expect("valid");
        assert_eq!(effective.timeout.per_attempt, Duration::from_millis(250));
        assert_eq!(effective.timeout.total, base.timeout.total);
        assert_eq!(effective.retry.max_attempts, 5, "the kind's retries kept");
        assert_eq!(effective.breaker.minimum_calls, 7);
        assert_eq!(effective.breaker.window_size, 9);
    }

    #[test]
    fn unknown_and_invalid_keys_are_named() {
        let base = PolicyConfig::default();
        let err = overrides("[retry]\nmax_atempts = 2\n")
            .apply(&base)
            .expect_err("typo");
        assert!(err.contains("max_atempts"), "{err}");
        let err = overrides("[breaker]\nfailure_rate_threshold = 3.0\n")
            .apply(&base)
            .expect_err("out of range");
        assert!(err.contains("breaker.failure_rate_threshold"), "{err}");
        let err = overrides("[timeout]\nper_attempt = \"soon\"\n")
            .apply(&base)
            .expect_err("not a duration");
        assert!(!err.is_empty());
        let err = overrides("name = \"other\"\n")
            .apply(&base)
            .expect_err("name");
        assert!(err.starts_with("name"), "{err}");
    }
}
