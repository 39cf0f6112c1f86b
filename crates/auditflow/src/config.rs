//! Configuration: one TOML file, overridden by `AUDITFLOW_*` environment
//! variables, overridden by command-line flags.
//!
//! Environment keys map onto the file's keys with `__` between levels:
//! `AUDITFLOW_HTTP__LISTEN=0.0.0.0:8080` sets `[http] listen`. A wrong value
//! is an error that names the key (figment reports the path).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::channels::email::EmailConfig;
use crate::channels::policy::ChannelResilience;

/// The whole effective configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory of the embedded backends' files.
    pub data_dir: PathBuf,
    /// Environment name written into alerts' metadata.
    pub environment: String,
    /// HTTP listener shared by ingest, the read API and health endpoints.
    pub http: HttpConfig,
    /// Queues.
    pub broker: BrokerConfig,
    /// The analyze role.
    pub analyze: AnalyzeConfig,
    /// The notify role.
    pub notify: NotifyConfig,
    /// Logging.
    pub log: LogConfig,
    /// Traces: OTLP export (off unless an endpoint is set), sampling.
    pub telemetry: crate::traces::TelemetryConfig,
    /// Which backends to use.
    pub backends: BackendsConfig,
    /// RabbitMQ settings (when `backends.broker` is an `amqp://` URL; its
    /// `url` is taken from there).
    pub rabbitmq: auditflow_rabbitmq::RabbitConfig,
    /// PostgreSQL settings (when `backends.store` is a `postgres://` URL).
    pub postgres: auditflow_postgres::PgConfig,
    /// Redis settings (when `backends.windows` is a `redis://` URL).
    pub redis: auditflow_redis::RedisConfig,
    /// Resilience policy per dependency (`broker`, `store`, `windows`) and
    /// per channel kind (`webhook`, `email`: the defaults of each such
    /// channel's own policy): timeouts, retries, retry budget, breaker,
    /// bulkhead.
    pub resilience: BTreeMap<String, resilience::PolicyConfig>,
    /// Service level objectives, `[slo.<name>]` (see [`crate::slo`]).
    pub slo: BTreeMap<String, crate::slo::SloConfig>,
    /// The monitor role and the heartbeats every process sends it.
    pub monitor: crate::monitor::MonitorConfig,
    /// The async runtime the process runs on.
    pub runtime: RuntimeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            environment: "DEVELOPMENT".into(),
            http: HttpConfig::default(),
            broker: BrokerConfig::default(),
            analyze: AnalyzeConfig::default(),
            notify: NotifyConfig::default(),
            log: LogConfig::default(),
            telemetry: crate::traces::TelemetryConfig::default(),
            resilience: crate::resilient::default_policies(),
            backends: BackendsConfig::default(),
            rabbitmq: auditflow_rabbitmq::RabbitConfig::default(),
            postgres: auditflow_postgres::PgConfig::default(),
            redis: auditflow_redis::RedisConfig::default(),
            slo: crate::slo::default_slos(),
            monitor: crate::monitor::MonitorConfig::default(),
            runtime: RuntimeConfig::default(),
        }
    }
}

/// Where the broker, the store and the window state live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendsConfig {
    /// `embedded`, or an `amqp://` URL (RabbitMQ).
    pub broker: String,
    /// `embedded`, or a `postgres://` URL.
    pub store: String,
    /// `embedded`, `store` (in the PostgreSQL store's database), or a
    /// `redis://` URL (rebuilt from the store after Redis loses its data).
    pub windows: String,
}

impl Default for BackendsConfig {
    fn default() -> Self {
        BackendsConfig {
            broker: "embedded".into(),
            store: "embedded".into(),
            windows: "embedded".into(),
        }
    }
}

impl BackendsConfig {
    /// True when any backend is the embedded one (which needs the data directory).
    pub fn any_embedded(&self) -> bool {
        [&self.broker, &self.store, &self.windows]
            .iter()
            .any(|b| b.as_str() == "embedded")
    }
}

