//! Logging: JSON lines when not on a terminal, human-readable on one.
//!
//! A JSON line is one flat object: `timestamp`, `level`, `target`,
//! `message`, the fields of every enclosing span (outermost first, so the
//! innermost `role` wins) and the event's own fields (`event_id`,
//! `alert_id`, `correlation_id`... where the code has them). Lines logged
//! outside any role's span carry the process's roles (`role` =
//! `ingest,analyze,...`), so every line says where it came from.
//!
//! Inside a traced span (see [`crate::traces`]) a line also carries the
//! trace's `trace_id` (32 hex digits), so logs and traces can be joined.
//! Span fields with a dot in their name (`otel.kind`, `messaging.*`...)
//! are span attributes for the trace, not log fields, and are left out.

use std::fmt;
use std::io::IsTerminal;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt as tfmt, EnvFilter};

use crate::config::{LogConfig, LogFormat};
use crate::traces::Exporter;

static PROCESS_ROLE: OnceLock<String> = OnceLock::new();

/// Names the roles this process runs, for lines outside any role's span.
pub fn set_process_role(roles: &str) {
    let _ = PROCESS_ROLE.set(roles.to_string());
}

/// Installs the global subscriber. `RUST_LOG` overrides `config.level`.
/// With an `exporter`, the trace spans are exported too.
pub fn init(config: &LogConfig, exporter: Option<&Exporter>) {
    let mut filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    if exporter.is_some() {
        // The trace spans must exist whatever the log level says (a span the
        // filter disables exists for no layer); they are INFO spans of their
        // own target, so this enables nothing else.
        if let Ok(directive) = format!("{}=info", crate::traces::TARGET).parse() {
            filter = filter.add_directive(directive);
        }
    }
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(exporter.map(|e| e.layer()));
    let result = if json {
        registry
            .with(
                tfmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(FlatJson)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(tfmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    match result {
        // The roles make trace spans only once something turns them into
        // OpenTelemetry spans.
        Ok(()) => crate::traces::set_enabled(exporter.is_some()),
        Err(e) => eprintln!("logging already initialised: {e}"),
    }
}

/// Formats an event as one flat JSON object (see the module docs).
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(auditflow_core::time::format_timestamp(&chrono::Utc::now())),
        );
        let metadata = event.metadata();
        line.insert("level".into(), Value::String(metadata.level().to_string()));
        line.insert("target".into(), Value::String(metadata.target().into()));
        if let Some(role) = PROCESS_ROLE.get() {
            line.insert("role".into(), Value::String(role.clone()));
        }
        let mut trace_id = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                // The span's fields, as JsonFields wrote them when it opened.
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(fields)) = serde_json::from_str(fields.as_str()) {
                        line.extend(fields.into_iter().filter(|(key, _)| !key.contains('.')));
                    }
                }
                if let Some(id) = crate::traces::trace_id_of(&extensions) {
                    trace_id = Some(id);
                }
            }
        }
        if let Some(id) = trace_id {
            line.insert("trace_id".into(), Value::String(id));
        }
        event.record(&mut JsonVisitor(&mut line));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Puts an event's fields into the line.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), serde_json::json!(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use auditflow_core::broker::{Headers, HEADER_TRACEPARENT};
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Collects the formatted lines.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;

        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    impl Lines {
        fn json(&self) -> Vec<Map<String, Value>> {
            let bytes = self.0.lock().expect("lines").clone();
            String::from_utf8(bytes)
                .expect("utf-8")
                .lines()
                .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
                .collect()
        }
    }

    #[test]
    fn lines_inside_a_traced_span_carry_its_trace_id_and_not_its_attributes() {
        let exporter = Exporter::without_export();
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry().with(exporter.layer()).with(
            tfmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(FlatJson)
                .with_writer(lines.clone()),
        );
        let mut headers = Headers::new();
        headers.insert(
            HEADER_TRACEPARENT.into(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        );
        let (fresh_trace, continued_parent) = tracing::subscriber::with_default(subscriber, || {
            let fresh = crate::traces::spans::ingest(
                "e-1",
                &opentelemetry::Context::new(),
                "audit_events",
                "rabbitmq",
            );
            fresh.in_scope(|| tracing::warn!("inside a new trace"));
            let continued =
                crate::traces::spans::analyze(&headers, "e-1", "audit_events", "rabbitmq", 1);
            continued.in_scope(|| tracing::warn!("inside a continued trace"));
            tracing::warn!("outside any trace");
            let parent = continued.context().span().span_context().trace_id();
            (
                fresh.context().span().span_context().trace_id().to_string(),
                parent.to_string(),
            )
        });
        let lines = lines.json();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["trace_id"], Value::String(fresh_trace.clone()));
        assert_eq!(fresh_trace.len(), 32);
        assert_eq!(lines[0]["event_id"], "e-1");
        assert!(
            lines[0].keys().all(|key| !key.contains('.')),
            "span attributes leaked into the log line: {:?}",
            lines[0]
        );
        assert_eq!(
            lines[1]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "analyze continues the trace of the message's traceparent"
        );
        assert_eq!(continued_parent, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(!lines[2].contains_key("trace_id"), "{:?}", lines[2]);
    }
}
