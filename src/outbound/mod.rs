//! The one HTTP client for every outbound request: OAuth token and revocation calls,
//! webhook deliveries, and whatever later features send. Each request names the
//! [`Guard`] of its destination; the client refuses what the guard refuses, at the
//! URL (shape, IP literals) and in the resolver (every address a name resolves to).
//!
//! Built fail-closed: if a client cannot be built, the server does not start (there
//! is no fallback to an unguarded default client). Proxy environment variables
//! (`HTTPS_PROXY` …) are ignored; a proxy is used only when configured explicitly, and
//! then the vault resolves and checks each target itself before sending (the proxy
//! connects, so check-to-connect DNS changes are the proxy's to police).
use std::sync::Arc;
use std::time::Duration;

pub mod guard;

pub use guard::{Blocked, Guard, GuardedResolver, is_public};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("outbound_proxy: {0}")]
    Proxy(String),
    #[error("the outbound HTTP client could not be built: {0}")]
    Client(String),
}

/// Why a request was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The URL is not of an allowed shape (scheme, credentials …).
    #[error("the URL {0}")]
    Shape(String),
    #[error(transparent)]
    Blocked(#[from] Blocked),
    #[error("timed out")]
    Timeout,
    #[error("could not connect")]
    Connect,
}

/// The guarded client: one reqwest client for public destinations and one for
/// destinations allowed private addresses, sharing one configuration.
#[derive(Clone)]
pub struct Outbound {
    public_only: reqwest::Client,
    private_ok: reqwest::Client,
    /// With an explicit proxy, targets are resolved and checked before sending.
    proxied: bool,
}

impl Outbound {
    /// Builds both clients; `proxy` is the explicit `outbound_proxy`, if any.
    pub fn new(proxy: Option<&str>) -> Result<Self, BuildError> {
        let build = |allow_private: bool| -> Result<reqwest::Client, BuildError> {
            let mut builder = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .user_agent(concat!("credvault/", env!("CARGO_PKG_VERSION")));
            match proxy {
                Some(url) => {
                    let proxy =
                        reqwest::Proxy::all(url).map_err(|e| BuildError::Proxy(e.to_string()))?;
                    builder = builder.proxy(proxy);
                }
                None => {
                    let guard = Guard {
                        allow_http: true,
                        allow_private,
                    };
                    builder = builder.dns_resolver(Arc::new(GuardedResolver(guard)));
                }
            }
            builder
                .build()
                .map_err(|e| BuildError::Client(e.to_string()))
        };
        Ok(Self {
            public_only: build(false)?,
            private_ok: build(true)?,
            proxied: proxy.is_some(),
        })
    }

    /// Sends `request` if `guard` allows its destination, within `timeout`.
    pub async fn send(
        &self,
        mut request: reqwest::Request,
        guard: Guard,
        timeout: Duration,
    ) -> Result<reqwest::Response, SendError> {
        let url = guard
            .check_shape(request.url().as_str())
            .map_err(SendError::Shape)?;
        guard.check_literal(&url)?;
        if self.proxied {
            guard
                .check(url.as_str())
                .await
                .map_err(|why| SendError::Blocked(Blocked(why)))?;
        }
        *request.timeout_mut() = Some(timeout);
        crate::trace_context::inject(request.headers_mut());
        let client = if guard.allow_private {
            &self.private_ok
        } else {
            &self.public_only
        };
        client.execute(request).await.map_err(classify)
    }

    /// A request builder (to be sent with [`Outbound::send`]).
    pub fn request(&self, method: reqwest::Method, url: url::Url) -> reqwest::RequestBuilder {
        self.public_only.request(method, url)
    }
}

/// A reqwest failure, with a refusal by the resolver told apart from an outage.
fn classify(err: reqwest::Error) -> SendError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(blocked) = e.downcast_ref::<Blocked>() {
            return SendError::Blocked(blocked.clone());
        }
        source = e.source();
    }
    if err.is_timeout() {
        SendError::Timeout
    } else {
        SendError::Connect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_and_hostnames_outside_the_policy_are_blocked_before_connecting() {
        let out = Outbound::new(None).unwrap();
        let strict = Guard {
            allow_http: true,
            allow_private: false,
        };
        for url in [
            "http://127.0.0.1:9/",
            "http://[64:ff9b::7f00:1]:9/",
            "http://[::ffff:0:a9fe:a9fe]/",
            "http://localhost:9/",
        ] {
            let request = out
                .request(reqwest::Method::POST, url.parse().unwrap())
                .build()
                .unwrap();
            let err = out
                .send(request, strict, Duration::from_secs(2))
                .await
                .unwrap_err();
            assert!(
                matches!(err, SendError::Blocked(_)),
                "{url}: {err:?} should be blocked"
            );
            assert!(err.to_string().contains("address policy"), "{err}");
        }
        let https_only = Guard::default();
        let request = out
            .request(
                reqwest::Method::GET,
                "http://93.184.216.34/".parse().unwrap(),
            )
            .build()
            .unwrap();
        assert!(matches!(
            out.send(request, https_only, Duration::from_secs(1)).await,
            Err(SendError::Shape(_))
        ));
    }

    #[test]
    fn a_bad_proxy_fails_the_build() {
        assert!(matches!(
            Outbound::new(Some("::not a url::")),
            Err(BuildError::Proxy(_))
        ));
    }
}
