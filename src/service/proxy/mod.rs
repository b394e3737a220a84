//! Use without reveal: `ProxyService.Call` sends a caller's HTTP request to the
//! credential's provider with the credential put in, and hands back the provider's
//! answer. The caller never holds the secret. Every call is audited (method, path,
//! query names, status, latency), never the secret or the bodies.
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Caller, Vault, validate};
use crate::error::{Error, Result};
use crate::model::{AuditEntry, CredentialMeta, Kind, SecretPayload};
use crate::oauth::SealedProvider;
use crate::oauth::api::{ApiAccess, HOP_BY_HOP};
use crate::outbound::SendError;

mod request;
mod scrub;

use request::Checked;
pub use request::ProxyCall;

/// The provider's answer: status and headers now, the body as it arrives.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    body: reqwest::Response,
    /// Masks the credential wherever the provider echoed it.
    scrub: scrub::Scrubber,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Answer {
    /// The body's next piece, the credential masked; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            let next = self.body.chunk().await.map_err(|e| {
                Error::Unavailable(if e.is_timeout() {
                    "the provider's response did not finish in time".into()
                } else {
                    "the provider's response broke off".into()
                })
            })?;
            let Some(chunk) = next else {
                let rest = self.scrub.finish();
                return Ok((!rest.is_empty()).then_some(rest));
            };
            let safe = self.scrub.push(&chunk);
            if !safe.is_empty() {
                return Ok(Some(safe));
            }
        }
    }
}

/// The proxy: what it needs of the vault (credentials, providers, refresh, the
/// guarded client, the audit log).
pub struct Proxy {
    vault: Vault,
}

/// One attempt's outcome, for the audit record.
struct Sent {
    answer: std::result::Result<reqwest::Response, SendError>,
    latency: Duration,
}

impl Proxy {
    pub fn new(vault: Vault) -> Self {
        Self { vault }
    }

    /// The vault the proxy works in (for authorizing callers).
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Sends `call` with its credential put in. An OAuth token the provider refuses
    /// (401) is refreshed once (shared with concurrent calls, on any replica) and the
    /// call sent once more; any other status, 429 and 5xx included, is passed back
    /// as it came.
    pub async fn call(&self, caller: &Caller, call: ProxyCall) -> Result<Answer> {
        validate::bounded_text("request_id", &call.request_id, validate::MAX_TEXT_CHARS)?;
        let (id, request_id) = (call.credential_id.clone(), call.request_id.clone());
        let checked = call.check()?;
        let sealed = self.vault.sealed_for(caller, &id).await?;
        let provider = self.provider_of(&sealed.meta).await?;
        let api = api_of(&provider, &checked)?;
        let (meta, mut secret) = self.vault.usable_secret(sealed).await?;
        let mut sent = self.send(&provider, &api, &checked, &secret).await?;
        let mut retried = false;
        if meta.kind == Kind::OAuth2 && unauthorized(&sent) {
            match self.vault.refresh_refused(&meta).await {
                Ok((_, fresh)) => {
                    let again = self.send(&provider, &api, &checked, &fresh).await?;
                    sent.latency += again.latency;
                    sent.answer = again.answer;
                    secret = fresh;
                    retried = true;
                }
                Err(e) => {
                    tracing::warn!(credential = %meta.id, error = %e, "the provider refused the token and a refresh did not help; passing its answer back");
                }
            }
        }
        let audit = audit_entry(
            caller,
            &meta,
            &checked,
            &request_id,
            &sent,
            retried,
            self.vault.now(),
        );
        // Recorded before anything of the answer leaves: no record, no answer.
        self.vault.record(&audit).await?;
        answer(sent.answer, scrub::Scrubber::new(&secret))
    }

