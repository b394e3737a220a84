//! Wire types to domain types and back. Decoding errors name the field.
use std::collections::BTreeMap;

use prost_types::Timestamp;

use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::model::{
    Constraints, CredentialSummary, Kind, SecretPayload, ServiceToken, Status, Tenant,
};
use crate::oauth::api::ApiAccess;
use crate::oauth::forms::{AuthMode, BodyFormat, FormField, Verification};
use crate::oauth::{ProviderConfig, SealedProvider, TokenAuthMethod};
use crate::proto::v1 as pb;
use crate::service::{
    CredentialChanges, Deleted, ExpiryChange, ListRequest, NewCredential, NewProvider,
    ProviderChanges, StartOAuth,
};

/// Latest accepted time: the end of year 9999.
const MAX_MS: Millis = 253_402_300_799_999;

pub fn millis(field: &'static str, ts: Option<Timestamp>) -> Result<Option<Millis>> {
    let Some(ts) = ts else { return Ok(None) };
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(Error::invalid(field, "nanos must be from 0 to 999,999,999"));
    }
    let ms = ts
        .seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(ts.nanos / 1_000_000)))
        .filter(|ms| (0..=MAX_MS).contains(ms))
        .ok_or_else(|| Error::invalid(field, "must be between 1970 and 9999"))?;
    Ok(Some(ms))
}

pub fn timestamp(ms: Millis) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

fn kind(k: Kind) -> pb::CredentialKind {
    match k {
        Kind::ApiKey => pb::CredentialKind::ApiKey,
        Kind::OAuth2 => pb::CredentialKind::Oauth2,
        Kind::Basic => pb::CredentialKind::Basic,
    }
}

fn status(s: Status) -> pb::CredentialStatus {
    match s {
        Status::Active => pb::CredentialStatus::Active,
        Status::Expired => pb::CredentialStatus::Expired,
        Status::NeedsReauth => pb::CredentialStatus::NeedsReauth,
        Status::Revoked => pb::CredentialStatus::Revoked,
    }
}

fn status_filter(value: i32) -> Result<Option<Status>> {
    let bad = || Error::invalid("status", "is not a CredentialStatus value");
    match pb::CredentialStatus::try_from(value).map_err(|_| bad())? {
        pb::CredentialStatus::Unspecified => Ok(None),
        pb::CredentialStatus::Active => Ok(Some(Status::Active)),
        pb::CredentialStatus::Expired => Ok(Some(Status::Expired)),
        pb::CredentialStatus::NeedsReauth => Ok(Some(Status::NeedsReauth)),
        pb::CredentialStatus::Revoked => Ok(Some(Status::Revoked)),
    }
}

/// Moves the secret strings out of the wire message (no copies left behind).
pub fn secret(secret: Option<pb::Secret>) -> Result<Option<SecretPayload>> {
    use pb::secret::Kind as K;
    let Some(kind) = secret.and_then(|s| s.kind) else {
        return Ok(None);
    };
    Ok(Some(match kind {
        K::ApiKey(s) => SecretPayload::ApiKey { key: s.key },
        K::Oauth2(s) => SecretPayload::OAuth2 {
            expires_at: millis("secret.oauth2.expires_at", s.expires_at)?,
            access_token: s.access_token,
            refresh_token: Some(s.refresh_token).filter(|t| !t.is_empty()),
            token_type: if s.token_type.is_empty() {
                "Bearer".into()
            } else {
                s.token_type
            },
            scopes: s.scopes,
        },
        K::Basic(s) => SecretPayload::Basic {
            username: s.username,
            password: s.password,
        },
    }))
}

pub fn secret_out(secret: &SecretPayload) -> pb::Secret {
    use pb::secret::Kind as K;
    let kind = match secret {
        SecretPayload::ApiKey { key } => K::ApiKey(pb::ApiKeySecret { key: key.clone() }),
        SecretPayload::OAuth2 {
            access_token,
            refresh_token,
            token_type,
            scopes,
            expires_at,
        } => K::Oauth2(pb::OAuth2Secret {
            access_token: access_token.clone(),
            refresh_token: refresh_token.clone().unwrap_or_default(),
            token_type: token_type.clone(),
            scopes: scopes.clone(),
            expires_at: expires_at.map(timestamp),
        }),
        SecretPayload::Basic { username, password } => K::Basic(pb::BasicSecret {
            username: username.clone(),
            password: password.clone(),
        }),
    };
    pb::Secret { kind: Some(kind) }
}

