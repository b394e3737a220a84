//! A request over `max_message_bytes` is RESOURCE_EXHAUSTED, as gRPC's status table
//! says, not tonic's OUT_OF_RANGE: a layer rewrites that one status on the way out.
use std::task::{Context, Poll};

use futures::TryFutureExt;
use futures::future::MapOk;

/// What tonic says when a received message is over the decoding limit.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large";

/// Wraps a service; see the module docs.
#[derive(Debug, Clone)]
pub struct OversizeIsResourceExhausted<S>(pub S);

impl<S, B, R> tower_service::Service<http::Request<B>> for OversizeIsResourceExhausted<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = MapOk<S::Future, fn(http::Response<R>) -> http::Response<R>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.0.call(request).map_ok(rewrite::<R>)
    }
}

fn rewrite<R>(mut response: http::Response<R>) -> http::Response<R> {
    let headers = response.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| percent_decode(m.as_bytes()).starts_with(TONIC_TOO_LARGE));
    if too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static(
                "request%20message%20is%20larger%20than%20the%20server%27s%20max_message_bytes",
            ),
        );
    }
    response
}

/// `grpc-message` is percent-encoded (only `%XX` escapes, per the gRPC spec).
fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_oversize_status_is_rewritten() {
        let response = |status: &'static str, message: &'static str| {
            let mut r = http::Response::new(());
            r.headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static(status));
            r.headers_mut()
                .insert("grpc-message", http::HeaderValue::from_static(message));
            rewrite(r)
        };
        let fixed = response(
            "11",
            "Error,%20decoded%20message%20length%20too%20large:%20found%202000000%20bytes",
        );
        assert_eq!(fixed.headers()["grpc-status"], "8");
        let other = response("11", "page_size: out of range");
        assert_eq!(other.headers()["grpc-status"], "11");
        assert_eq!(percent_decode(b"a%20b%zz"), "a b%zz");
    }
}
