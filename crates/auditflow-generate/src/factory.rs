//! The event factory: the earlier Python generator's event mix, seeded.
//!
//! A [`Factory`] is pure apart from its RNG: given the same seed, the same
//! [`FactoryConfig`] and the same sequence of `now` arguments it yields the
//! same items, so a load run can be replayed with `--seed`. Items are
//! [`Item::Valid`] typed events ([`GeneratedEvent`]) that serialize to the
//! generator's flat format (see `/work/shared/compat/event-*.json`) or
//! [`Item::Malformed`] raw bodies that an ingest endpoint must refuse.

use std::collections::VecDeque;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::generated::{Details, GeneratedEvent, Rfc3339Micros};

/// `source_service` of every generated event.
pub const SOURCE_SERVICE: &str = "audit-event-generator";

/// Hosts events are about.
pub const HOSTNAMES: &[&str] = &[
    "prod-web-01",
    "prod-web-02",
    "prod-db-01",
    "prod-db-02",
    "prod-app-01",
    "staging-web-01",
];

/// Acting users.
pub const USERS: &[&str] = &[
    "alice",
    "bob",
    "charlie",
    "devops_admin",
    "attacker_bob",
    "svc_backup",
    "eve",
];

/// Files whose modification fires `ANLY-SEC-002`.
pub const SENSITIVE_PATHS: [&str; 4] = [
    "/etc/passwd",
    "/etc/shadow",
    "/etc/sudoers",
    "/root/.ssh/authorized_keys",
];

const ORDINARY_PATHS: &[&str] = &[
    "/var/www/html/index.html",
    "/etc/nginx/nginx.conf",
    "/opt/app/config.yaml",
    "/home/alice/notes.txt",
    "/var/log/app/app.log",
    "/etc/hosts",
];

const LOGIN_FAILURE_REASONS: &[&str] = &[
    "Incorrect password",
    "Unknown user",
    "Account locked",
    "Expired password",
];

const PROTOCOLS: &[&str] = &["ssh", "sftp", "https"];

const SUDO_COMMANDS: &[(&str, bool)] = &[
    ("apt-get update", false),
    ("systemctl restart nginx", false),
    ("journalctl -u app --since today", false),
    ("docker ps", false),
    ("cat /etc/shadow", true),
    ("useradd -m tempuser", true),
    ("chmod 777 /etc/sudoers", true),
];

const SERVICES: &[&str] = &[
    "nginx",
    "postgresql",
    "sshd",
    "auditflow-agent",
    "cron",
    "redis",
];

const NEW_ACCOUNTS: &[&str] = &[
    "tempuser",
    "backup_svc",
    "contractor01",
    "intern02",
    "deploy",
];

/// The event types the generator produces (the `event_type` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `user_login`: `SUCCESS` or `FAILURE`.
    UserLogin,
    /// `sudo_command`.
    SudoCommand,
    /// `file_modified`: `MODIFIED`, sometimes a sensitive path.
    FileModified,
    /// `service_status_change`: `STARTED` or `STOPPED`.
    ServiceStatusChange,
    /// `user_account_management`: `CREATED`.
    UserAccountManagement,
}

impl EventKind {
    /// All kinds, in [`Mix`] order.
    pub const ALL: [EventKind; 5] = [
        EventKind::UserLogin,
        EventKind::SudoCommand,
        EventKind::FileModified,
        EventKind::ServiceStatusChange,
        EventKind::UserAccountManagement,
    ];

    /// The `event_type` wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::UserLogin => "user_login",
            EventKind::SudoCommand => "sudo_command",
            EventKind::FileModified => "file_modified",
            EventKind::ServiceStatusChange => "service_status_change",
            EventKind::UserAccountManagement => "user_account_management",
        }
    }

    /// Parses the `event_type` wire value.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s.trim())
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration value the factory cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The offending setting.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// Relative weights of the event types (not necessarily summing to 100).
///
/// Text form (for `--mix`): `user_login=40,file_modified=20,...`; kinds not
/// listed get weight 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mix {
    /// Weight of `user_login`.
    pub user_login: u32,
    /// Weight of `sudo_command`.
    pub sudo_command: u32,
    /// Weight of `file_modified`.
    pub file_modified: u32,
    /// Weight of `service_status_change`.
    pub service_status_change: u32,
    /// Weight of `user_account_management`.
    pub user_account_management: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            user_login: 40,
            sudo_command: 15,
            file_modified: 20,
            service_status_change: 15,
            user_account_management: 10,
        }
    }
}

