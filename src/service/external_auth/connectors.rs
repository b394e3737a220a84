//! Connector configuration: checked in full when saved (templates, placeholders,
//! body shapes, rules, links), sealed at rest, and changed by compare-and-set.
use super::ExternalAuth;
use crate::error::{Error, Result};
use crate::model::external_auth::{
    Connector, ConnectorConfig, ConnectorId, DEFAULT_TIMEOUT_MS, ErrorRule, ForgotTemplate,
    IdSource, MAX_TIMEOUT_MS, PASSWORD, PLACEHOLDERS, PreValidation,
};
use crate::model::{AuditEntry, Scope};
use crate::service::{Caller, validate};
use crate::store::StoreError;
use crate::template::Template;
use crate::template::request::{BodyFormat, FieldNames, RequestTemplate};

pub const MAX_RULES: usize = 50;
pub const MAX_CONNECTORS: usize = 100;
const MAX_MESSAGE_CHARS: usize = 500;

/// A connector's name and settings, as a caller sends them.
#[derive(Debug, Clone)]
pub struct ConnectorSpec {
    pub name: String,
    pub config: ConnectorConfig,
}

const LOGIN_FIELDS: FieldNames = FieldNames {
    url: "authentication.url",
    headers: "authentication.headers",
    body: "authentication.body",
};
const FORGOT_FIELDS: FieldNames = FieldNames {
    url: "forgot_password.url",
    headers: "forgot_password.headers",
    body: "forgot_password.body",
};

/// `{{USERPASSWORD}}` would land in access and proxy logs if it were in a URL.
fn refuse_password_in_url(field: &'static str, url: &str) -> Result<()> {
    let template = Template::parse(url).map_err(|e| Error::invalid(field, e.to_string()))?;
    match template.placeholders_at().find(|(n, _)| *n == PASSWORD) {
        Some((_, at)) => Err(Error::invalid(
            field,
            format!(
                "{{{{USERPASSWORD}}}} at byte {at} may not be in a URL (it would land in \
                 access and proxy logs); send it in the body or a header"
            ),
        )),
        None => Ok(()),
    }
}

fn check_pre_validation(p: &PreValidation) -> Result<()> {
    for domain in &p.allowed_email_domains {
        let ok = !domain.is_empty()
            && domain.len() <= 253
            && !domain.contains('@')
            && domain == &domain.to_lowercase()
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if !ok {
            return Err(Error::invalid(
                "pre_validation.allowed_email_domains",
                "each must be a lowercase domain such as example.com",
            ));
        }
    }
    validate::bounded_text(
        "pre_validation.username_prefix",
        &p.username_prefix,
        validate::MAX_TEXT_CHARS,
    )?;
    if !p.pattern.is_empty() {
        validate::bounded_text("pre_validation.pattern", &p.pattern, 1024)?;
        full_match(&p.pattern).map_err(|e| {
            Error::invalid(
                "pre_validation.pattern",
                format!("is not a valid regular expression: {e}"),
            )
        })?;
    }
    Ok(())
}

/// `pattern` anchored to match a whole value, with a size limit.
pub(super) fn full_match(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
}

fn check_external_id(c: &ConnectorConfig) -> Result<()> {
    let Some(location) = &c.external_id else {
        return if c.link_users {
            Err(Error::invalid(
                "external_id",
                "is required when link_users is set: where the user's id is in a 200 answer",
            ))
        } else {
            Ok(())
        };
    };
    let ok = match location.source {
        IdSource::JsonPointer | IdSource::XmlPath => {
            location.path.starts_with('/') && location.path.len() > 1
        }
        IdSource::Header => http::HeaderName::from_bytes(location.path.as_bytes()).is_ok(),
    };
    if !ok || location.path.len() > 512 {
        return Err(Error::invalid(
            "external_id.path",
            "must be a JSON pointer such as /user/id, an element path such as \
             /response/user/id, or a header name",
        ));
    }
    Ok(())
}

