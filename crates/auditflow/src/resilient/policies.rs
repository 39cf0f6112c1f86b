//! The one place where each dependency's policy is built from configuration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use resilience::{Policy, PolicyConfig};

use super::PrometheusObserver;
use crate::channels::policy::ChannelResilience;

/// The `[resilience.*]` sections: the core dependencies, and the defaults of
/// each channel kind with a policy. Every webhook, Slack and email channel
/// gets a policy of its own, named after the channel, from its kind's section
/// (`webhook` or `email`) with the channel's `resilience` keys laid over it.
pub const DEPENDENCIES: [&str; 5] = ["broker", "store", "windows", "webhook", "email"];

/// Defaults per dependency, tuned for the embedded backends and LAN servers:
/// short attempts, quick retries, a breaker that opens after a burst of
/// failures and probes again within seconds (growing on repeated opens).
pub fn default_policies() -> BTreeMap<String, PolicyConfig> {
    DEPENDENCIES
        .iter()
        .map(|&name| {
            let mut config = PolicyConfig {
                name: name.to_string(),
                ..PolicyConfig::default()
            };
            config.timeout.per_attempt = Duration::from_secs(2);
            config.timeout.total = Duration::from_secs(5);
            config.retry.max_attempts = 3;
            config.retry.initial_backoff = Duration::from_millis(20);
            config.retry.max_backoff = Duration::from_millis(500);
            config.breaker.minimum_calls = 10;
            config.breaker.window_size = 50;
            // Probe again soon after an outage, and grow the wait gently:
            // recovery time after a dependency returns is bounded by it.
            config.breaker.open_duration = Duration::from_secs(2);
            config.breaker.open_duration_multiplier = 1.5;
            config.breaker.max_open_duration = Duration::from_secs(10);
            config.breaker.slow_call_duration = Duration::from_secs(1);
            config.bulkhead.max_concurrent = 256;
            if name == "webhook" {
                config.timeout.per_attempt = Duration::from_secs(5);
                config.timeout.total = Duration::from_secs(20);
                config.retry.max_attempts = 5;
                config.retry.initial_backoff = Duration::from_millis(100);
                config.retry.max_backoff = Duration::from_secs(5);
                config.breaker.slow_call_duration = Duration::from_secs(3);
                config.bulkhead.max_concurrent = 16;
            }
            if name == "email" {
                // SMTP servers answer slowly under load (greeting delays,
                // content scanning after DATA) and greylist with 4xx for
                // minutes: longer attempts, fewer and slower retries, and few
                // connections at once (servers limit them per client).
                config.timeout.per_attempt = Duration::from_secs(15);
                config.timeout.total = Duration::from_secs(45);
                config.retry.max_attempts = 3;
                config.retry.initial_backoff = Duration::from_millis(500);
                config.retry.max_backoff = Duration::from_secs(10);
                config.retry.max_elapsed = Duration::from_secs(30);
                config.breaker.slow_call_duration = Duration::from_secs(10);
                config.bulkhead.max_concurrent = 4;
            }
            (name.to_string(), config)
        })
        .collect()
}

/// The built policies of one process.
#[derive(Clone)]
pub struct Policies {
    configs: BTreeMap<String, PolicyConfig>,
    observer: Arc<PrometheusObserver>,
    built: BTreeMap<String, Policy>,
}

impl Policies {
    /// Builds every dependency's policy. `configs` holds the effective
    /// `[resilience.*]` tables (defaults merged with the file).
    pub fn build(
        configs: &BTreeMap<String, PolicyConfig>,
        observer: Arc<PrometheusObserver>,
    ) -> anyhow::Result<Policies> {
        let mut policies = Policies {
            configs: configs.clone(),
            observer,
            built: BTreeMap::new(),
        };
        for name in ["broker", "store", "windows"] {
            let policy = policies.named(name, name)?;
            policies.built.insert(name.to_string(), policy);
        }
        Ok(policies)
    }

    /// A new policy called `name` configured by `[resilience.<section>]`.
    pub fn named(&self, section: &str, name: &str) -> anyhow::Result<Policy> {
        self.for_channel(section, name, None)
    }

    /// A new policy called `name`: `[resilience.<section>]` with a channel's
    /// own `overrides` laid over it. Its breaker state is exported as
    /// `auditflow_resilience_breaker_state{dependency="<name>"}`.
    pub fn for_channel(
        &self,
        section: &str,
        name: &str,
        overrides: Option<&ChannelResilience>,
    ) -> anyhow::Result<Policy> {
        let base = self
            .configs
            .get(section)
            .ok_or_else(|| anyhow::anyhow!("no [resilience.{section}] policy"))?;
        let mut config = match overrides {
            Some(overrides) => overrides
                .apply(base)
                .map_err(|e| anyhow::anyhow!("channel '{name}': resilience: {e}"))?,
            None => base.clone(),
        };
        config.name = name.to_string();
        let policy = Policy::builder(config)
            .observer(self.observer.clone())
            .build()
            .map_err(|e| anyhow::anyhow!("[resilience.{section}]: {e}"))?;
        if let Some(breaker) = policy.breaker() {
            self.observer.register_policy(name, breaker.state());
        }
        Ok(policy)
    }

    /// The policy of a core dependency (`broker`, `store`, `windows`).
    pub fn get(&self, dependency: &str) -> Option<&Policy> {
        self.built.get(dependency)
    }

    /// Breaker states by dependency, for health reports.
    pub fn breaker_states(&self) -> BTreeMap<String, &'static str> {
        self.built
            .iter()
            .filter_map(|(name, p)| p.breaker().map(|b| (name.clone(), b.state().as_str())))
            .collect()
    }
}