impl Mix {
    /// A mix of a single kind.
    pub fn only(kind: EventKind) -> Mix {
        let mut mix = Mix {
            user_login: 0,
            sudo_command: 0,
            file_modified: 0,
            service_status_change: 0,
            user_account_management: 0,
        };
        *mix.weight_mut(kind) = 1;
        mix
    }

    /// The weight of one kind.
    pub fn weight(&self, kind: EventKind) -> u32 {
        match kind {
            EventKind::UserLogin => self.user_login,
            EventKind::SudoCommand => self.sudo_command,
            EventKind::FileModified => self.file_modified,
            EventKind::ServiceStatusChange => self.service_status_change,
            EventKind::UserAccountManagement => self.user_account_management,
        }
    }

    fn weight_mut(&mut self, kind: EventKind) -> &mut u32 {
        match kind {
            EventKind::UserLogin => &mut self.user_login,
            EventKind::SudoCommand => &mut self.sudo_command,
            EventKind::FileModified => &mut self.file_modified,
            EventKind::ServiceStatusChange => &mut self.service_status_change,
            EventKind::UserAccountManagement => &mut self.user_account_management,
        }
    }

    /// Sum of all weights.
    pub fn total(&self) -> u64 {
        EventKind::ALL
            .into_iter()
            .map(|k| u64::from(self.weight(k)))
            .sum()
    }

    /// The expected share (0..=1) of one kind among non-burst events.
    pub fn share(&self, kind: EventKind) -> f64 {
        match self.total() {
            0 => 0.0,
            total => f64::from(self.weight(kind)) / total as f64,
        }
    }
}

impl FromStr for Mix {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Mix, ConfigError> {
        let mut mix = Mix {
            user_login: 0,
            sudo_command: 0,
            file_modified: 0,
            service_status_change: 0,
            user_account_management: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').ok_or_else(|| {
                ConfigError::new(
                    "mix",
                    format!("'{part}' is not of the form event_type=weight"),
                )
            })?;
            let kind = EventKind::parse(name).ok_or_else(|| {
                ConfigError::new(
                    "mix",
                    format!(
                        "unknown event type '{}' (known: user_login, sudo_command, file_modified, \
                         service_status_change, user_account_management)",
                        name.trim()
                    ),
                )
            })?;
            *mix.weight_mut(kind) = weight.trim().parse().map_err(|_| {
                ConfigError::new(
                    "mix",
                    format!("weight '{}' is not a non-negative integer", weight.trim()),
                )
            })?;
        }
        if mix.total() == 0 {
            return Err(ConfigError::new(
                "mix",
                "at least one weight must be positive",
            ));
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for kind in EventKind::ALL {
            if self.weight(kind) > 0 {
                if !first {
                    f.write_str(",")?;
                }
                write!(f, "{kind}={}", self.weight(kind))?;
                first = false;
            }
        }
        Ok(())
    }
}

/// How a malformed item is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MalformedKind {
    /// Not JSON at all (truncated, or single-quoted).
    InvalidJson,
    /// A required field is missing.
    MissingField,
    /// `event_id` is not a UUID.
    BadEventId,
    /// `severity` is not INFO/WARNING/ERROR/CRITICAL.
    BadSeverity,
    /// A field has the wrong JSON type.
    WrongType,
    /// A string field is longer than [`auditflow_core::event::MAX_FIELD_LEN`].
    OversizeField,
    /// Valid JSON with U+0000 in a string, which no store can keep
    /// (see [`auditflow_core::nul`]).
    NulCharacter,
}

impl MalformedKind {
    /// All kinds.
    pub const ALL: [MalformedKind; 7] = [
        MalformedKind::InvalidJson,
        MalformedKind::MissingField,
        MalformedKind::BadEventId,
        MalformedKind::BadSeverity,
        MalformedKind::WrongType,
        MalformedKind::OversizeField,
        MalformedKind::NulCharacter,
    ];
}

/// One generated item.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A valid event in the generator's format.
    Valid(GeneratedEvent),
    /// A body an ingest endpoint must refuse.
    Malformed {
        /// The raw item text (possibly not JSON).
        body: String,
        /// How it is broken.
        kind: MalformedKind,
    },
}