pub fn credential(m: impl Into<CredentialSummary>) -> pb::Credential {
    let m = m.into();
    pb::Credential {
        kind: kind(m.kind).into(),
        status: status(m.status).into(),
        id: m.id,
        user_id: m.user_id,
        user_email: m.user_email.unwrap_or_default(),
        name: m.name,
        provider: m.provider,
        labels: m.labels.into_iter().collect(),
        scopes: m.scopes,
        expires_at: m.expires_at.map(timestamp),
        token_expires_at: m.token_expires_at.map(timestamp),
        created_at: Some(timestamp(m.created_at)),
        updated_at: Some(timestamp(m.updated_at)),
        version: m.version,
    }
}

pub fn new_credential(r: pb::CreateCredentialRequest) -> Result<NewCredential> {
    Ok(NewCredential {
        expires_at: millis("expires_at", r.expires_at)?,
        secret: secret(r.secret)?,
        user_id: r.user_id,
        user_email: r.user_email,
        name: r.name,
        provider: r.provider,
        labels: r.labels.into_iter().collect::<BTreeMap<_, _>>(),
        request_id: r.request_id,
    })
}

pub fn changes(r: pb::UpdateCredentialRequest) -> Result<CredentialChanges> {
    let expires_at = match (millis("expires_at", r.expires_at)?, r.clear_expires_at) {
        (Some(_), true) => {
            return Err(Error::invalid(
                "clear_expires_at",
                "cannot be combined with expires_at",
            ));
        }
        (Some(at), false) => ExpiryChange::Set(at),
        (None, true) => ExpiryChange::Clear,
        (None, false) => ExpiryChange::Keep,
    };
    Ok(CredentialChanges {
        secret: secret(r.secret)?,
        id: r.id,
        name: r.name,
        labels: r.labels.map(|l| l.values.into_iter().collect()),
        expires_at,
        expected_version: r.expected_version,
    })
}

pub fn list_request(r: pb::ListCredentialsRequest) -> Result<ListRequest> {
    Ok(ListRequest {
        status: status_filter(r.status)?,
        user_id: r.user_id,
        provider: r.provider,
        page_size: r.page_size,
        page_token: r.page_token,
    })
}

pub fn tenant(t: Tenant) -> pb::Tenant {
    pb::Tenant {
        id: t.id,
        name: t.name,
        created_at: Some(timestamp(t.created_at)),
    }
}

pub fn service_token(t: ServiceToken) -> pb::ServiceToken {
    pb::ServiceToken {
        id: t.id,
        tenant_id: t.tenant_id,
        scopes: t.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        description: t.description,
        created_at: Some(timestamp(t.created_at)),
        revoked_at: t.revoked_at.map(timestamp),
        expires_at: t.expires_at.map(timestamp),
        constraints: (!t.constraints.is_empty()).then(|| constraints_out(&t.constraints)),
    }
}

pub fn constraints(c: pb::TokenConstraints) -> Constraints {
    Constraints {
        providers: c.providers,
        labels: c.labels.into_iter().collect(),
    }
}

fn constraints_out(c: &Constraints) -> pb::TokenConstraints {
    pb::TokenConstraints {
        providers: c.providers.clone(),
        labels: c.labels.clone().into_iter().collect(),
    }
}

fn auth_method(value: i32) -> Result<Option<TokenAuthMethod>> {
    let bad = || Error::invalid("token_auth_method", "is not a TokenAuthMethod value");
    Ok(
        match pb::TokenAuthMethod::try_from(value).map_err(|_| bad())? {
            pb::TokenAuthMethod::Unspecified => None,
            pb::TokenAuthMethod::ClientSecretBasic => Some(TokenAuthMethod::ClientSecretBasic),
            pb::TokenAuthMethod::ClientSecretPost => Some(TokenAuthMethod::ClientSecretPost),
        },
    )
}

