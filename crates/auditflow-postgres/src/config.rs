//! [`PgConfig`]: where the database is and how calls are bounded.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::PgError;

/// Configuration of the PostgreSQL backends. Every field has a default, so
/// `{}` (or a partial table) deserializes; durations use humantime (`5s`,
/// `500ms`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgConfig {
    /// Connection URL (libpq style, `postgres://user:password@host:port/db`,
    /// with optional `?sslmode=disable&...` parameters; TLS is not
    /// supported). Default `postgres://postgres@127.0.0.1:5432/auditflow`.
    pub url: String,
    /// Schema holding AuditFlow's tables; created by the migrations. A plain
    /// lower-case identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes).
    /// Default `public`.
    pub schema: String,
    /// Most connections the pool opens. Default 16.
    pub pool_size: usize,
    /// Server-side `statement_timeout` of every connection. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Bound on opening a connection, and on waiting for a free one from the
    /// pool. Default 3 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Apply pending migrations when connecting. Default true.
    pub migrate_on_start: bool,
    /// `application_name` of the connections (visible in
    /// `pg_stat_activity`). Default `auditflow`.
    pub application_name: String,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            url: "postgres://postgres@127.0.0.1:5432/auditflow".into(),
            schema: "public".into(),
            pool_size: 16,
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            migrate_on_start: true,
            application_name: "auditflow".into(),
        }
    }
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &redact_url(&self.url))
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("migrate_on_start", &self.migrate_on_start)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// The URL with any password replaced by `***` (for logs).
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_string(),
    }
}

/// True for names usable unquoted as a schema (and in `search_path`).
fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

impl PgConfig {
    /// Checks the fields and builds the client configuration: the URL plus
    /// `application_name`, the connect timeout and, as startup options,
    /// `statement_timeout`, `idle_in_transaction_session_timeout`,
    /// `search_path` (the schema) and `TimeZone=UTC`.
    pub fn client_config(&self) -> Result<tokio_postgres::Config, PgError> {
        if !valid_schema(&self.schema) {
            return Err(PgError::Config(format!(
                "schema `{}` must match [a-z_][a-z0-9_]* (at most 63 bytes)",
                self.schema
            )));
        }
        if self.pool_size == 0 {
            return Err(PgError::Config("pool_size must be at least 1".into()));
        }
        if self.connect_timeout.is_zero() {
            return Err(PgError::Config("connect_timeout must be positive".into()));
        }
        let mut config: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e| PgError::Config(format!("bad url `{}`: {e}", redact_url(&self.url))))?;
        let mut options = config.get_options().unwrap_or_default().to_string();
        let statement_ms = self.statement_timeout.as_millis();
        let idle_ms = self.call_timeout().as_millis().max(10_000);
        for option in [
            format!("-c statement_timeout={statement_ms}"),
            format!("-c idle_in_transaction_session_timeout={idle_ms}"),
            format!("-c search_path={}", self.schema),
            "-c TimeZone=UTC".to_string(),
        ] {
            if !options.is_empty() {
                options.push(' ');
            }
            options.push_str(&option);
        }
        config
            .options(&options)
            .application_name(&self.application_name)
            .connect_timeout(self.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        Ok(config)
    }

    /// Bound on one whole call (waiting for a connection, then up to two
    /// statements' worth of server time): `connect_timeout + 2 *
    /// statement_timeout` (statement timeout 0 counts as 30 s).
    pub fn call_timeout(&self) -> Duration {
        let statement = if self.statement_timeout.is_zero() {
            Duration::from_secs(30)
        } else {
            self.statement_timeout
        };
        self.connect_timeout + statement * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_deserialize_from_an_empty_table() {
        let config: PgConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, PgConfig::default());
        assert_eq!(config.pool_size, 16);
        assert_eq!(config.schema, "public");
        assert_eq!(config.statement_timeout, Duration::from_secs(5));
        assert_eq!(config.connect_timeout, Duration::from_secs(3));
        assert!(config.migrate_on_start);
        let partial: PgConfig =
            serde_json::from_str(r#"{"statement_timeout": "250ms", "schema": "af"}"#).unwrap();
        assert_eq!(partial.statement_timeout, Duration::from_millis(250));
        assert_eq!(partial.schema, "af");
        assert!(serde_json::from_str::<PgConfig>(r#"{"bogus": 1}"#).is_err());
    }

    #[test]
    fn client_config_carries_timeouts_schema_and_name() {
        let config = PgConfig {
            url: "postgres://u:secret@db.example:6543/audit?options=-c%20work_mem%3D8MB".into(),
            schema: "af_1".into(),
            application_name: "af-test".into(),
            ..PgConfig::default()
        };
        let pg = config.client_config().unwrap();
        let options = pg.get_options().unwrap();
        assert!(options.starts_with("-c work_mem=8MB "), "{options}");
        assert!(options.contains("-c statement_timeout=5000"), "{options}");
        assert!(options.contains("-c search_path=af_1"), "{options}");
        assert_eq!(pg.get_application_name(), Some("af-test"));
        assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(config.call_timeout(), Duration::from_secs(13));
    }

    #[test]
    fn bad_schema_names_and_sizes_are_refused() {
        for schema in ["", "Public", "a-b", "1abc", "a b", "x\"; drop"] {
            let config = PgConfig {
                schema: schema.into(),
                ..PgConfig::default()
            };
            assert!(config.client_config().is_err(), "{schema:?}");
        }
        let config = PgConfig {
            pool_size: 0,
            ..PgConfig::default()
        };
        assert!(config.client_config().is_err());
    }

    #[test]
    fn debug_output_hides_passwords() {
        let config = PgConfig {
            url: "postgres://bob:hunter2@db:5432/x".into(),
            ..PgConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://bob:***@db:5432/x"), "{shown}");
        assert_eq!(
            redact_url("postgres://bob@db/x"),
            "postgres://bob@db/x",
            "nothing to hide"
        );
    }
}
