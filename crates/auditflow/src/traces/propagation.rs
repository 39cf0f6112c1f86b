//! W3C trace context in and out of broker message headers and HTTP requests.
//!
//! Only `traceparent` is carried (and `tracestate` when a caller sent one):
//! the W3C propagator is used directly rather than a global one, so nothing
//! else can be configured into the headers by accident.

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;

use auditflow_core::broker::Headers;

/// Writes `cx`'s span context into `headers` (`traceparent`). A context
/// without a valid span writes nothing.
pub fn inject(cx: &Context, headers: &mut Headers) {
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(cx, &mut HeadersCarrier(headers));
    }
}

/// The remote parent carried by message `headers`; an empty context when
/// there is none (or it is malformed), so the span starts a new trace.
pub fn extract(headers: &Headers) -> Context {
    TraceContextPropagator::new().extract(&HeadersReader(headers))
}

/// The remote parent carried by an HTTP request's `traceparent` header.
pub fn extract_http(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HttpReader(headers))
}

struct HeadersCarrier<'a>(&'a mut Headers);

impl Injector for HeadersCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

struct HeadersReader<'a>(&'a Headers);

impl Extractor for HeadersReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct HttpReader<'a>(&'a HeaderMap);

impl Extractor for HttpReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditflow_core::broker::HEADER_TRACEPARENT;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    #[test]
    fn a_span_context_survives_a_round_trip_through_message_headers() {
        let span_context = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
            SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(span_context.clone());
        let mut headers = Headers::new();
        inject(&cx, &mut headers);
        assert_eq!(
            headers.get(HEADER_TRACEPARENT).map(String::as_str),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        let back = extract(&headers);
        assert_eq!(back.span().span_context(), &span_context);
    }

    #[test]
    fn no_span_no_header_and_garbage_is_a_new_trace() {
        let mut headers = Headers::new();
        inject(&Context::new(), &mut headers);
        assert!(headers.is_empty());
        headers.insert(HEADER_TRACEPARENT.into(), "not-a-traceparent".into());
        assert!(!extract(&headers).span().span_context().is_valid());
    }
}