/// HTTP settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Bearer token required on the API. Required when `listen` is not loopback.
    pub auth_token: Option<String>,
    /// Explicitly allow an unauthenticated API on a non-loopback address.
    pub allow_unauthenticated: bool,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Most events accepted in one request.
    pub max_events_per_request: usize,
    /// Request bodies (bytes) that ingest parses and publishes at once,
    /// across all requests. Parsed events and their messages take several
    /// times their body's size until the broker has confirmed them, so this
    /// bounds ingest's memory however many clients send at once; a request
    /// beyond it waits its turn (within `request_timeout`). A body larger
    /// than the bound is taken alone.
    pub max_bytes_in_flight: usize,
    /// How long a request may take before it is answered 503.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long ingest holds a request back while the events queue is at
    /// its bound, waiting for analyze to make room, before answering 429.
    /// Smooths a burst into backpressure instead of refusing it, where the
    /// broker can tell its depth cheaply (the embedded one); 0 refuses at
    /// once.
    #[serde(with = "humantime_serde")]
    pub queue_full_wait: Duration,
    /// On SIGTERM/SIGINT: how long in-flight work may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Per-client limit on `POST /v1/events` requests (GCRA), keyed by
    /// bearer token, else by client address. Disabled by default.
    pub rate_limit: resilience::RateLimitConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            auth_token: None,
            allow_unauthenticated: false,
            max_body_bytes: 8 * 1024 * 1024,
            max_events_per_request: 10_000,
            max_bytes_in_flight: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            queue_full_wait: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            rate_limit: resilience::RateLimitConfig::default(),
        }
    }
}

/// Queue settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Queue of events (ingest -> analyze).
    pub events_queue: String,
    /// Queue of alerts (analyze -> notify).
    pub alerts_queue: String,
    /// Messages a queue of the embedded broker may hold before publishers
    /// are refused (ingest answers 429, after `http.queue_full_wait`). The
    /// embedded broker keeps its queued messages in memory, so this bounds
    /// memory too: 25 000 events take about 30 MB. (RabbitMQ's bound is
    /// `rabbitmq.max_queue_length`.)
    pub max_queue_depth: u64,
    /// Deliveries of one message before it is dead-lettered.
    pub delivery_limit: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            events_queue: auditflow_core::broker::EVENTS_QUEUE.into(),
            alerts_queue: auditflow_core::broker::ALERTS_QUEUE.into(),
            max_queue_depth: 25_000,
            delivery_limit: 5,
        }
    }
}

/// Analyze settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyzeConfig {
    /// Rules file; the built-in rules when absent.
    pub rules_file: Option<PathBuf>,
    /// Events handled per batch (one store commit, one window commit, one
    /// ack). Default: see [`AnalyzeConfig::batch_size_for`].
    pub batch_size: Option<usize>,
    /// Unacked deliveries held by the consumer. Default: see
    /// [`AnalyzeConfig::prefetch_for`].
    pub prefetch: Option<usize>,
    /// Largest event accepted from the broker; a larger one is dead-lettered
    /// (ingest bounds its bodies, but other publishers may not).
    pub max_event_bytes: usize,
}

impl AnalyzeConfig {
    /// The batch size on `broker` (`backends.broker`): as configured, else
    /// 4096 on the embedded broker and 1024 on RabbitMQ. The embedded
    /// platform is bound by disk bandwidth, and a larger commit rewrites
    /// each index page it touches once for more events (1024 -> 4096
    /// measured about +30% events/s); on RabbitMQ a larger batch only
    /// raises analyze's memory (4096: peak RSS 57 -> 95 MB) and its tail
    /// latency, and a smaller one costs throughput: 512 against 1024 (both
    /// with prefetch 2048) lowered analyze's peak RSS from 35-36 to 32 MB
    /// but end-to-end throughput by 7% and raised p99 from 9-11 to 19-28 ms
    /// (2026-12-04, two alternating runs of `scripts/bench.py --distributed`).
    pub fn batch_size_for(&self, broker: &str) -> usize {
        self.batch_size
            .unwrap_or(if broker == "embedded" { 4096 } else { 1024 })
    }

    /// Prefetch on `broker`: as configured, else twice the batch size on the
    /// embedded broker (whose queue is in memory anyway) and 2048 on
    /// RabbitMQ: the next batch is already here while one is processed.
    /// Every prefetched delivery costs about 2 KB until its batch; 4096
    /// against 2048 raised analyze's peak RSS from 35-36 to 39-41 MB for no
    /// measurable throughput (2026-12-04, alternating runs of
    /// `scripts/bench.py --distributed`).
    pub fn prefetch_for(&self, broker: &str) -> usize {
        self.prefetch.unwrap_or(if broker == "embedded" {
            2 * self.batch_size_for(broker)
        } else {
            2048
        })
    }
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        AnalyzeConfig {
            rules_file: None,
            batch_size: None,
            prefetch: None,
            max_event_bytes: 1024 * 1024,
        }
    }
}

