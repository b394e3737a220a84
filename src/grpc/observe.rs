//! Every gRPC call counted and traced: [`span`] opens a call's span (joined to the
//! caller's `traceparent`), and a layer times each call from request to its final
//! status (in the response headers, or in the trailers after a body or a stream),
//! keeps the in-flight gauge and records the status on the span. Only methods the
//! server has are named; any other path counts as `unknown`, so a client cannot grow
//! the label set.
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http_body::{Body, Frame};
use prost::Message;

use crate::metrics::{Metrics, RpcLabels};

const UNKNOWN: (&str, &str) = ("unknown", "unknown");

/// Every `/package.Service/Method` this server answers, split in two.
static METHODS: LazyLock<HashMap<String, (&'static str, &'static str)>> = LazyLock::new(|| {
    let mut methods = HashMap::new();
    for set in [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                // Leaked once per process: a fixed, small set of names.
                let service_name: &'static str = Box::leak(full.clone().into_boxed_str());
                for method in &service.method {
                    let name: &'static str = Box::leak(method.name().to_owned().into_boxed_str());
                    methods.insert(format!("/{full}/{name}"), (service_name, name));
                }
            }
        }
    }
    for service in [
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        methods.insert(
            format!("/{service}/ServerReflectionInfo"),
            (service, "ServerReflectionInfo"),
        );
    }
    methods
});

fn method_of(path: &str) -> (&'static str, &'static str) {
    METHODS.get(path).copied().unwrap_or(UNKNOWN)
}

/// The longest `x-request-id` recorded on a span.
pub const MAX_REQUEST_ID: usize = 128;

/// The span of one call: its method, the caller's trace as parent, the caller's
/// `x-request-id`; the tenant is recorded once the token is known, the outcome (the
/// status code's name) when the status is.
pub fn span(request: &http::Request<()>) -> tracing::Span {
    let (service, method) = method_of(request.uri().path());
    let span = tracing::info_span!(
        "rpc",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        tenant = tracing::field::Empty,
        request_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    crate::trace_context::adopt(&span, request.headers());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= MAX_REQUEST_ID);
    if let Some(id) = request_id {
        span.record("request_id", id);
    }
    span
}

/// gRPC's canonical code names, indexed by code.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

fn code_name(headers: &http::HeaderMap) -> Option<&'static str> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<usize>()
        .ok()?;
    Some(CODES.get(code).copied().unwrap_or("UNKNOWN"))
}

/// One call being counted; counted once, when its status is known or it is dropped.
struct Call {
    metrics: Arc<Metrics>,
    service: &'static str,
    method: &'static str,
    started: Instant,
    done: bool,
    /// The call's span, to record the outcome on (set once the call is polled in it).
    span: tracing::Span,
}

impl Call {
    fn start(metrics: Arc<Metrics>, path: &str) -> Self {
        let (service, method) = method_of(path);
        metrics.rpc_in_flight(service, 1);
        Self {
            metrics,
            service,
            method,
            started: Instant::now(),
            done: false,
            span: tracing::Span::none(),
        }
    }

    fn finish(&mut self, code: &'static str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let labels = RpcLabels {
            service: self.service,
            method: self.method,
            code,
        };
        self.span.record("outcome", code);
        self.metrics.rpc(&labels, self.started.elapsed());
        self.metrics.rpc_in_flight(self.service, -1);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // Dropped before a status: the client went away (or the drain cut it).
        self.finish("CANCELLED");
    }
}

/// The layer's service; see the module docs.
#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
    /// `None` counts nothing (the benchmark's comparison run).
    metrics: Option<Arc<Metrics>>,
}

impl<S> Observed<S> {
    pub fn layer(
        metrics: Option<Arc<Metrics>>,
    ) -> impl tower_layer::Layer<S, Service = Self> + Clone {
        tower_layer::layer_fn(move |inner| Self {
            inner,
            metrics: metrics.clone(),
        })
    }
}

type Response = http::Response<tonic::body::Body>;

impl<S, B> tower_service::Service<http::Request<B>> for Observed<S>
where
    S: tower_service::Service<http::Request<B>, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(metrics) = &self.metrics else {
            return Box::pin(self.inner.call(request));
        };
        let mut call = Call::start(metrics.clone(), request.uri().path());
        let response = self.inner.call(request);
        Box::pin(async move {
            // Polled inside the call's span (tonic enters it around the future).
            call.span = tracing::Span::current();
            let response = response.await?;
            if let Some(code) = code_name(response.headers()) {
                call.finish(code);
                return Ok(response);
            }
            Ok(response.map(|body| tonic::body::Body::new(ObservedBody { body, call })))
        })
    }
}

/// A response body that reports the call's status when its trailers pass.
struct ObservedBody {
    body: tonic::body::Body,
    call: Call,
}

impl Body for ObservedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(code_name) {
                    this.call.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish("INTERNAL"),
            Poll::Ready(None) => this.call.finish("UNKNOWN"),
            Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_are_named_and_others_are_unknown() {
        assert_eq!(
            method_of("/credvault.v1.CredentialService/RevealCredential"),
            ("credvault.v1.CredentialService", "RevealCredential")
        );
        assert_eq!(
            method_of("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(
            method_of("/credvault.v1.CredentialService/Made-Up"),
            UNKNOWN
        );
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(code_name(&headers), Some("NOT_FOUND"));
    }
}