fn check_rules(rules: &[ErrorRule]) -> Result<()> {
    if rules.len() > MAX_RULES {
        return Err(Error::invalid(
            "error_mapping",
            format!("at most {MAX_RULES} rules are allowed"),
        ));
    }
    for rule in rules {
        let max = if rule.status_max == 0 {
            rule.status_min
        } else {
            rule.status_max
        };
        if !(100..=599).contains(&rule.status_min) || max < rule.status_min || max > 599 {
            return Err(Error::invalid(
                "error_mapping.status_min",
                "must be an HTTP status range within 100..599",
            ));
        }
        if (rule.status_min..=max).contains(&200) {
            return Err(Error::invalid(
                "error_mapping.status_min",
                "a rule may not cover 200: only 200 authenticates",
            ));
        }
        let code_ok = !rule.error_code.is_empty()
            && rule.error_code.len() <= 64
            && rule
                .error_code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !code_ok {
            return Err(Error::invalid(
                "error_mapping.error_code",
                "must be 1 to 64 lowercase letters, digits and '_'",
            ));
        }
        validate::bounded_text("error_mapping.message", &rule.message, MAX_MESSAGE_CHARS)?;
        validate::bounded_text("error_mapping.match_path", &rule.match_path, 512)?;
        validate::bounded_text("error_mapping.match_value", &rule.match_value, 1024)?;
        if !rule.match_path.is_empty() && !rule.match_path.starts_with('/') {
            return Err(Error::invalid(
                "error_mapping.match_path",
                "must start with '/' (a JSON pointer or an XML element path)",
            ));
        }
    }
    Ok(())
}

impl ExternalAuth {
    /// Fills defaults and checks every setting; nothing is stored unless all pass.
    fn check(&self, caller: &Caller, spec: &mut ConnectorSpec) -> Result<()> {
        validate::text("name", &spec.name, validate::MAX_TEXT_CHARS)?;
        let allow_http = self.vault.settings.allow_http_urls;
        let c = &mut spec.config;
        if c.allow_private_network {
            caller.require(Scope::Admin).map_err(|_| {
                Error::PermissionDenied("allow_private_network needs a vault `admin` token".into())
            })?;
        }
        let login = &mut c.authentication;
        if login.timeout_ms == 0 {
            login.timeout_ms = DEFAULT_TIMEOUT_MS;
        }
        if !(100..=MAX_TIMEOUT_MS).contains(&login.timeout_ms) {
            return Err(Error::invalid(
                "authentication.timeout_ms",
                format!("must be from 100 to {MAX_TIMEOUT_MS}"),
            ));
        }
        if login.basic_auth
            && login
                .headers
                .keys()
                .any(|h| h.eq_ignore_ascii_case("authorization"))
        {
            return Err(Error::invalid(
                "authentication.headers",
                "Authorization is set by auth_type BASIC; remove the header or the auth type",
            ));
        }
        refuse_password_in_url(LOGIN_FIELDS.url, &login.url)?;
        let method = login.method.http();
        login
            .request(&method)
            .check(LOGIN_FIELDS, &PLACEHOLDERS, allow_http)?;
        if let Some(forgot) = &c.forgot_password {
            let names: Vec<&str> = PLACEHOLDERS
                .into_iter()
                .filter(|n| *n != PASSWORD)
                .collect();
            refuse_password_in_url(FORGOT_FIELDS.url, &forgot.url)?;
            forgot_template(forgot)
                .check(FORGOT_FIELDS, &names, allow_http)
                .map_err(|e| match e {
                    Error::InvalidArgument { field, reason } if reason.contains(PASSWORD) => {
                        Error::invalid(
                            field,
                            format!("{reason} ({{{{USERPASSWORD}}}} is refused in a forgot-password request)"),
                        )
                    }
                    e => e,
                })?;
        }
        check_pre_validation(&c.pre_validation)?;
        check_external_id(c)?;
        check_rules(&c.error_mapping)?;
        let page = &c.page;
        validate::bounded_text("page.title", &page.title, validate::MAX_TEXT_CHARS)?;
        validate::bounded_text("page.description", &page.description, 1000)?;
        validate::bounded_text("page.username_label", &page.username_label, 64)?;
        self.vault
            .check_url("page.terms_url", &page.terms_url, false)?;
        self.vault.check_url("page.faq_url", &page.faq_url, false)?;
        self.vault
            .check_url("page.password_reset_url", &page.password_reset_url, false)?;
        Ok(())
    }