/// Notify settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Alerts handled per batch.
    pub batch_size: usize,
    /// Unacked deliveries held by the consumer.
    pub prefetch: usize,
    /// Delivery channels; each alert goes to every channel once.
    pub channels: Vec<ChannelConfig>,
    /// Which alerts routed channels get (see [`crate::channels::routing`]);
    /// a channel no route names gets every alert.
    pub routes: Vec<crate::channels::routing::RouteConfig>,
    /// A transiently failed delivery is first retried this long after it
    /// failed; each further failure doubles the wait (with jitter).
    #[serde(with = "humantime_serde")]
    pub retry_interval: Duration,
    /// The longest wait between two retries of one delivery.
    #[serde(with = "humantime_serde")]
    pub retry_max_interval: Duration,
    /// How long after notify stored an alert its retries go on; then the
    /// delivery is recorded `failed` for good (and counted `gave_up`).
    #[serde(with = "humantime_serde")]
    pub retry_for: Duration,
    /// How long a claimed retry is reserved for the replica that claimed
    /// it; after that (the replica died mid-delivery, or the channel's lane
    /// was busier than this) another replica may retry it. Longer than a
    /// channel's worst-case delivery, shorter than tolerable recovery delay.
    #[serde(with = "humantime_serde")]
    pub retry_lease: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            batch_size: 256,
            prefetch: 1024,
            channels: vec![
                ChannelConfig::Log { name: "log".into() },
                ChannelConfig::File {
                    name: "file".into(),
                    path: None,
                },
            ],
            routes: Vec::new(),
            retry_interval: Duration::from_secs(1),
            retry_max_interval: Duration::from_secs(60),
            retry_for: Duration::from_secs(24 * 3600),
            retry_lease: Duration::from_secs(120),
        }
    }
}

/// One delivery channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelConfig {
    /// Writes each alert to the log.
    Log {
        /// Channel name (delivery records use it).
        name: String,
    },
    /// Appends each alert as one JSON line to a file, fsync'd, exactly once.
    File {
        /// Channel name.
        name: String,
        /// The file; `<data_dir>/alerts.ndjson` when absent.
        path: Option<PathBuf>,
    },
    /// POSTs each alert as JSON with an `Idempotency-Key` header. Timeouts,
    /// retries and the breaker come from `[resilience.webhook]`, overridden
    /// by the channel's own `resilience` table.
    Webhook {
        /// Channel name.
        name: String,
        /// Target URL.
        url: String,
        /// This channel's resilience keys over `[resilience.webhook]`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resilience: Option<ChannelResilience>,
    },
    /// POSTs each alert to a Slack-compatible incoming webhook (Slack,
    /// Mattermost, Rocket.Chat): `{"text": ...}` with the alert's severity,
    /// name, description, rule and ids. Resilience from `[resilience.webhook]`
    /// and the channel's `resilience` table.
    Slack {
        /// Channel name.
        name: String,
        /// The incoming-webhook URL.
        url: String,
        /// This channel's resilience keys over `[resilience.webhook]`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resilience: Option<ChannelResilience>,
    },
    /// Mails each alert over SMTP (see [`crate::channels::email`]).
    /// Resilience from `[resilience.email]` and the channel's `resilience`.
    Email(Box<EmailConfig>),
}

impl ChannelConfig {
    /// The channel's name.
    pub fn name(&self) -> &str {
        match self {
            ChannelConfig::Log { name }
            | ChannelConfig::File { name, .. }
            | ChannelConfig::Webhook { name, .. }
            | ChannelConfig::Slack { name, .. } => name,
            ChannelConfig::Email(email) => &email.name,
        }
    }

    /// The `[resilience.<section>]` a channel's policy starts from, and the
    /// channel's own overrides; `None` for channels without a policy.
    pub fn policy(&self) -> Option<(&'static str, Option<&ChannelResilience>)> {
        match self {
            ChannelConfig::Log { .. } | ChannelConfig::File { .. } => None,
            ChannelConfig::Webhook { resilience, .. } | ChannelConfig::Slack { resilience, .. } => {
                Some(("webhook", resilience.as_ref()))
            }
            ChannelConfig::Email(email) => Some(("email", email.resilience.as_ref())),
        }
    }
}