impl Item {
    /// The item's JSON text, as it goes on the wire.
    pub fn body(&self) -> String {
        let mut out = Vec::new();
        self.write_body(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Appends the item's wire text to `out` (without an intermediate
    /// string per item).
    pub fn write_body(&self, out: &mut Vec<u8>) {
        match self {
            Item::Valid(event) => event.write_json(out),
            Item::Malformed { body, .. } => out.extend_from_slice(body.as_bytes()),
        }
    }

    /// True for [`Item::Valid`].
    pub fn is_valid(&self) -> bool {
        matches!(self, Item::Valid(_))
    }

    /// The `event_id` of a valid item.
    pub fn event_id(&self) -> Option<Uuid> {
        match self {
            Item::Valid(event) => Some(event.event_id),
            Item::Malformed { .. } => None,
        }
    }
}

/// What the factory produces.
#[derive(Debug, Clone, PartialEq)]
pub struct FactoryConfig {
    /// Relative weights of the event types.
    pub mix: Mix,
    /// Share (0..=1) of `user_login` events that are failures.
    pub login_failure_ratio: f64,
    /// Share (0..=1) of `file_modified` events on a sensitive path.
    pub sensitive_file_ratio: f64,
    /// Share (0..=1) of items that are malformed.
    pub malformed_ratio: f64,
    /// Probability (0..=1), per item, of starting a failed-login burst.
    pub burst_probability: f64,
    /// Smallest burst (at least 3, so that `ANLY-SEC-001` fires).
    pub burst_min: u32,
    /// Largest burst.
    pub burst_max: u32,
}

impl Default for FactoryConfig {
    fn default() -> Self {
        FactoryConfig {
            mix: Mix::default(),
            login_failure_ratio: 0.25,
            sensitive_file_ratio: 0.1,
            malformed_ratio: 0.0,
            burst_probability: 0.0,
            burst_min: 3,
            burst_max: 6,
        }
    }
}

impl FactoryConfig {
    /// Checks ranges: ratios in 0..=1, `3 <= burst_min <= burst_max`, a positive mix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("login_failure_ratio", self.login_failure_ratio),
            ("sensitive_file_ratio", self.sensitive_file_ratio),
            ("malformed_ratio", self.malformed_ratio),
            ("burst_probability", self.burst_probability),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::new(
                    field,
                    format!("{value} is not between 0 and 1"),
                ));
            }
        }
        if self.burst_min < 3 {
            return Err(ConfigError::new(
                "burst_min",
                "a burst needs at least 3 failed logins to fire ANLY-SEC-001",
            ));
        }
        if self.burst_max < self.burst_min {
            return Err(ConfigError::new("burst_max", "must be at least burst_min"));
        }
        if self.mix.total() == 0 {
            return Err(ConfigError::new(
                "mix",
                "at least one weight must be positive",
            ));
        }
        Ok(())
    }
}

/// Formats a timestamp as the generator does: RFC 3339, microseconds, `Z`.
pub fn format_timestamp(ts: &DateTime<Utc>) -> String {
    Rfc3339Micros(ts).to_string()
}

/// A seeded source of [`Item`]s.
#[derive(Debug, Clone)]
pub struct Factory {
    rng: ChaCha8Rng,
    config: FactoryConfig,
    kinds: WeightedIndex<u32>,
    pending: VecDeque<GeneratedEvent>,
    bursts: u64,
}