    async fn provider_of(&self, meta: &CredentialMeta) -> Result<SealedProvider> {
        self.vault
            .store
            .get_provider(&meta.tenant_id, &meta.provider)
            .await?
            .ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "the credential's provider {} is not registered: create it with its api settings",
                    meta.provider
                ))
            })
    }

    /// Builds and sends one attempt through the guarded client.
    async fn send(
        &self,
        provider: &SealedProvider,
        api: &ApiAccess,
        call: &Checked,
        secret: &SecretPayload,
    ) -> Result<Sent> {
        let config = &provider.provider.config;
        let mut url = request::target(api, call)?;
        let mut headers = call.headers.clone();
        request::inject(api, secret, &mut url, &mut headers)?;
        let mut outbound = self
            .vault
            .outbound
            .request(call.method.clone(), url)
            .body(call.body.clone())
            .build()
            .map_err(|_| Error::invalid("path", "does not make a valid request"))?;
        *outbound.headers_mut() = headers;
        let guard = self.vault.token_client.guard(config);
        let started = Instant::now();
        let answer = self
            .vault
            .outbound
            .send(outbound, guard, self.vault.settings.provider_timeout)
            .await;
        Ok(Sent {
            answer,
            latency: started.elapsed(),
        })
    }
}

/// The provider's API settings, and the path on its allow-list.
fn api_of(provider: &SealedProvider, call: &Checked) -> Result<ApiAccess> {
    let slug = &provider.provider.slug;
    let api = provider.provider.config.api.clone().ok_or_else(|| {
        Error::FailedPrecondition(format!(
            "provider {slug} has no api settings: set api.base_url with UpdateProvider"
        ))
    })?;
    if !api.allows_path(&call.path) {
        return Err(Error::PermissionDenied(format!(
            "path: provider {slug} allows calls under {} only",
            api.path_prefixes.join(", ")
        )));
    }
    request::check_key_slot(&api, call)?;
    Ok(api)
}

fn unauthorized(sent: &Sent) -> bool {
    matches!(&sent.answer, Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED)
}

/// The audit record of a call: method, path, the query's names (never its values),
/// the provider's status or why there was none, latency, and whether it was retried.
fn audit_entry(
    caller: &Caller,
    meta: &CredentialMeta,
    call: &Checked,
    request_id: &str,
    sent: &Sent,
    retried: bool,
    at: crate::clock::Millis,
) -> AuditEntry {
    let query: Vec<&str> = call.query.iter().map(|(k, _)| k.as_str()).collect();
    let (status, outcome, error) = match &sent.answer {
        Ok(r) => (
            Some(r.status().as_u16()),
            crate::model::audit::OUTCOME_OK,
            None,
        ),
        Err(e) => (None, refusal(e).0, Some(e.to_string())),
    };
    let detail = serde_json::json!({
        "method": call.method.as_str(),
        "path": call.path,
        "query": query,
        "status": status,
        "latencyMs": sent.latency.as_millis() as u64,
        "retried": retried,
        "error": error,
    });
    AuditEntry {
        outcome,
        detail: detail.to_string(),
        ..caller.audit(at, "proxy", &meta.id, request_id)
    }
    .for_user(&meta.user_id)
}

/// Why a call got no answer: the audit outcome (a status code's name) and the error
/// the caller gets.
fn refusal(e: &SendError) -> (&'static str, Error) {
    match e {
        SendError::Shape(_) | SendError::Blocked(_) => (
            "PERMISSION_DENIED",
            Error::PermissionDenied(format!(
                "the provider's API address is refused by the outbound policy: {e}"
            )),
        ),
        SendError::Timeout => (
            "UNAVAILABLE",
            Error::Unavailable("the provider did not answer in time".into()),
        ),
        SendError::Connect => (
            "UNAVAILABLE",
            Error::Unavailable("could not connect to the provider".into()),
        ),
    }
}

/// The most header bytes passed back (they share the first message with the body).
const MAX_ANSWER_HEADER_BYTES: usize = 32 * 1024;

/// The answer to pass back, or why there is none.
fn answer(
    sent: std::result::Result<reqwest::Response, SendError>,
    scrub: scrub::Scrubber,
) -> Result<Answer> {
    let response = sent.map_err(|e| refusal(&e).1)?;
    let mut room = MAX_ANSWER_HEADER_BYTES;
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), scrub.text(value.to_str().ok()?)))
        })
        .take_while(|(name, value)| {
            room = room.saturating_sub(name.len() + value.len());
            room > 0
        })
        .collect();
    Ok(Answer {
        status: response.status().as_u16(),
        headers,
        body: response,
        scrub,
    })
}
