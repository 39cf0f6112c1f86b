//! The spans of one event's trace (see docs/operations.md, "Traces").
//!
//! | span | kind | parent | ends |
//! | --- | --- | --- | --- |
//! | `ingest` | producer | the request's `traceparent`, else none (a new trace) | the broker confirmed (or refused) the event |
//! | `analyze` | consumer | the event message's `traceparent` | the event is acked (or dead-lettered) |
//! | `notify` | consumer | the alert message's `traceparent` (analyze's span) | the alert is acked (or dead-lettered) |
//! | `deliver` | internal | `notify` | the channel accepted or refused the alert |
//!
//! The only `tracing` fields are `event_id` / `alert_id` (which the log
//! lines inside a span take, with its `trace_id`) and `otel.kind`; every
//! other attribute and the status go straight to the OpenTelemetry span
//! ([`set`], [`fail`]), so the log layer never formats them.
//! Call these only when [`super::enabled`]: they cost a few allocations
//! per event.

use opentelemetry::trace::Status;
use opentelemetry::{Context, Value};
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
    let span =
        tracing::info_span!(target: super::TARGET, "ingest", event_id, otel.kind = "producer");
    start(&span, parent.clone());
    messaging(&span, system, "send", queue);
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
    let span =
        tracing::info_span!(target: super::TARGET, "analyze", event_id, otel.kind = "consumer");
    start(&span, propagation::extract(headers));
    messaging(&span, system, "process", queue);
    set(&span, "auditflow.delivery_count", i64::from(delivery_count));
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
    let span =
        tracing::info_span!(target: super::TARGET, "notify", alert_id, otel.kind = "consumer");
    start(&span, propagation::extract(headers));
    messaging(&span, system, "process", queue);
    set(&span, "auditflow.delivery_count", i64::from(delivery_count));
    span
}

/// The span of one alert's delivery to one channel, inside its `notify` span.
pub fn deliver(parent: &Span, channel: &str) -> Span {
    let span = tracing::info_span!(target: super::TARGET, parent: parent, "deliver");
    set(&span, "auditflow.channel", channel.to_string());
    span
}

/// Sets an attribute of `span` (nothing when tracing is off).
pub fn set(span: &Span, key: &'static str, value: impl Into<Value>) {
    span.set_attribute(key, value);
}

/// Marks `span` failed with `reason`.
pub fn fail(span: &Span, reason: &str) {
    span.set_status(Status::error(reason.to_string()));
}

/// Writes `span`'s context into message `headers` as `traceparent`.
pub fn inject(span: &Span, headers: &mut Headers) {
    propagation::inject(&span.context(), headers);
}

fn messaging(span: &Span, system: &'static str, operation: &'static str, queue: &str) {
    set(span, "messaging.system", system);
    set(span, "messaging.operation.type", operation);
    set(span, "messaging.destination.name", queue.to_string());
}

/// Sets the parent of a span just made, then starts it (see
/// [`super::remember_trace_id`]).
fn start(span: &Span, parent: Context) {
    // Only fails when the span is not an OpenTelemetry span (tracing off)
    // or already started; neither happens to a span just made here.
    let _ = span.set_parent(parent);
    super::remember_trace_id(span);
}