/// Checks a list of channels (`key` names it in errors): unique names, valid
/// channel settings, and per-channel resilience that applies cleanly over
/// its kind's `[resilience.*]` defaults.
fn validate_channels(
    key: &'static str,
    channels: &[ChannelConfig],
    resilience: &BTreeMap<String, resilience::PolicyConfig>,
) -> Result<(), ConfigError> {
    let inconsistent = |reason: String| ConfigError::Inconsistent { key, reason };
    let mut names: Vec<&str> = channels.iter().map(ChannelConfig::name).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(inconsistent(format!(
            "channel name '{}' is used twice",
            pair[0]
        )));
    }
    for channel in channels {
        let name = channel.name();
        if let ChannelConfig::Email(email) = channel {
            email
                .validate()
                .map_err(|e| inconsistent(format!("channel '{name}': {e}")))?;
        }
        let Some((section, overrides)) = channel.policy() else {
            continue;
        };
        // A channel's policy is named after the channel, and so are its
        // metrics (`dependency="<name>"`): it must not share a core one's.
        if crate::dependencies::DEPENDENCIES.contains(&name) {
            return Err(inconsistent(format!(
                "channel name '{name}' is taken by the {name} dependency's metrics; pick another"
            )));
        }
        let base = resilience.get(section).ok_or_else(|| {
            inconsistent(format!(
                "channel '{name}': no [resilience.{section}] policy"
            ))
        })?;
        if let Some(overrides) = overrides {
            overrides
                .apply(base)
                .map_err(|e| inconsistent(format!("channel '{name}': resilience: {e}")))?;
        }
    }
    Ok(())
}

/// The async runtime of a serving process (`auditflow up`, `auditflow run`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Threads that run the process's tasks. Default: see
    /// [`RuntimeConfig::worker_threads_for`].
    pub worker_threads: Option<usize>,
}