    fn connector_audit(
        &self,
        caller: &Caller,
        action: &'static str,
        id: &ConnectorId,
    ) -> AuditEntry {
        caller.audit(self.now(), action, id.as_str(), "")
    }

    pub async fn create_connector(
        &self,
        caller: &Caller,
        mut spec: ConnectorSpec,
    ) -> Result<Connector> {
        self.check(caller, &mut spec)?;
        let existing = self.vault.store.list_connectors(&caller.tenant_id).await?;
        if existing.len() >= MAX_CONNECTORS {
            return Err(Error::ResourceExhausted(format!(
                "a tenant may have at most {MAX_CONNECTORS} connectors"
            )));
        }
        let now = self.now();
        let connector = Connector {
            tenant_id: caller.tenant_id.clone(),
            id: ConnectorId::default(),
            name: spec.name,
            config: spec.config,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let audit = self.connector_audit(caller, "connector.create", &connector.id);
        let sealed = self.seal(&connector).await?;
        match self.vault.store.insert_connector(&sealed, &audit).await {
            Ok(()) => Ok(connector),
            Err(StoreError::Conflict) => Err(name_taken(&connector.name)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn update_connector(
        &self,
        caller: &Caller,
        id: &str,
        mut spec: ConnectorSpec,
        expected_version: Option<i64>,
    ) -> Result<Connector> {
        let current = self.connector(&caller.tenant_id, id).await?;
        self.check(caller, &mut spec)?;
        let expected = expected_version.unwrap_or(current.version);
        let next = Connector {
            name: spec.name,
            config: spec.config,
            version: expected + 1,
            updated_at: self.now(),
            ..current
        };
        let audit = self.connector_audit(caller, "connector.update", &next.id);
        let sealed = self.seal(&next).await?;
        match self
            .vault
            .store
            .update_connector(&sealed, expected, &audit)
            .await
        {
            Ok(true) => Ok(next),
            Ok(false) => Err(Error::Aborted(format!(
                "connector {id} is no longer at version {expected}; read it again and retry"
            ))),
            Err(StoreError::Conflict) => Err(name_taken(&next.name)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_connectors(&self, caller: &Caller) -> Result<Vec<Connector>> {
        let sealed = self.vault.store.list_connectors(&caller.tenant_id).await?;
        let mut opened = Vec::with_capacity(sealed.len());
        for s in sealed {
            opened.push(self.open(s).await?);
        }
        Ok(opened)
    }

    pub async fn delete_connector(&self, caller: &Caller, id: &str) -> Result<()> {
        let connector = self.connector(&caller.tenant_id, id).await?;
        let audit = self.connector_audit(caller, "connector.delete", &connector.id);
        if self
            .vault
            .store
            .delete_connector(&caller.tenant_id, &connector.id, &audit)
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound(format!("connector {id} not found")))
        }
    }
}

fn name_taken(name: &str) -> Error {
    Error::AlreadyExists(format!("a connector named {name:?} exists in this tenant"))
}

static GET: http::Method = http::Method::GET;

/// A forgot-password request as a template: a GET without a body.
pub(super) fn forgot_template(f: &ForgotTemplate) -> RequestTemplate<'_> {
    RequestTemplate {
        method: &GET,
        url: &f.url,
        headers: &f.headers,
        body: "",
        format: BodyFormat::Json,
    }
}