fn auth_method_out(m: TokenAuthMethod) -> pb::TokenAuthMethod {
    match m {
        TokenAuthMethod::ClientSecretBasic => pb::TokenAuthMethod::ClientSecretBasic,
        TokenAuthMethod::ClientSecretPost => pb::TokenAuthMethod::ClientSecretPost,
    }
}

fn provider_settings(slug: String, c: ProviderConfig) -> pb::Provider {
    pb::Provider {
        slug,
        token_auth_method: auth_method_out(c.token_auth_method).into(),
        template: c.template,
        client_id: c.client_id,
        authorization_url: c.authorization_url,
        token_url: c.token_url,
        revocation_url: c.revocation_url,
        default_scopes: c.default_scopes,
        scope_separator: c.scope_separator,
        pkce: c.pkce,
        extra_authorize_params: c.extra_authorize_params.into_iter().collect(),
        refresh_margin_seconds: c.refresh_margin_secs,
        allowed_redirect_urls: c.allowed_redirect_urls,
        allow_private_network: c.allow_private_network,
        auth_mode: auth_mode_out(c.auth_mode).into(),
        display_name: c.display_name,
        logo_url: c.logo_url,
        help_url: c.help_url,
        fields: c.fields.into_iter().map(field_out).collect(),
        verification: c.verification.map(verification_out),
        api: c.api.map(api_out),
        ..pb::Provider::default()
    }
}

fn auth_mode(value: i32) -> Result<Option<AuthMode>> {
    let bad = || Error::invalid("auth_mode", "is not an AuthMode value");
    Ok(match pb::AuthMode::try_from(value).map_err(|_| bad())? {
        pb::AuthMode::Unspecified => None,
        pb::AuthMode::Oauth2 => Some(AuthMode::OAuth2),
        pb::AuthMode::ApiKey => Some(AuthMode::ApiKey),
        pb::AuthMode::Basic => Some(AuthMode::Basic),
    })
}

fn auth_mode_out(m: AuthMode) -> pb::AuthMode {
    match m {
        AuthMode::OAuth2 => pb::AuthMode::Oauth2,
        AuthMode::ApiKey => pb::AuthMode::ApiKey,
        AuthMode::Basic => pb::AuthMode::Basic,
    }
}

fn api_in(a: pb::ProviderApi) -> ApiAccess {
    ApiAccess {
        base_url: a.base_url,
        path_prefixes: a.path_prefixes,
        key_header: a.key_header,
        key_prefix: a.key_prefix,
        key_query_param: a.key_query_param,
    }
}

fn api_out(a: ApiAccess) -> pb::ProviderApi {
    pb::ProviderApi {
        base_url: a.base_url,
        path_prefixes: a.path_prefixes,
        key_header: a.key_header,
        key_prefix: a.key_prefix,
        key_query_param: a.key_query_param,
    }
}

fn field_in(f: pb::FormField) -> FormField {
    FormField {
        name: f.name,
        label: f.label,
        placeholder: f.placeholder,
        secret: f.secret,
        pattern: f.pattern,
        help: f.help,
        optional: f.optional,
    }
}

fn field_out(f: FormField) -> pb::FormField {
    pb::FormField {
        name: f.name,
        label: f.label,
        placeholder: f.placeholder,
        secret: f.secret,
        pattern: f.pattern,
        help: f.help,
        optional: f.optional,
    }
}

fn verification_in(v: pb::Verification) -> Result<Verification> {
    let bad = || Error::invalid("verification.body_format", "is not a BodyFormat value");
    Ok(Verification {
        method: v.method,
        url: v.url,
        headers: v.headers.into_iter().collect(),
        body: v.body,
        body_format: match pb::BodyFormat::try_from(v.body_format).map_err(|_| bad())? {
            pb::BodyFormat::Unspecified | pb::BodyFormat::Json => BodyFormat::Json,
            pb::BodyFormat::UrlEncoded => BodyFormat::UrlEncoded,
            pb::BodyFormat::Xml => BodyFormat::Xml,
        },
    })
}