impl RuntimeConfig {
    /// The threads a process runs its tasks on: `worker_threads` when set,
    /// else one for a single role (`auditflow run <role>`) and one per core
    /// for every role in one process (`auditflow up`).
    ///
    /// Why one for a single role: a role process spends its time waiting on
    /// its backends (RabbitMQ, PostgreSQL and Redis took 3 to 6 times the
    /// CPU of analyze in the distributed benchmark, where analyze used a
    /// fifth of a core at 14,000 events/s), and it scales out with replicas,
    /// not threads. Every extra thread costs a stack, an allocator heap and
    /// cross-thread wake-ups: measured with `scripts/bench.py --distributed`
    /// (2026-12-07, alternating runs on 2 cores), a current-thread runtime
    /// instead of two workers lowered analyze's peak RSS from 35.1-36.3 to
    /// 30.0-30.1 MB, ingest's from 28.7-29.2 to 25.8-26.0 MB and notify's
    /// and api's by about 1 MB, with end to end 14.9k/13.9k events/s
    /// against 13.9k/13.8k (a multi-thread runtime with one worker gave
    /// analyze 30.4-31.6 and ingest 26.3-26.6 MB).
    pub fn worker_threads_for(&self, single_role: bool) -> usize {
        self.worker_threads.unwrap_or_else(|| {
            if single_role {
                1
            } else {
                std::thread::available_parallelism().map_or(1, usize::from)
            }
        })
    }
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Default filter (`info`, `auditflow=debug,warn`...); `RUST_LOG` wins.
    pub level: String,
    /// `auto` (JSON unless stderr is a terminal), `json` or `human`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Auto,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when not on a terminal.
    Auto,
    /// JSON lines.
    Json,
    /// Human-readable.
    Human,
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or a variable holds a wrong value; the message names the key.
    #[error("configuration: {0}")]
    Invalid(String),
    /// The combination of values is unsafe or inconsistent.
    #[error("configuration: {key}: {reason}")]
    Inconsistent {
        /// The offending key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

impl Config {
    /// Loads defaults, then `file` (if given), then `AUDITFLOW_*` variables,
    /// then `overrides` (flags, as a partial TOML-shaped value).
    pub fn load(file: Option<&Path>, overrides: &toml::Table) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        let config: Config = figment
            .merge(
                Env::prefixed("AUDITFLOW_")
                    .ignore(&["config", "url", "token"])
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e: figment::Error| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.http.listen.ip().is_loopback()
            && self.http.auth_token.is_none()
            && !self.http.allow_unauthenticated
        {
            return Err(ConfigError::Inconsistent {
                key: "http.auth_token",
                reason: format!(
                    "listening on {} (beyond loopback) requires a bearer token; set http.auth_token \
                     (AUDITFLOW_HTTP__AUTH_TOKEN) or http.allow_unauthenticated = true",
                    self.http.listen
                ),
            });
        }
        for (key, value) in [
            ("analyze.batch_size", self.analyze.batch_size.unwrap_or(1)),
            ("notify.batch_size", self.notify.batch_size),
            (
                "http.max_events_per_request",
                self.http.max_events_per_request,
            ),
            ("http.max_bytes_in_flight", self.http.max_bytes_in_flight),
            (
                "runtime.worker_threads",
                self.runtime.worker_threads.unwrap_or(1),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Inconsistent {
                    key,
                    reason: "must be at least 1".into(),
                });
            }
        }
        let n = &self.notify;
        for (key, value) in [
            ("notify.retry_interval", n.retry_interval),
            ("notify.retry_lease", n.retry_lease),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Inconsistent {
                    key,
                    reason: "must be longer than 0".into(),
                });
            }
        }
        if n.retry_max_interval < n.retry_interval {
            return Err(ConfigError::Inconsistent {
                key: "notify.retry_max_interval",
                reason: "must be at least notify.retry_interval".into(),
            });
        }
        if let Err(e) = crate::channels::routing::Routes::new(
            &self.notify.routes,
            self.notify.channels.iter().map(ChannelConfig::name),
        ) {
            return Err(ConfigError::Inconsistent {
                key: "notify.routes",
                reason: e.to_string(),
            });
        }
        if u32::try_from(self.http.max_bytes_in_flight).is_err() {
            return Err(ConfigError::Inconsistent {
                key: "http.max_bytes_in_flight",
                reason: "must be at most 4 GiB".into(),
            });
        }
        let b = &self.backends;
        if !(b.broker == "embedded"
            || b.broker.starts_with("amqp://")
            || b.broker.starts_with("amqps://"))
        {
            return Err(ConfigError::Inconsistent {
                key: "backends.broker",
                reason: format!("'{}' is neither 'embedded' nor an amqp:// URL", b.broker),
            });
        }
        if !(b.store == "embedded"
            || b.store.starts_with("postgres://")
            || b.store.starts_with("postgresql://"))
        {
            return Err(ConfigError::Inconsistent {
                key: "backends.store",
                reason: format!("'{}' is neither 'embedded' nor a postgres:// URL", b.store),
            });
        }
        let windows_ok = b.windows == "embedded"
            || b.windows.starts_with("redis://")
            || b.windows.starts_with("rediss://")
            || (b.windows == "store" && b.store != "embedded");
        if !windows_ok {
            return Err(ConfigError::Inconsistent {
                key: "backends.windows",
                reason: format!(
                    "'{}' is not 'embedded', a redis:// URL, or 'store' with a PostgreSQL store",
                    b.windows
                ),
            });
        }
        for name in self.resilience.keys() {
            if !crate::resilient::policies::DEPENDENCIES.contains(&name.as_str()) {
                return Err(ConfigError::Inconsistent {
                    key: "resilience",
                    reason: format!(
                        "unknown dependency '{name}'; known: {}",
                        crate::resilient::policies::DEPENDENCIES.join(", ")
                    ),
                });
            }
        }
        for (name, policy) in &self.resilience {
            policy.validate().map_err(|e| ConfigError::Inconsistent {
                key: "resilience",
                reason: format!("[resilience.{name}] {}: {}", e.field, e.reason),
            })?;
        }
        crate::slo::validate(&self.slo)
            .map_err(|reason| ConfigError::Inconsistent { key: "slo", reason })?;
        validate_channels("notify.channels", &self.notify.channels, &self.resilience)?;
        validate_channels("monitor.channels", &self.monitor.channels, &self.resilience)?;
        self.telemetry
            .validate()
            .map_err(|reason| ConfigError::Inconsistent {
                key: "telemetry",
                reason,
            })?;
        Ok(())
    }

    /// The effective configuration as TOML, with the auth token and SMTP
    /// passwords masked.
    pub fn to_toml_masked(&self) -> String {
        let mut shown = self.clone();
        if shown.http.auth_token.is_some() {
            shown.http.auth_token = Some("********".into());
        }
        for channel in shown
            .notify
            .channels
            .iter_mut()
            .chain(shown.monitor.channels.iter_mut())
        {
            if let ChannelConfig::Email(email) = channel {
                email.mask_secrets();
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `text` as the configuration file, without overrides.
    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auditflow.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), &toml::Table::new())
    }

    #[test]
    fn defaults_are_valid_and_loopback() {
        let config = Config::load(None, &toml::Table::new()).unwrap();
        assert!(config.http.listen.ip().is_loopback());
        assert_eq!(config.broker.events_queue, "audit_events");
    }

    #[test]
    fn a_wrong_value_names_its_key() {
        let err = load_text("[analyze]\nbatch_size = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("analyze.batch_size"), "{err}");
    }

    #[test]
    fn resilience_overrides_merge_with_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auditflow.toml");
        std::fs::write(
            &path,
            "[resilience.store.timeout]\nper_attempt = \"750ms\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), &toml::Table::new()).unwrap();
        let store = &config.resilience["store"];
        assert_eq!(store.timeout.per_attempt, Duration::from_millis(750));
        assert_eq!(store.breaker.minimum_calls, 10, "other defaults kept");
        assert!(config.resilience.contains_key("broker"));
        std::fs::write(
            &path,
            "[resilience.store.breaker]\nfailure_rate_threshold = 7.0\n",
        )
        .unwrap();
        let err = Config::load(Some(&path), &toml::Table::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("resilience.store") && err.contains("failure_rate_threshold"),
            "{err}"
        );
    }

    #[test]
    fn channel_settings_are_checked_at_load_and_the_smtp_password_never_shown() {
        let email = "[[notify.channels]]\nkind = \"email\"\nname = \"mail\"\n\
                     host = \"smtp.example.com\"\nfrom = \"a@example.com\"\n\
                     to = [\"b@example.com\"]\nusername = \"u\"\npassword = \"s3cret-smtp\"\n";
        let config = load_text(email).unwrap();
        assert!(matches!(&config.notify.channels[0], ChannelConfig::Email(e) if e.port() == 587));
        assert!(!config.to_toml_masked().contains("s3cret-smtp"));
        assert!(!format!("{config:?}").contains("s3cret-smtp"));

        let err = load_text(&format!("{email}tls = \"none\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("notify.channels") && err.contains("'mail'") && err.contains("tls"),
            "{err}"
        );
        let err = load_text(&format!(
            "{email}[notify.channels.resilience.retry]\nmax_attempts = 0\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("'mail'") && err.contains("retry.max_attempts"),
            "{err}"
        );
        let err = load_text(
            "[[notify.channels]]\nkind = \"webhook\"\nname = \"store\"\nurl = \"http://x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("'store'"), "{err}");
        let err = load_text(
            "[[notify.channels]]\nkind = \"file\"\nname = \"f\"\n[notify.channels.resilience]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("resilience"),
            "a file channel has no policy: {err}"
        );
    }

    #[test]
    fn an_unknown_key_is_an_error() {
        let err = load_text("[http]\nlisten_addr = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    fn worker_threads_default_by_process_and_follow_the_config() {
        let mut runtime = RuntimeConfig::default();
        assert_eq!(runtime.worker_threads_for(true), 1);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(runtime.worker_threads_for(false), cores);
        runtime.worker_threads = Some(3);
        assert_eq!(runtime.worker_threads_for(true), 3);
        assert_eq!(runtime.worker_threads_for(false), 3);

        let err = load_text("[runtime]\nworker_threads = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("runtime.worker_threads"), "{err}");
    }

    #[test]
    fn analyze_batches_default_by_broker_and_follow_the_config() {
        let mut analyze = AnalyzeConfig::default();
        assert_eq!(analyze.batch_size_for("embedded"), 4096);
        assert_eq!(analyze.prefetch_for("embedded"), 8192);
        assert_eq!(analyze.batch_size_for("amqp://127.0.0.1/"), 1024);
        assert_eq!(analyze.prefetch_for("amqp://127.0.0.1/"), 2048);
        analyze.batch_size = Some(100);
        assert_eq!(analyze.batch_size_for("amqp://127.0.0.1/"), 100);
        assert_eq!(analyze.prefetch_for("embedded"), 200);
        analyze.prefetch = Some(7);
        assert_eq!(analyze.prefetch_for("embedded"), 7);
    }

    #[test]
    fn public_listen_without_token_is_refused_and_flags_override_the_file() {
        let mut overrides = toml::Table::new();
        let mut http = toml::Table::new();
        http.insert("listen".into(), "0.0.0.0:8080".into());
        overrides.insert("http".into(), http.clone().into());
        let err = Config::load(None, &overrides).unwrap_err().to_string();
        assert!(err.contains("http.auth_token"), "{err}");
        http.insert("auth_token".into(), "s3cret".into());
        overrides.insert("http".into(), http.into());
        let config = Config::load(None, &overrides).unwrap();
        assert!(!config.to_toml_masked().contains("s3cret"));
    }
}
