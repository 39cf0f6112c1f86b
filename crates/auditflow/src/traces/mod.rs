//! Traces: one OpenTelemetry trace per event, from ingest through analyze
//! to notify, exported over OTLP/HTTP when `[telemetry] otlp_endpoint` (or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) is set, and off otherwise.
//!
//! The context travels between processes as a W3C `traceparent` in the
//! broker message headers: ingest writes its span's context into each
//! event's message, analyze continues it and writes its own span's context
//! into each alert it publishes, notify continues that.
//!
//! The spans are `tracing` spans with target [`TARGET`], made into
//! OpenTelemetry spans by `tracing-opentelemetry`; only spans of that target
//! are exported (the long-lived `role` spans and library spans are not).
//! When tracing is off, [`enabled`] is false and the roles create no spans
//! at all, so an event costs what it did before.

mod config;
mod export;
pub mod propagation;
pub mod spans;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{filter_fn, Filtered};
use tracing_subscriber::registry::{Extensions, LookupSpan, Registry};
use tracing_subscriber::Layer;

pub use config::{TelemetryConfig, ENV_ENDPOINT, ENV_TRACES_ENDPOINT};
pub use export::TracesError;

/// Target of the spans that are exported.
pub const TARGET: &str = "auditflow::traces";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// How long a stopping process waits for its last spans to be exported: a
/// collector that does not answer must not keep it from exiting.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// True when spans are exported; the roles create spans only then.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns span creation on, once [`Exporter::layer`] is installed.
pub(crate) fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// The tracer provider of a process that exports traces. Keep it until the
/// process stops, then [`Exporter::shutdown`] it to flush the last spans.
pub struct Exporter {
    provider: SdkTracerProvider,
    url: String,
}

impl Exporter {
    /// Sets up export when configured (see [`TelemetryConfig::traces_url`]);
    /// `None` when tracing is off.
    pub fn from_config(
        config: &TelemetryConfig,
        roles: &str,
    ) -> Result<Option<Exporter>, TracesError> {
        let Some(url) = config.traces_url(|key| std::env::var(key).ok()) else {
            return Ok(None);
        };
        let provider = export::provider(config, &url, roles)?;
        Ok(Some(Exporter { provider, url }))
    }

    /// Where spans go.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A provider that exports nothing (its spans are still real spans with
    /// real ids): for tests of what the spans carry.
    #[cfg(test)]
    pub(crate) fn without_export() -> Exporter {
        Exporter {
            provider: SdkTracerProvider::builder().build(),
            url: String::new(),
        }
    }

    /// The layer that turns [`TARGET`] spans into exported spans (and warnings
    /// logged inside them into span events).
    pub fn layer<S>(&self) -> Filtered<impl Layer<S>, impl tracing_subscriber::layer::Filter<S>, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("auditflow"))
            // Our spans are held across awaits, not entered: busy/idle
            // times would say nothing.
            .with_tracked_inactivity(false)
            .with_filter(filter_fn(|metadata| {
                if metadata.is_span() {
                    metadata.target() == TARGET
                } else {
                    *metadata.level() <= Level::WARN
                }
            }))
    }

    /// Exports the spans still queued and stops the exporter; waits for
    /// the export (at most [`FLUSH_TIMEOUT`]) off the async runtime's threads.
    pub async fn shutdown(self) {
        set_enabled(false);
        let provider = self.provider;
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT))
                .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "flushing the last spans failed"),
            Err(e) => tracing::warn!(error = %e, "flushing the last spans failed"),
        }
    }
}

/// The trace id of a span, kept in its extensions for the log lines inside it.
struct TraceId(String);

/// Starts `span`'s OpenTelemetry span (its parent must be set by now) and
/// keeps its trace id where [`trace_id_of`] finds it. The trace id exists
/// only once the span has started, and `tracing-opentelemetry` keeps it
/// private, hence the copy.
pub(crate) fn remember_trace_id(span: &Span) {
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    if !span_context.is_valid() {
        return;
    }
    span.with_subscriber(|(id, dispatch)| {
        if let Some(data) = dispatch
            .downcast_ref::<Registry>()
            .and_then(|registry| registry.span(id))
        {
            data.extensions_mut()
                .insert(TraceId(span_context.trace_id().to_string()));
        }
    });
}

/// The trace id [`remember_trace_id`] kept in a span's extensions.
pub fn trace_id_of(extensions: &Extensions<'_>) -> Option<String> {
    extensions.get::<TraceId>().map(|id| id.0.clone())
}
