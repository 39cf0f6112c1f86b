//! [`RedisConfig`]: how to reach Redis and how to lay out and expire keys.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Configuration of [`crate::RedisWindowState`]. Every field has a default,
/// so `RedisConfig::default()` talks to a local Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Redis URL (`redis://[user:password@]host:port[/db]`, or `rediss://`
    /// when the crate is built with TLS support).
    pub url: String,
    /// Prefix of every key this state writes, e.g. `auditflow:`; lets several
    /// deployments (or tests) share one Redis.
    pub key_prefix: String,
    /// Bound on each round trip to Redis (one pipeline of script calls, a
    /// PING), including the wait for a (re)connection. Past it, the call
    /// fails with `WindowError::Unavailable`.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Bound on one connection attempt (TCP connect and handshake).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Extra lifetime of a group's keys beyond the rule's retention
    /// (`2 * window + cooldown`) and the decision grace
    /// ([`auditflow_core::window::DECISION_GRACE`]). Idle groups expire that
    /// long after their last write (processing time).
    #[serde(with = "humantime_serde")]
    pub ttl_slack: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".to_string(),
            key_prefix: "auditflow:".to_string(),
            command_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            ttl_slack: Duration::from_secs(5 * 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_humantime() {
        let c: RedisConfig =
            serde_json::from_str(r#"{"command_timeout":"250ms","ttl_slack":"10m"}"#).unwrap();
        assert_eq!(c.command_timeout, Duration::from_millis(250));
        assert_eq!(c.ttl_slack, Duration::from_secs(600));
        assert_eq!(c.url, "redis://127.0.0.1:6379");
        assert_eq!(c.key_prefix, "auditflow:");
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
        assert!(serde_json::from_str::<RedisConfig>(r#"{"urll":"x"}"#).is_err());
    }
}
