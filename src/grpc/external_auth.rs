use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use super::authorize;
use super::convert::timestamp;
use crate::error::{Error, Result};
use crate::model::Scope;
use crate::model::external_auth::{
    Connector, ConnectorConfig, Device, ErrorRule, ExternalIdLocation, ForgotTemplate, IdSource,
    LoginMethod, LoginTemplate, PreValidation, SignInPage,
};
use crate::proto::v1::{self as pb, external_auth_service_server::ExternalAuthService};
use crate::service::external_auth::{ConnectorSpec, ExternalAuth, Login, Subject};
use crate::template::request::BodyFormat;

/// `credvault.v1.ExternalAuthService`: connectors and pass-through logins.
pub struct ExternalAuthApi {
    auth: ExternalAuth,
}

impl ExternalAuthApi {
    pub fn new(auth: ExternalAuth) -> Self {
        Self { auth }
    }

    fn connector_out(&self, c: Connector) -> pb::Connector {
        let health = self.auth.breaker_state(&c.id);
        let k = c.config;
        let a = k.authentication;
        pb::Connector {
            id: c.id.0,
            name: c.name,
            authentication: Some(pb::LoginRequestTemplate {
                url: a.url,
                method: a.method.as_str().into(),
                format: body_format_out(a.format).into(),
                headers: a.headers.into_iter().collect(),
                body: a.body,
                auth_type: if a.basic_auth {
                    pb::ConnectorAuthType::Basic
                } else {
                    pb::ConnectorAuthType::None
                }
                .into(),
                timeout_ms: i32::try_from(a.timeout_ms).unwrap_or(i32::MAX),
            }),
            forgot_password: k.forgot_password.map(|f| pb::ForgotPasswordTemplate {
                url: f.url,
                headers: f.headers.into_iter().collect(),
            }),
            pre_validation: Some(pb::PreValidation {
                allowed_email_domains: k.pre_validation.allowed_email_domains,
                username_prefix: k.pre_validation.username_prefix,
                pattern: k.pre_validation.pattern,
            }),
            link_users: k.link_users,
            external_id: k.external_id.map(|l| pb::ExternalIdLocation {
                source: match l.source {
                    IdSource::JsonPointer => pb::ExternalIdSource::JsonPointer,
                    IdSource::XmlPath => pb::ExternalIdSource::XmlPath,
                    IdSource::Header => pb::ExternalIdSource::Header,
                }
                .into(),
                path: l.path,
            }),
            error_mapping: k
                .error_mapping
                .into_iter()
                .map(|r| pb::ErrorRule {
                    status_min: r.status_min.into(),
                    status_max: r.status_max.into(),
                    match_path: r.match_path,
                    match_value: r.match_value,
                    error_code: r.error_code,
                    message: r.message,
                })
                .collect(),
            page: Some(pb::SignInPage {
                title: k.page.title,
                description: k.page.description,
                username_label: k.page.username_label,
                terms_url: k.page.terms_url,
                faq_url: k.page.faq_url,
                password_reset_url: k.page.password_reset_url,
            }),
            allow_private_network: k.allow_private_network,
            version: c.version,
            created_at: Some(timestamp(c.created_at)),
            updated_at: Some(timestamp(c.updated_at)),
            health: Some(pb::ConnectorHealth {
                circuit_open: health.open_until.is_some(),
                consecutive_failures: i32::try_from(health.consecutive_failures)
                    .unwrap_or(i32::MAX),
                open_until: health.open_until.map(timestamp),
            }),
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn body_format_out(f: BodyFormat) -> pb::BodyFormat {
    match f {
        BodyFormat::Json => pb::BodyFormat::Json,
        BodyFormat::UrlEncoded => pb::BodyFormat::UrlEncoded,
        BodyFormat::Xml => pb::BodyFormat::Xml,
    }
}

fn status_code(field: &'static str, value: i32) -> Result<u16> {
    u16::try_from(value).map_err(|_| Error::invalid(field, "must be an HTTP status code"))
}

fn login_in(a: pb::LoginRequestTemplate) -> Result<LoginTemplate> {
    let method = LoginMethod::parse(&a.method)
        .ok_or_else(|| Error::invalid("authentication.method", "must be POST, PUT or GET"))?;
    let format = match pb::BodyFormat::try_from(a.format) {
        Ok(pb::BodyFormat::Unspecified | pb::BodyFormat::Json) => BodyFormat::Json,
        Ok(pb::BodyFormat::UrlEncoded) => BodyFormat::UrlEncoded,
        Ok(pb::BodyFormat::Xml) => BodyFormat::Xml,
        Err(_) => {
            return Err(Error::invalid(
                "authentication.format",
                "is not a BodyFormat value",
            ));
        }
    };
    let basic_auth = match pb::ConnectorAuthType::try_from(a.auth_type) {
        Ok(pb::ConnectorAuthType::Unspecified | pb::ConnectorAuthType::None) => false,
        Ok(pb::ConnectorAuthType::Basic) => true,
        Err(_) => {
            return Err(Error::invalid(
                "authentication.auth_type",
                "is not a ConnectorAuthType value",
            ));
        }
    };
    Ok(LoginTemplate {
        url: a.url,
        method,
        format,
        headers: a.headers.into_iter().collect(),
        body: a.body,
        basic_auth,
        timeout_ms: u64::try_from(a.timeout_ms)
            .map_err(|_| Error::invalid("authentication.timeout_ms", "must not be negative"))?,
    })
}

fn external_id_in(l: pb::ExternalIdLocation) -> Result<ExternalIdLocation> {
    let source = match pb::ExternalIdSource::try_from(l.source) {
        Ok(pb::ExternalIdSource::JsonPointer) => IdSource::JsonPointer,
        Ok(pb::ExternalIdSource::XmlPath) => IdSource::XmlPath,
        Ok(pb::ExternalIdSource::Header) => IdSource::Header,
        _ => {
            return Err(Error::invalid(
                "external_id.source",
                "must be JSON_POINTER, XML_PATH or HEADER",
            ));
        }
    };
    Ok(ExternalIdLocation {
        source,
        path: l.path,
    })
}

fn spec_in(c: Option<pb::Connector>) -> Result<(String, ConnectorSpec)> {
    let c = c.ok_or_else(|| Error::invalid("connector", "is required"))?;
    let authentication = c
        .authentication
        .ok_or_else(|| Error::invalid("authentication", "is required"))
        .and_then(login_in)?;
    let p = c.pre_validation.unwrap_or_default();
    let page = c.page.unwrap_or_default();
    let rules = c
        .error_mapping
        .into_iter()
        .map(|r| {
            Ok(ErrorRule {
                status_min: status_code("error_mapping.status_min", r.status_min)?,
                status_max: status_code("error_mapping.status_max", r.status_max)?,
                match_path: r.match_path,
                match_value: r.match_value,
                error_code: r.error_code,
                message: r.message,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let config = ConnectorConfig {
        authentication,
        forgot_password: c
            .forgot_password
            .filter(|f| !f.url.is_empty())
            .map(|f| ForgotTemplate {
                url: f.url,
                headers: f.headers.into_iter().collect(),
            }),
        pre_validation: PreValidation {
            allowed_email_domains: p.allowed_email_domains,
            username_prefix: p.username_prefix,
            pattern: p.pattern,
        },
        link_users: c.link_users,
        external_id: c.external_id.map(external_id_in).transpose()?,
        error_mapping: rules,
        page: SignInPage {
            title: page.title,
            description: page.description,
            username_label: page.username_label,
            terms_url: page.terms_url,
            faq_url: page.faq_url,
            password_reset_url: page.password_reset_url,
        },
        allow_private_network: c.allow_private_network,
    };
    Ok((
        c.id,
        ConnectorSpec {
            name: c.name,
            config,
        },
    ))
}

fn subject_in(user_id: String, email: String) -> Result<Subject> {
    match (user_id.is_empty(), email.is_empty()) {
        (false, true) => Ok(Subject::UserId(user_id)),
        (true, false) => Ok(Subject::Email(email)),
        _ => Err(Error::invalid(
            "user_id",
            "set exactly one of user_id and email",
        )),
    }
}

fn device_in(d: Option<pb::Device>) -> Device {
    let d = d.unwrap_or_default();
    Device {
        os: d.os,
        name: d.name,
        ip: d.ip,
    }
}

#[tonic::async_trait]
impl ExternalAuthService for ExternalAuthApi {
    async fn create_connector(
        &self,
        req: Request<pb::CreateConnectorRequest>,
    ) -> Reply<pb::Connector> {
        let caller = authorize(self.auth.vault(), &req, Scope::AuthAdmin).await?;
        let (_, spec) = spec_in(req.into_inner().connector)?;
        let connector = self.auth.create_connector(&caller, spec).await?;
        tracing::info!(tenant = %caller.tenant_id, connector = %connector.id, "connector created");
        Ok(Response::new(self.connector_out(connector)))
    }

    async fn update_connector(
        &self,
        req: Request<pb::UpdateConnectorRequest>,
    ) -> Reply<pb::Connector> {
        let caller = authorize(self.auth.vault(), &req, Scope::AuthAdmin).await?;
        let r = req.into_inner();
        let (id, spec) = spec_in(r.connector)?;
        let connector = self
            .auth
            .update_connector(&caller, &id, spec, r.expected_version)
            .await?;
        Ok(Response::new(self.connector_out(connector)))
    }

    async fn get_connector(&self, req: Request<pb::GetConnectorRequest>) -> Reply<pb::Connector> {
        let caller = authorize(self.auth.vault(), &req, Scope::AuthAdmin).await?;
        let connector = self
            .auth
            .connector(&caller.tenant_id, &req.get_ref().id)
            .await?;
        Ok(Response::new(self.connector_out(connector)))
    }

    async fn list_connectors(
        &self,
        req: Request<pb::ListConnectorsRequest>,
    ) -> Reply<pb::ListConnectorsResponse> {
        let caller = authorize(self.auth.vault(), &req, Scope::AuthAdmin).await?;
        let connectors = self.auth.list_connectors(&caller).await?;
        Ok(Response::new(pb::ListConnectorsResponse {
            connectors: connectors
                .into_iter()
                .map(|c| self.connector_out(c))
                .collect(),
        }))
    }

    async fn delete_connector(
        &self,
        req: Request<pb::DeleteConnectorRequest>,
    ) -> Reply<pb::DeleteConnectorResponse> {
        let caller = authorize(self.auth.vault(), &req, Scope::AuthAdmin).await?;
        self.auth
            .delete_connector(&caller, &req.get_ref().id)
            .await?;
        Ok(Response::new(pb::DeleteConnectorResponse {}))
    }

    async fn authenticate(
        &self,
        req: Request<pb::AuthenticateRequest>,
    ) -> Reply<pb::AuthenticateResponse> {
        let caller = authorize(self.auth.vault(), &req, Scope::AuthLogin).await?;
        let mut r = req.into_inner();
        // The request's own buffer becomes the zeroizing one: no copy is left behind.
        let password = Zeroizing::new(std::mem::take(&mut r.password));
        let login = Login {
            connector_id: r.connector_id,
            subject: subject_in(r.user_id, r.email)?,
            password,
            device: device_in(r.device),
            request_id: r.request_id,
        };
        let outcome = self.auth.authenticate(&caller, login).await?;
        Ok(Response::new(pb::AuthenticateResponse {
            authenticated: outcome.authenticated,
            user_id: outcome.user_id,
            external_id: outcome.external_id,
            error_code: outcome.error_code,
            message: outcome.message,
            retry_at: outcome.retry_at.map(timestamp),
        }))
    }

    async fn forgot_password(
        &self,
        req: Request<pb::ForgotPasswordRequest>,
    ) -> Reply<pb::ForgotPasswordResponse> {
        let caller = authorize(self.auth.vault(), &req, Scope::AuthLogin).await?;
        let r = req.into_inner();
        let subject = subject_in(r.user_id, r.email)?;
        let outcome = self
            .auth
            .forgot_password(&caller, &r.connector_id, &subject, &device_in(r.device))
            .await?;
        Ok(Response::new(pb::ForgotPasswordResponse {
            forwarded: outcome.forwarded,
            error_code: outcome.error_code,
            message: outcome.message,
        }))
    }
}
