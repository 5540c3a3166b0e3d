//! OpenTelemetry: exporting the host's spans over OTLP, and carrying trace context between
//! `traceparent` values (on messages and requests) and those spans.
//!
//! # Export
//! Spans are exported when the standard environment asks for it: `OTEL_EXPORTER_OTLP_ENDPOINT`
//! or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, or `OTEL_TRACES_EXPORTER=otlp`; never with
//! `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true`. The rest is read by the OpenTelemetry
//! SDK as usual: `OTEL_EXPORTER_OTLP_HEADERS` (for example an Application Insights or collector
//! key), `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME` (default `sagahost`),
//! `OTEL_RESOURCE_ATTRIBUTES` and the batch processor's `OTEL_BSP_*`. The protocol is OTLP over
//! HTTP with protobuf bodies, to `<endpoint>/v1/traces`.
//!
//! The exporter posts through the host's own `reqwest` (rustls with the bundled Mozilla roots)
//! rather than the OTLP crate's HTTP client features, which would pull in a second `reqwest` and
//! a second TLS stack. It uses the blocking client because the SDK's batch processor exports
//! from its own thread, outside any tokio runtime.
//!
//! # Trace context
//! With export on, each message's span continues the trace its `traceparent` names
//! ([`continue_trace`]), and what the host sends on (messages to the next step, retries,
//! compensations, partner requests) carries the id of the span that sent it
//! ([`traceparent_of`]): a saga is one trace with every step, request and retry in it. With
//! export off there is no span context, and callers make up the ids themselves.

use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{SpanExporter, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::traceparent::TraceParent;

/// The service name spans carry unless `OTEL_SERVICE_NAME` says otherwise.
const SERVICE_NAME: &str = "sagahost";
/// How long one export may take when `OTEL_EXPORTER_OTLP_TIMEOUT` does not say.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

/// Whether the environment asks for spans to be exported (see the module doc).
pub fn export_requested() -> bool {
    if env("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
        return false;
    }
    match env("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
        Some("none") => return false,
        Some("otlp") => return true,
        _ => {}
    }
    env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
}

/// A tracer provider exporting over OTLP/HTTP as the environment configures it.
pub fn tracer_provider() -> anyhow::Result<SdkTracerProvider> {
    let timeout = env("OTEL_EXPORTER_OTLP_TIMEOUT")
        .and_then(|ms| ms.trim().parse().ok())
        .map_or(EXPORT_TIMEOUT, Duration::from_millis);
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .context("building the OTLP HTTP client")?;
    let exporter = SpanExporter::builder()
        .with_http()
        .with_http_client(BlockingClient(client))
        .build()
        .context("configuring the OTLP span exporter from OTEL_EXPORTER_OTLP_*")?;
    let mut resource = Resource::builder();
    if env("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// [`HttpClient`] over the blocking `reqwest` client.
#[derive(Debug)]
struct BlockingClient(reqwest::blocking::Client);

#[async_trait]
impl HttpClient for BlockingClient {
    async fn send_bytes(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body.to_vec())
            .send()?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes()?;
        let mut answer = http::Response::builder().status(status).body(body)?;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}

/// Makes `span` continue the trace `parent` names. Call it before the span is first entered; it
/// does nothing when spans are not exported.
pub fn continue_trace(span: &tracing::Span, parent: &TraceParent) {
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        TraceFlags::new(parent.flags),
        true,
        TraceState::default(),
    );
    // Without the OpenTelemetry layer there is nothing to continue: the error says just that.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The `traceparent` that names `span`, when spans are exported; `None` otherwise.
pub fn traceparent_of(span: &tracing::Span) -> Option<TraceParent> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| TraceParent {
        trace_id: span_context.trace_id().to_bytes(),
        span_id: span_context.span_id().to_bytes(),
        flags: span_context.trace_flags().to_u8(),
    })
}
