//! `[telemetry]`: where traces go, and how many.

use serde::{Deserialize, Serialize};

/// The standard OpenTelemetry variable for the collector's base URL
/// (`/v1/traces` is appended).
pub const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable for the full URL of the traces endpoint (used as is).
pub const ENV_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The OTLP/HTTP path of traces.
const TRACES_PATH: &str = "/v1/traces";

/// Trace export settings. Tracing is off unless an endpoint is configured
/// here or in the standard `OTEL_EXPORTER_OTLP_*` variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP receiver (`http://127.0.0.1:4318`: an
    /// OpenTelemetry collector, Jaeger, Tempo); spans are POSTed as protobuf
    /// to `<otlp_endpoint>/v1/traces`. Wins over the `OTEL_*` variables.
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces kept, 0.0 to 1.0. Parent-based: a span whose
    /// parent (from an HTTP request's or a message's `traceparent`) was
    /// sampled is kept, one whose parent was not is dropped, whatever this says.
    pub sample_ratio: f64,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            service_name: "auditflow".into(),
        }
    }
}

impl TelemetryConfig {
    /// The full URL spans are POSTed to, or `None` when tracing is off.
    /// `env` reads an environment variable (injected for tests).
    pub fn traces_url(&self, env: impl Fn(&str) -> Option<String>) -> Option<String> {
        let non_empty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        if let Some(base) = non_empty(self.otlp_endpoint.clone()) {
            return Some(with_traces_path(&base));
        }
        if let Some(url) = non_empty(env(ENV_TRACES_ENDPOINT)) {
            return Some(url);
        }
        non_empty(env(ENV_ENDPOINT)).map(|base| with_traces_path(&base))
    }

    /// Checks the values serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(format!(
                "telemetry.sample_ratio is {}; it must be between 0.0 and 1.0",
                self.sample_ratio
            ));
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            let scheme_ok = endpoint.starts_with("http://") || endpoint.starts_with("https://");
            if !endpoint.trim().is_empty() && !scheme_ok {
                return Err(format!(
                    "telemetry.otlp_endpoint '{endpoint}' is not an http:// or https:// URL \
                     (OTLP/HTTP; gRPC is not supported)"
                ));
            }
        }
        Ok(())
    }
}

/// `base` with `/v1/traces` appended, unless it already ends with it.
fn with_traces_path(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        base.to_string()
    } else {
        format!("{base}{TRACES_PATH}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn off_by_default() {
        assert_eq!(TelemetryConfig::default().traces_url(env_of(&[])), None);
    }

    #[test]
    fn the_config_key_is_a_base_url_and_wins_over_the_environment() {
        let config = TelemetryConfig {
            otlp_endpoint: Some("http://collector:4318/".into()),
            ..TelemetryConfig::default()
        };
        let env = env_of(&[(ENV_ENDPOINT, "http://other:4318")]);
        assert_eq!(
            config.traces_url(env).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
    }

    #[test]
    fn the_standard_variables_follow_the_otlp_rules() {
        let config = TelemetryConfig::default();
        let base = env_of(&[(ENV_ENDPOINT, "http://c:4318")]);
        assert_eq!(
            config.traces_url(base).as_deref(),
            Some("http://c:4318/v1/traces")
        );
        // The per-signal variable is the full URL, used as is, and wins.
        let full = env_of(&[
            (ENV_ENDPOINT, "http://c:4318"),
            (ENV_TRACES_ENDPOINT, "http://t:9999/custom"),
        ]);
        assert_eq!(
            config.traces_url(full).as_deref(),
            Some("http://t:9999/custom")
        );
        assert_eq!(config.traces_url(env_of(&[(ENV_ENDPOINT, " ")])), None);
    }

    #[test]
    fn validation_names_the_key() {
        let ratio = TelemetryConfig {
            sample_ratio: 1.5,
            ..TelemetryConfig::default()
        };
        assert!(ratio.validate().unwrap_err().contains("sample_ratio"));
        let grpc = TelemetryConfig {
            otlp_endpoint: Some("grpc://c:4317".into()),
            ..TelemetryConfig::default()
        };
        assert!(grpc.validate().unwrap_err().contains("otlp_endpoint"));
        assert!(TelemetryConfig::default().validate().is_ok());
    }
}