impl Factory {
    /// A factory for `config`, seeded with `seed`.
    pub fn new(config: FactoryConfig, seed: u64) -> Result<Factory, ConfigError> {
        config.validate()?;
        let weights: Vec<u32> = EventKind::ALL
            .into_iter()
            .map(|k| config.mix.weight(k))
            .collect();
        let kinds =
            WeightedIndex::new(weights).map_err(|e| ConfigError::new("mix", e.to_string()))?;
        Ok(Factory {
            rng: ChaCha8Rng::seed_from_u64(seed),
            config,
            kinds,
            pending: VecDeque::new(),
            bursts: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FactoryConfig {
        &self.config
    }

    /// How many failed-login bursts have been started.
    pub fn bursts(&self) -> u64 {
        self.bursts
    }

    /// The next item. The rest of a started burst comes first; otherwise the
    /// item is malformed with `malformed_ratio`, starts a burst with
    /// `burst_probability`, or is one event drawn from the mix.
    pub fn next_item(&mut self, now: DateTime<Utc>) -> Item {
        if let Some(event) = self.pending.pop_front() {
            return Item::Valid(event);
        }
        if self.config.malformed_ratio > 0.0 && self.rng.random_bool(self.config.malformed_ratio) {
            return self.malformed(now);
        }
        if self.config.burst_probability > 0.0
            && self.rng.random_bool(self.config.burst_probability)
        {
            self.pending = self.burst(now).into();
            if let Some(event) = self.pending.pop_front() {
                return Item::Valid(event);
            }
        }
        let kind = EventKind::ALL[self.kinds.sample(&mut self.rng)];
        Item::Valid(self.event(kind, now))
    }

    /// A failed-login burst: `burst_min..=burst_max` `user_login` failures for
    /// one user and host, 1 to 5 seconds apart, the last one at `now`.
    pub fn burst(&mut self, now: DateTime<Utc>) -> Vec<GeneratedEvent> {
        self.bursts += 1;
        let size = self
            .rng
            .random_range(self.config.burst_min..=self.config.burst_max);
        let user = self.pick(USERS);
        let host = self.pick(HOSTNAMES);
        let ip = self.ip_address();
        let protocol = self.pick(PROTOCOLS);
        let mut offsets = Vec::with_capacity(size as usize);
        let mut back = ChronoDuration::zero();
        for _ in 0..size {
            offsets.push(back);
            back += ChronoDuration::milliseconds(self.rng.random_range(1_000..=5_000));
        }
        offsets
            .into_iter()
            .rev()
            .map(|offset| {
                let ts = now - offset;
                let reason = self.pick(LOGIN_FAILURE_REASONS);
                self.envelope(
                    EventKind::UserLogin,
                    ts,
                    host,
                    user,
                    "WARNING",
                    "FAILURE",
                    Details::LoginFailure {
                        reason,
                        ip_address: ip,
                        protocol,
                    },
                )
            })
            .collect()
    }

    /// One valid event of `kind` at `now`.
    pub fn event(&mut self, kind: EventKind, now: DateTime<Utc>) -> GeneratedEvent {
        let host = self.pick(HOSTNAMES);
        let user = self.pick(USERS);
        let (severity, result, details) = match kind {
            EventKind::UserLogin => {
                let ip = self.ip_address();
                let protocol = self.pick(PROTOCOLS);
                if self.rng.random_bool(self.config.login_failure_ratio) {
                    let reason = self.pick(LOGIN_FAILURE_REASONS);
                    (
                        "WARNING",
                        "FAILURE",
                        Details::LoginFailure {
                            reason,
                            ip_address: ip,
                            protocol,
                        },
                    )
                } else {
                    (
                        "INFO",
                        "SUCCESS",
                        Details::LoginSuccess {
                            ip_address: ip,
                            protocol,
                        },
                    )
                }
            }
            EventKind::SudoCommand => {
                let (command, risky) = SUDO_COMMANDS[self.rng.random_range(0..SUDO_COMMANDS.len())];
                if self.rng.random_bool(0.1) {
                    (
                        "ERROR",
                        "FAILURE",
                        Details::SudoRefused {
                            command,
                            run_as: "root",
                            reason: "user is not in the sudoers file",
                        },
                    )
                } else {
                    (
                        if risky { "WARNING" } else { "INFO" },
                        "SUCCESS",
                        Details::Sudo {
                            command,
                            run_as: "root",
                        },
                    )
                }
            }
            EventKind::FileModified => {
                let sensitive = self.rng.random_bool(self.config.sensitive_file_ratio);
                let path = if sensitive {
                    SENSITIVE_PATHS[self.rng.random_range(0..SENSITIVE_PATHS.len())]
                } else {
                    self.pick(ORDINARY_PATHS)
                };
                let old_checksum = self.rng.random::<u32>();
                let new_checksum = self.rng.random::<u32>();
                let size_change_bytes: i64 = self.rng.random_range(-4096..=4096);
                (
                    if sensitive { "CRITICAL" } else { "INFO" },
                    "MODIFIED",
                    Details::FileModified {
                        resource: path,
                        old_checksum,
                        new_checksum,
                        size_change_bytes,
                    },
                )
            }
            EventKind::ServiceStatusChange => {
                let service = self.pick(SERVICES);
                if self.rng.random_bool(0.5) {
                    (
                        "INFO",
                        "STARTED",
                        Details::ServiceStatus {
                            service_name: service,
                        },
                    )
                } else {
                    let severity = if self.rng.random_bool(0.5) {
                        "WARNING"
                    } else {
                        "ERROR"
                    };
                    (
                        severity,
                        "STOPPED",
                        Details::ServiceStatus {
                            service_name: service,
                        },
                    )
                }
            }
            EventKind::UserAccountManagement => {
                let target = self.pick(NEW_ACCOUNTS);
                let privileged = self.rng.random_bool(0.2);
                let groups: &'static [&'static str] = if privileged {
                    &["users", "sudo"]
                } else {
                    &["users"]
                };
                (
                    if privileged { "WARNING" } else { "INFO" },
                    "CREATED",
                    Details::AccountCreated {
                        target_user: target,
                        groups,
                    },
                )
            }
        };
        self.envelope(kind, now, host, user, severity, result, details)
    }

    /// A malformed item of a random [`MalformedKind`].
    pub fn malformed(&mut self, now: DateTime<Utc>) -> Item {
        let kind = MalformedKind::ALL[self.rng.random_range(0..MalformedKind::ALL.len())];
        self.malformed_of(kind, now)
    }

    /// A malformed item of `kind`.
    pub fn malformed_of(&mut self, kind: MalformedKind, now: DateTime<Utc>) -> Item {
        let event_kind = EventKind::ALL[self.kinds.sample(&mut self.rng)];
        let mut value = self.event(event_kind, now).to_value();
        let body = match kind {
            MalformedKind::InvalidJson => {
                let text = value.to_string();
                if self.rng.random_bool(0.5) {
                    // A proper prefix of an object is never valid JSON, and
                    // stays invalid when wrapped in a batch array.
                    let mut cut = self.rng.random_range(1..text.len());
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text[..cut.max(1)].to_string()
                } else {
                    text.replace('"', "'")
                }
            }
            MalformedKind::MissingField => {
                const REQUIRED: [&str; 7] = [
                    "timestamp",
                    "severity",
                    "source_service",
                    "server_hostname",
                    "event_type",
                    "user_id",
                    "action_result",
                ];
                let field = REQUIRED[self.rng.random_range(0..REQUIRED.len())];
                if let Some(obj) = value.as_object_mut() {
                    obj.shift_remove(field);
                }
                value.to_string()
            }
            MalformedKind::BadEventId => {
                let id = value
                    .get("event_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let bad = match self.rng.random_range(0..3) {
                    0 => "not-a-uuid".to_string(),
                    1 => id.chars().take(35).collect(),
                    _ => id.replacen(|c: char| c.is_ascii_hexdigit(), "z", 1),
                };
                value["event_id"] = json!(bad);
                value.to_string()
            }
            MalformedKind::BadSeverity => {
                const BAD: [&str; 5] = ["LOUD", "DEBUG", "", "informational", "sev-1"];
                value["severity"] = json!(BAD[self.rng.random_range(0..BAD.len())]);
                value.to_string()
            }
            MalformedKind::WrongType => {
                let (field, bad) = match self.rng.random_range(0..6) {
                    0 => ("user_id", json!(42)),
                    1 => ("timestamp", json!(1_764_000_000)),
                    2 => ("severity", json!(3)),
                    3 => ("details", json!("not an object")),
                    4 => ("event_type", json!(true)),
                    _ => ("event_id", json!(12345)),
                };
                value[field] = bad;
                value.to_string()
            }
            MalformedKind::OversizeField => {
                const FIELDS: [&str; 4] = ["user_id", "server_hostname", "event_type", "resource"];
                let field = FIELDS[self.rng.random_range(0..FIELDS.len())];
                let len = self.rng.random_range(
                    auditflow_core::event::MAX_FIELD_LEN + 1
                        ..=auditflow_core::event::MAX_FIELD_LEN * 2,
                );
                value[field] = json!("A".repeat(len));
                value.to_string()
            }
            MalformedKind::NulCharacter => {
                if self.rng.random_bool(0.5) {
                    value["user_id"] =
                        json!(format!("{}\u{0}", value["user_id"].as_str().unwrap_or("u")));
                } else {
                    value["details"]["note"] = json!("truncated\u{0}here");
                }
                value.to_string()
            }
        };
        Item::Malformed { body, kind }
    }

    #[allow(clippy::too_many_arguments)]
    fn envelope(
        &mut self,
        kind: EventKind,
        ts: DateTime<Utc>,
        host: &'static str,
        user: &'static str,
        severity: &'static str,
        result: &'static str,
        details: Details,
    ) -> GeneratedEvent {
        GeneratedEvent {
            event_id: uuid::Builder::from_random_bytes(self.rng.random()).into_uuid(),
            timestamp: ts,
            source_service: SOURCE_SERVICE,
            server_hostname: host,
            event_type: kind,
            severity,
            user_id: user,
            action_result: result,
            details,
        }
    }

    fn ip_address(&mut self) -> Ipv4Addr {
        match self.rng.random_range(0..3) {
            0 => Ipv4Addr::new(192, 168, 1, self.rng.random_range(2..=254)),
            1 => {
                let third = self.rng.random();
                Ipv4Addr::new(10, 0, third, self.rng.random_range(2..=254))
            }
            _ => Ipv4Addr::new(203, 0, 113, self.rng.random_range(2..=254)),
        }
    }

    fn pick(&mut self, pool: &[&'static str]) -> &'static str {
        // Pools are non-empty constants.
        pool[self.rng.random_range(0..pool.len())]
    }
}