fn verification_out(v: Verification) -> pb::Verification {
    pb::Verification {
        method: v.method,
        url: v.url,
        headers: v.headers.into_iter().collect(),
        body: v.body,
        body_format: match v.body_format {
            BodyFormat::Json => pb::BodyFormat::Json,
            BodyFormat::UrlEncoded => pb::BodyFormat::UrlEncoded,
            BodyFormat::Xml => pb::BodyFormat::Xml,
        }
        .into(),
    }
}

/// A provider's settings; the client secret only as "has one".
pub fn provider(p: SealedProvider) -> pb::Provider {
    let has_client_secret = p.client_secret.is_some();
    let p = p.provider;
    pb::Provider {
        has_client_secret,
        last_error: p.last_error.unwrap_or_default(),
        last_error_at: p.last_error_at.map(timestamp),
        created_at: Some(timestamp(p.created_at)),
        updated_at: Some(timestamp(p.updated_at)),
        version: p.version,
        ..provider_settings(p.slug, p.config)
    }
}

pub fn template(name: String, config: ProviderConfig) -> pb::Provider {
    provider_settings(name, config)
}

pub fn new_provider(r: pb::CreateProviderRequest) -> Result<NewProvider> {
    Ok(NewProvider {
        token_auth_method: auth_method(r.token_auth_method)?,
        auth_mode: auth_mode(r.auth_mode)?,
        pkce: r.pkce,
        slug: r.slug,
        template: r.template,
        client_secret: secrecy::SecretString::from(r.client_secret),
        config: ProviderConfig {
            client_id: r.client_id,
            authorization_url: r.authorization_url,
            token_url: r.token_url,
            revocation_url: r.revocation_url,
            default_scopes: r.default_scopes,
            scope_separator: r.scope_separator,
            extra_authorize_params: r.extra_authorize_params.into_iter().collect(),
            refresh_margin_secs: r.refresh_margin_seconds,
            allowed_redirect_urls: r.allowed_redirect_urls,
            allow_private_network: r.allow_private_network,
            display_name: r.display_name,
            logo_url: r.logo_url,
            help_url: r.help_url,
            fields: r.fields.into_iter().map(field_in).collect(),
            verification: r.verification.map(verification_in).transpose()?,
            api: r.api.map(api_in),
            ..ProviderConfig::default()
        },
    })
}

pub fn provider_changes(r: pb::UpdateProviderRequest) -> Result<ProviderChanges> {
    Ok(ProviderChanges {
        token_auth_method: auth_method(r.token_auth_method)?,
        slug: r.slug,
        client_id: r.client_id,
        client_secret: r.client_secret.map(secrecy::SecretString::from),
        authorization_url: r.authorization_url,
        token_url: r.token_url,
        revocation_url: r.revocation_url,
        default_scopes: r.default_scopes.map(|l| l.values),
        scope_separator: r.scope_separator,
        pkce: r.pkce,
        extra_authorize_params: r
            .extra_authorize_params
            .map(|l| l.values.into_iter().collect()),
        refresh_margin_secs: r.refresh_margin_seconds,
        allowed_redirect_urls: r.allowed_redirect_urls.map(|l| l.values),
        allow_private_network: r.allow_private_network,
        expected_version: r.expected_version,
        display_name: r.display_name,
        logo_url: r.logo_url,
        help_url: r.help_url,
        fields: r
            .fields
            .map(|l| l.values.into_iter().map(field_in).collect()),
        verification: match (r.verification, r.clear_verification) {
            (Some(_), true) => {
                return Err(Error::invalid(
                    "clear_verification",
                    "cannot be combined with verification",
                ));
            }
            (Some(v), false) => Some(Some(verification_in(v)?)),
            (None, true) => Some(None),
            (None, false) => None,
        },
        api: match (r.api, r.clear_api) {
            (Some(_), true) => {
                return Err(Error::invalid("clear_api", "cannot be combined with api"));
            }
            (Some(a), false) => Some(Some(api_in(a))),
            (None, true) => Some(None),
            (None, false) => None,
        },
    })
}

