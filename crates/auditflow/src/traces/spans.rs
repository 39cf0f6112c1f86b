//! The spans of one event's trace (see docs/operations.md, "Traces").
//!
//! | span | kind | parent | ends |
//! | --- | --- | --- | --- |
//! | `ingest` | producer | the request's `traceparent`, else none (a new trace) | the broker confirmed (or refused) the event |
//! | `analyze` | consumer | the event message's `traceparent` | the event is acked (or dead-lettered) |
//! | `notify` | consumer | the alert message's `traceparent` (analyze's span) | the alert is acked (or dead-lettered) |
//! | `deliver` | internal | `notify` | the channel accepted or refused the alert |
//!
//! Fields whose names hold a dot (`otel.kind`, `messaging.*`,
//! `auditflow.*`) are span attributes only; the log lines inside a span
//! take its dot-less fields (`event_id`, `alert_id`) and its `trace_id`.
//! Call these only when [`super::enabled`]: they cost an allocation or two
//! per event.

use opentelemetry::Context;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use auditflow_core::broker::Headers;

use super::propagation;

/// `messaging.system` of a broker URL (semantic conventions' values).
pub fn messaging_system(broker: &str) -> &'static str {
    if broker.starts_with("amqp") {
        "rabbitmq"
    } else {
        "auditflow_embedded"
    }
}

/// The span of one event accepted by ingest; `parent` is the HTTP
/// request's context (empty when it carried no `traceparent`).
pub fn ingest(event_id: &str, parent: &Context, queue: &str, system: &'static str) -> Span {
    let span = tracing::info_span!(
        target: super::TARGET,
        "ingest",
        event_id,
        otel.kind = "producer",
        otel.status_code = Empty,
        otel.status_description = Empty,
        messaging.system = system,
        messaging.operation.type = "send",
        messaging.destination.name = queue,
        auditflow.request.events = Empty,
    );
    set_parent(&span, parent.clone());
    span
}

/// The span of one delivered event in analyze, continuing the trace its
/// message carries (a new trace when it carries none).
pub fn analyze(
    headers: &Headers,
    event_id: &str,
    queue: &str,
    system: &'static str,
    delivery_count: u32,
) -> Span {
    let span = tracing::info_span!(
        target: super::TARGET,
        "analyze",
        event_id,
        otel.kind = "consumer",
        otel.status_code = Empty,
        otel.status_description = Empty,
        messaging.system = system,
        messaging.operation.type = "process",
        messaging.destination.name = queue,
        auditflow.delivery_count = delivery_count,
        auditflow.batch.events = Empty,
        auditflow.alerts = Empty,
    );
    set_parent(&span, propagation::extract(headers));
    span
}

/// The span of one delivered alert in notify, continuing the trace its
/// message carries.
pub fn notify(
    headers: &Headers,
    alert_id: &str,
    queue: &str,
    system: &'static str,
    delivery_count: u32,
) -> Span {
    let span = tracing::info_span!(
        target: super::TARGET,
        "notify",
        alert_id,
        otel.kind = "consumer",
        otel.status_code = Empty,
        otel.status_description = Empty,
        messaging.system = system,
        messaging.operation.type = "process",
        messaging.destination.name = queue,
        auditflow.delivery_count = delivery_count,
        auditflow.rule_id = Empty,
        auditflow.severity = Empty,
        auditflow.channels.delivered = Empty,
        auditflow.channels.failed = Empty,
    );
    set_parent(&span, propagation::extract(headers));
    span
}

/// The span of one alert's delivery to one channel, inside its `notify` span.
pub fn deliver(parent: &Span, channel: &str) -> Span {
    tracing::info_span!(
        target: super::TARGET,
        parent: parent,
        "deliver",
        otel.status_code = Empty,
        otel.status_description = Empty,
        auditflow.channel = channel,
        auditflow.result = Empty,
    )
}

/// Marks `span` failed with `reason`.
pub fn fail(span: &Span, reason: &str) {
    span.record("otel.status_code", "error");
    span.record("otel.status_description", reason);
}

/// Writes `span`'s context into message `headers` as `traceparent`.
pub fn inject(span: &Span, headers: &mut Headers) {
    propagation::inject(&span.context(), headers);
}

/// Sets the parent of a span just made, then starts it (see
/// [`super::remember_trace_id`]).
fn set_parent(span: &Span, parent: Context) {
    // Only fails when the span is not an OpenTelemetry span (tracing off)
    // or already started; neither happens to a span just made here.
    let _ = span.set_parent(parent);
    super::remember_trace_id(span);
}
