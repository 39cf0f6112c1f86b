//! The tracer provider: OTLP/HTTP protobuf export behind a batch processor.
//!
//! The batch processor queues finished spans (bounded; when full, spans are
//! dropped, never waited for) and exports them from its own thread with a
//! blocking HTTP client, so neither a slow nor an unreachable collector can
//! hold up a role: export errors are logged by the SDK and the spans lost.
//! Its queue size, batch size and delay follow the standard `OTEL_BSP_*`
//! variables (defaults 2048 spans, 512 per export, 5 s).

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use super::TelemetryConfig;

/// How long one export may take before it is given up (and its spans lost).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    /// The OTLP exporter rejected its settings.
    #[error("telemetry: cannot build the OTLP exporter for {url}: {source}")]
    Exporter {
        /// The traces URL.
        url: String,
        /// Why.
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// A provider exporting to `url`, its spans tagged with the process's `roles`.
pub fn provider(
    config: &TelemetryConfig,
    url: &str,
    roles: &str,
) -> Result<SdkTracerProvider, TracesError> {
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|source| TracesError::Exporter {
            url: url.to_string(),
            source,
        })?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("auditflow.roles", roles.to_string()))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}