pub fn start_oauth(r: pb::StartOAuthRequest) -> StartOAuth {
    StartOAuth {
        user_id: r.user_id,
        user_email: r.user_email,
        provider: r.provider,
        name: r.name,
        scopes: r.scopes,
        success_redirect_url: r.success_redirect_url,
        failure_redirect_url: r.failure_redirect_url,
        labels: r.labels.into_iter().collect(),
    }
}

pub fn deleted(d: Deleted) -> pb::DeleteCredentialResponse {
    pb::DeleteCredentialResponse {
        revocation: d.revocation_attempted.then(|| pb::Revocation {
            attempted: true,
            revoked: d.revoked,
            error: d.revocation_error.unwrap_or_default(),
        }),
    }
}

/// An endpoint's settings (never its secrets).
pub fn endpoint(
    e: crate::webhooks::Endpoint,
    previous_secret_until: Option<Millis>,
) -> pb::WebhookEndpoint {
    let previous_secret_expires_at = previous_secret_until.map(timestamp);
    pb::WebhookEndpoint {
        id: e.id,
        url: e.url,
        event_types: e.event_types,
        enabled: e.enabled,
        disabled_reason: e.disabled_reason.unwrap_or_default(),
        previous_secret_expires_at,
        created_at: Some(timestamp(e.created_at)),
        updated_at: Some(timestamp(e.updated_at)),
        version: e.version,
    }
}

pub fn event(e: crate::model::Event) -> pb::Event {
    pb::Event {
        id: e.id,
        r#type: e.kind.to_owned(),
        credential_id: e.credential_id.unwrap_or_default(),
        created_at: Some(timestamp(e.created_at)),
        payload: e.payload,
    }
}

pub fn delivery_status(value: i32) -> Result<Option<crate::webhooks::DeliveryStatus>> {
    use crate::webhooks::DeliveryStatus as S;
    let bad = || Error::invalid("status", "is not a DeliveryStatus value");
    Ok(
        match pb::DeliveryStatus::try_from(value).map_err(|_| bad())? {
            pb::DeliveryStatus::Unspecified => None,
            pb::DeliveryStatus::Pending => Some(S::Pending),
            pb::DeliveryStatus::Delivered => Some(S::Delivered),
            pb::DeliveryStatus::Dead => Some(S::Dead),
        },
    )
}

pub fn delivery(d: crate::webhooks::Delivery) -> pb::Delivery {
    use crate::webhooks::DeliveryStatus as S;
    let status = match d.status {
        S::Pending => pb::DeliveryStatus::Pending,
        S::Delivered => pb::DeliveryStatus::Delivered,
        S::Dead => pb::DeliveryStatus::Dead,
    };
    pb::Delivery {
        id: d.id,
        event_id: d.event_id,
        endpoint_id: d.endpoint_id,
        status: status.into(),
        attempts: d.attempts,
        next_attempt_at: Some(timestamp(d.next_attempt_at)),
        last_status_code: d
            .last_status
            .and_then(|s| i32::try_from(s).ok())
            .unwrap_or(0),
        last_error: d.last_error.unwrap_or_default(),
        created_at: Some(timestamp(d.created_at)),
        updated_at: Some(timestamp(d.updated_at)),
        delivered_at: d.delivered_at.map(timestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_reject_nonsense() {
        let ms = 1_763_712_000_123;
        assert_eq!(millis("t", Some(timestamp(ms))).unwrap(), Some(ms));
        assert!(
            millis(
                "t",
                Some(Timestamp {
                    seconds: 1,
                    nanos: -1
                })
            )
            .is_err()
        );
        assert!(
            millis(
                "t",
                Some(Timestamp {
                    seconds: i64::MAX,
                    nanos: 0
                })
            )
            .is_err()
        );
        assert!(
            millis(
                "t",
                Some(Timestamp {
                    seconds: -5,
                    nanos: 0
                })
            )
            .is_err()
        );
    }

    #[test]
    fn unknown_status_filter_is_invalid() {
        assert_eq!(status_filter(0).unwrap(), None);
        assert_eq!(status_filter(2).unwrap(), Some(Status::Expired));
        assert!(status_filter(99).is_err());
    }
}
