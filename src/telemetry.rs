//! Logging and tracing setup. Nothing secret is ever passed to `tracing` by this
//! crate; the canary tests check that, at trace level, across the whole process.
//!
//! With `otlp_endpoint` set, every span also becomes an OpenTelemetry span — it joins
//! the caller's `traceparent` and its context goes on with outbound requests (see
//! [`crate::trace_context`]) — and finished spans are exported in batches over
//! OTLP/HTTP (protobuf) to `<otlp_endpoint>/v1/traces`. Without it there is no
//! OpenTelemetry layer at all: making those spans costs about a tenth of reveal
//! throughput at 64 in flight (docs/benchmarks.md), which nobody should pay for spans
//! that go nowhere.
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// How long one export may take before the batch is dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("otlp_endpoint: {0}")]
    Endpoint(String),
    #[error("the OTLP exporter could not be built: {0}")]
    Exporter(String),
}

/// The process's tracer provider; [`Telemetry::shutdown`] flushes what is queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports what is still queued (waiting up to the export timeout) and stops.
    /// Blocking: call it off the async workers (`spawn_blocking`).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "trace export did not finish");
        }
    }
}

/// Installs the global subscriber (`RUST_LOG` if set, else `level`) with logs on
/// stderr and, when `otlp_endpoint` is set, spans into OpenTelemetry and out to it;
/// must run inside the Tokio runtime that will carry the exports.
pub fn init(
    format: LogFormat,
    level: &str,
    otlp_endpoint: Option<&str>,
) -> Result<Telemetry, TelemetryError> {
    let provider = provider(otlp_endpoint)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Colours only for a terminal: redirected to a file, logs are plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(otlp_endpoint.is_some().then(|| layer(&provider)));
    // `try_init` fails only if a subscriber is already installed, which is fine.
    let _ = match format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json()).try_init(),
    };
    Ok(Telemetry { provider })
}

/// A tracer provider exporting to `otlp_endpoint` if given (else spans end where
/// they are made), and W3C trace context as the process's propagator.
pub fn provider(otlp_endpoint: Option<&str>) -> Result<SdkTracerProvider, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let resource = Resource::builder()
        .with_service_name("credvault")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = otlp_endpoint else {
        return Ok(builder.build());
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(export::Client::new()?)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint)?)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    Ok(builder.with_batch_exporter(exporter).build())
}

/// The subscriber layer that turns spans into OpenTelemetry spans of `provider`.
pub fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("credvault"))
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
}

/// `<endpoint>/v1/traces`, the OTLP/HTTP path, for an http(s) base URL.
fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let url = url::Url::parse(endpoint).map_err(|e| TelemetryError::Endpoint(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(TelemetryError::Endpoint(
            "must be an http(s) URL such as http://otel-collector:4318".into(),
        ));
    }
    Ok(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
}

/// The exporter's HTTP client: the SDK exports from its own thread, outside the
/// runtime, so each request is handed to the runtime that built the client.
mod export {
    use bytes::Bytes;
    use opentelemetry_http::{HttpClient, HttpError};

    use super::TelemetryError;

    #[derive(Debug)]
    pub struct Client {
        http: reqwest::Client,
        runtime: tokio::runtime::Handle,
    }

    impl Client {
        pub fn new() -> Result<Self, TelemetryError> {
            let runtime = tokio::runtime::Handle::try_current()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
            let http = reqwest::Client::builder()
                .timeout(super::EXPORT_TIMEOUT)
                .no_proxy()
                .build()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
            Ok(Self { http, runtime })
        }
    }

    #[async_trait::async_trait]
    impl HttpClient for Client {
        async fn send_bytes(
            &self,
            request: http::Request<Bytes>,
        ) -> Result<http::Response<Bytes>, HttpError> {
            let request = reqwest::Request::try_from(request)?;
            let http = self.http.clone();
            let sent = self.runtime.spawn(async move {
                let response = http.execute(request).await?;
                let mut answer = http::Response::builder().status(response.status());
                if let Some(headers) = answer.headers_mut() {
                    *headers = response.headers().clone();
                }
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>(answer.body(body))
            });
            Ok(sent.await???)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_an_http_base_url() {
        assert_eq!(
            traces_url("http://collector:4318/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        for bad in ["collector:4318", "ftp://collector", "not a url"] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }
}
