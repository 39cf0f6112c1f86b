//! `kind = "email"` channel settings and their checks.

use serde::{Deserialize, Serialize};

use super::template::Template;
use crate::channels::policy::ChannelResilience;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain SMTP (a relay on localhost, tests). Credentials only to loopback.
    None,
    /// Connect in plain, then `STARTTLS`, required: no mail or password is
    /// sent if the upgrade fails (submission, port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

impl TlsMode {
    /// The usual port of the mode.
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        }
    }
}

/// A password: shown as `********` by `Debug`, so logging a configuration
/// (or an error carrying one) never prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"********\"")
    }
}

/// The subject when none is configured.
pub const DEFAULT_SUBJECT: &str = "[AuditFlow {severity}] {name} on {host}";

fn default_subject() -> String {
    DEFAULT_SUBJECT.to_string()
}

/// One email channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Channel name (delivery records and metrics use it).
    pub name: String,
    /// SMTP server host name (also the name its TLS certificate must carry).
    pub host: String,
    /// SMTP port; 25, 587 or 465 by `tls` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `none`, `starttls` (default) or `tls`.
    #[serde(default)]
    pub tls: TlsMode,
    /// SMTP AUTH user; with `password` or `password_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// SMTP AUTH password (prefer `password_env`, which keeps it out of files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Environment variable holding the SMTP AUTH password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Sender, `alerts@example.com` or `AuditFlow <alerts@example.com>`.
    pub from: String,
    /// Recipients (at least one).
    pub to: Vec<String>,
    /// Subject template; placeholders in [`super::template::PLACEHOLDERS`].
    #[serde(default = "default_subject")]
    pub subject: String,
    /// This channel's resilience keys over `[resilience.email]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resilience: Option<ChannelResilience>,
}

/// Host names that are this machine: the only ones plain SMTP may carry a
/// password to.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl EmailConfig {
    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }

    /// The AUTH password, from `password` or the `password_env` variable;
    /// `None` without credentials.
    pub fn password(&self) -> Result<Option<Secret>, String> {
        match (&self.password, &self.password_env) {
            (Some(password), None) => Ok(Some(password.clone())),
            (None, Some(var)) => match std::env::var(var) {
                Ok(value) if !value.is_empty() => Ok(Some(Secret::new(value))),
                Ok(_) => Err(format!("password_env: ${var} is empty")),
                Err(_) => Err(format!("password_env: ${var} is not set")),
            },
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err("set password or password_env, not both".into()),
        }
    }

    /// Checks every setting; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("host: must not be empty".into());
        }
        if self.port == Some(0) {
            return Err("port: must not be 0".into());
        }
        self.from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| format!("from: '{}' is not an address: {e}", self.from))?;
        if self.to.is_empty() {
            return Err("to: at least one recipient".into());
        }
        for to in &self.to {
            to.parse::<lettre::message::Mailbox>()
                .map_err(|e| format!("to: '{to}' is not an address: {e}"))?;
        }
        Template::parse(&self.subject).map_err(|e| format!("subject: {e}"))?;
        // Whether the variable is set is checked when the channel is built,
        // by the processes that send mail: the others may not have it.
        let has_password = match (&self.password, &self.password_env) {
            (Some(_), Some(_)) => return Err("set password or password_env, not both".into()),
            (None, None) => false,
            _ => true,
        };
        match (&self.username, has_password) {
            (Some(_), false) => return Err("username: needs password or password_env".into()),
            (None, true) => return Err("password: needs username".into()),
            _ => {}
        }
        if has_password && self.tls == TlsMode::None && !is_loopback(&self.host) {
            return Err(format!(
                "tls: \"none\" would send the password in clear text to {}; \
                 use tls = \"starttls\" or \"tls\"",
                self.host
            ));
        }
        Ok(())
    }

    /// Replaces the password with `********` (for showing the configuration).
    pub fn mask_secrets(&mut self) {
        if self.password.is_some() {
            self.password = Some(Secret::new("********"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EmailConfig {
        EmailConfig {
            name: "mail".into(),
            host: "smtp.example.com".into(),
            port: None,
            tls: TlsMode::default(),
            username: None,
            password: None,
            password_env: None,
            from: "AuditFlow <alerts@example.com>".into(),
            to: vec!["oncall@example.com".into()],
            subject: DEFAULT_SUBJECT.into(),
            resilience: None,
        }
    }

    #[test]
    fn checks_name_the_key() {
        assert_eq!(config().validate(), Ok(()));
        assert_eq!(config().port(), 587);
        let check = |f: fn(&mut EmailConfig)| {
            let mut c = config();
            f(&mut c);
            c.validate().expect_err("invalid")
        };
        assert!(check(|c| c.to.clear()).starts_with("to:"));
        assert!(check(|c| c.from = "not an address".into()).starts_with("from:"));
        assert!(check(|c| c.subject = "{nope}".into()).starts_with("subject:"));
        assert!(check(|c| c.username = Some("u".into())).starts_with("username:"));
        assert!(check(|c| c.password = Some(Secret::new("p"))).starts_with("password:"));
        let mut unset = config();
        unset.username = Some("u".into());
        unset.password_env = Some("AUDITFLOW_TEST_SURELY_UNSET_VARIABLE".into());
        assert_eq!(unset.validate(), Ok(()), "checked where mail is sent");
        assert!(unset.password().expect_err("unset").contains("is not set"));
        let clear = check(|c| {
            c.username = Some("u".into());
            c.password = Some(Secret::new("p"));
            c.tls = TlsMode::None;
        });
        assert!(clear.starts_with("tls:"), "{clear}");
        let mut local = config();
        local.host = "127.0.0.1".into();
        local.tls = TlsMode::None;
        local.username = Some("u".into());
        local.password = Some(Secret::new("p"));
        assert_eq!(local.validate(), Ok(()));
    }

    #[test]
    fn the_password_never_shows() {
        let mut c = config();
        c.username = Some("u".into());
        c.password = Some(Secret::new("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
        c.mask_secrets();
        assert!(!toml::to_string(&c).expect("TOML").contains("hunter2"));
    }
}
