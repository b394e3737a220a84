//! W3C trace context (`traceparent`, `tracestate`): taken from an incoming gRPC call's
//! metadata or an HTTP request's headers as the parent of the span that serves it,
//! and put on every outbound request (provider token calls, webhook deliveries) as
//! the context of the span that sends it. Without a subscriber that carries
//! OpenTelemetry spans ([`crate::telemetry`], which adds one with `otlp_endpoint`)
//! both are no-ops.
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes the caller's trace, if its headers carry a valid `traceparent`, the parent
/// of `span` (call it before the span is first entered).
pub fn adopt(span: &Span, headers: &http::HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Writes the current span's context into `headers` (replacing any there).
pub fn inject(headers: &mut http::HeaderMap) {
    let context = Span::current().context();
    if !context.span().span_context().is_valid() {
        return;
    }
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut HeaderInjector(headers))
    });
}
