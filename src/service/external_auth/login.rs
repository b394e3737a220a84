//! A login passed through a connector, in this order: pre-validation → the
//! registered-user check → the lockout check → the circuit breaker → the templated
//! request → its answer (only HTTP 200 authenticates). Every attempt is audited and
//! reported as an event; the password lives in a zeroizing buffer and goes nowhere
//! but into the one request.
use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine;
use zeroize::Zeroizing;

use super::ExternalAuth;
use super::answer::{
    self, Answer, EXTERNAL_ID_MISMATCH, EXTERNAL_ID_MISSING, INVALID_CREDENTIALS, LOCKED_OUT,
    PRE_VALIDATION_FAILED, UNKNOWN_USER, UPSTREAM_UNAVAILABLE,
};
use super::connectors::{forgot_template, full_match};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::model::AuditEntry;
use crate::model::external_auth::{Attempt, AttemptOutcome, Connector, Device, PreValidation};
use crate::model::users::EndUser;
use crate::outbound::Guard;
use crate::service::{Caller, validate};
use crate::store::Linked;
use crate::template::Values;
use crate::template::request::RequestTemplate;

/// Longest password passed through.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Who is signing in: a registered user's id or email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    UserId(String),
    Email(String),
}

/// An `Authenticate` request. `Debug` never shows the password.
pub struct Login {
    pub connector_id: String,
    pub subject: Subject,
    pub password: Zeroizing<String>,
    pub device: Device,
    pub request_id: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("connector_id", &self.connector_id)
            .field("subject", &self.subject)
            .field("password", &"[redacted]")
            .field("device", &self.device)
            .field("request_id", &self.request_id)
            .finish()
    }
}

/// How a login ended. A refusal is an answer, not an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginOutcome {
    pub authenticated: bool,
    pub user_id: String,
    pub external_id: String,
    /// Empty when authenticated.
    pub error_code: String,
    pub message: String,
    /// For `locked_out`: when an attempt will be accepted again.
    pub retry_at: Option<Millis>,
}

/// How a forgot-password request ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForgotOutcome {
    pub forwarded: bool,
    pub error_code: String,
    pub message: String,
}

fn refused(code: &str, message: Option<String>) -> LoginOutcome {
    LoginOutcome {
        error_code: code.to_owned(),
        message: message.unwrap_or_else(|| answer::default_message(code).to_owned()),
        ..LoginOutcome::default()
    }
}

/// The placeholders' values for one attempt.
struct LoginValues<'a> {
    user: &'a EndUser,
    password: &'a str,
    device: &'a Device,
}

impl Values for LoginValues<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        Some(match name {
            "USERID" => &self.user.user_id,
            "USEREMAIL" => self.user.email.as_deref().unwrap_or_default(),
            "USERPASSWORD" => self.password,
            "USEREXTERNALID" => self.user.external_id.as_deref().unwrap_or_default(),
            "ORGID" => &self.user.tenant_id,
            "DEVICEOS" => &self.device.os,
            "DEVICENAME" => &self.device.name,
            "DEVICEIP" => &self.device.ip,
            _ => return None,
        })
    }
}

/// The lockout subject of a user (failures are also counted per `ip:<address>`).
fn user_subject(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// Whether the identifier passes the connector's checks.
fn pre_validate(p: &PreValidation, identifier: &str, email: Option<&str>) -> bool {
    let domain_ok = p.allowed_email_domains.is_empty()
        || email
            .and_then(|e| e.rsplit_once('@'))
            .is_some_and(|(_, domain)| p.allowed_email_domains.contains(&domain.to_lowercase()));
    let prefix_ok = identifier.starts_with(&p.username_prefix);
    let pattern_ok =
        p.pattern.is_empty() || full_match(&p.pattern).is_ok_and(|re| re.is_match(identifier));
    domain_ok && prefix_ok && pattern_ok
}

fn check_device(device: &Device) -> Result<()> {
    validate::bounded_text("device.os", &device.os, validate::MAX_TEXT_CHARS)?;
    validate::bounded_text("device.name", &device.name, validate::MAX_TEXT_CHARS)?;
    if !device.ip.is_empty() && device.ip.parse::<std::net::IpAddr>().is_err() {
        return Err(Error::invalid(
            "device.ip",
            "must be an IPv4 or IPv6 address",
        ));
    }
    Ok(())
}

fn check_subject(subject: &Subject) -> Result<&str> {
    match subject {
        Subject::UserId(id) => {
            validate::text("user_id", id, validate::MAX_TEXT_CHARS).map(|()| id.as_str())
        }
        Subject::Email(email) => validate::email("email", email).map(|()| email.as_str()),
    }
}

/// How sending went: answered (and how long the endpoint took), not sent (the
/// circuit is open), not built (a typed value cannot be carried where the template
/// puts it, such as a line break in a header), or no answer.
enum Sent {
    Answered(Answer, Duration),
    CircuitOpen,
    Unbuildable,
    Unanswered,
}

impl ExternalAuth {
    /// Passes a login through connector `login.connector_id`.
    #[tracing::instrument(name = "authenticate", skip_all, fields(tenant = %caller.tenant_id, connector = %login.connector_id, outcome))]
    pub async fn authenticate(&self, caller: &Caller, login: Login) -> Result<LoginOutcome> {
        let started = Instant::now();
        let identifier = check_subject(&login.subject)?.to_owned();
        if login.password.is_empty() || login.password.len() > MAX_PASSWORD_BYTES {
            return Err(Error::invalid(
                "password",
                format!("is required, at most {MAX_PASSWORD_BYTES} bytes"),
            ));
        }
        check_device(&login.device)?;
        validate::bounded_text("request_id", &login.request_id, validate::MAX_TEXT_CHARS)?;
        let connector = self
            .connector(&caller.tenant_id, &login.connector_id)
            .await?;
        let (outcome, user_email) = self
            .attempt(caller, &connector, &login, &identifier)
            .await?;
        let outcome_name = if outcome.authenticated {
            "authenticated"
        } else {
            outcome.error_code.as_str()
        };
        tracing::Span::current().record("outcome", outcome_name);
        self.vault
            .metrics()
            .external_auth(answer::metric_label(outcome_name));
        let attempt = Attempt {
            tenant_id: &caller.tenant_id,
            connector_id: &connector.id,
            user_id: &outcome.user_id,
            user_email: &user_email,
            device: &login.device,
            outcome: if outcome.authenticated {
                AttemptOutcome::Authenticated
            } else {
                AttemptOutcome::Failed(&outcome.error_code)
            },
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        // A success forgets the user's failures, in the same transaction as its record.
        let forget = outcome
            .authenticated
            .then(|| user_subject(&outcome.user_id));
        self.record(
            caller,
            "user.authenticate",
            &attempt,
            &login.request_id,
            forget.as_deref(),
        )
        .await?;
        Ok(outcome)
    }

    /// The steps of a login, up to its outcome (recorded by the caller), with the
    /// email on file of the user it is about (or the one typed).
    async fn attempt(
        &self,
        caller: &Caller,
        connector: &Connector,
        login: &Login,
        identifier: &str,
    ) -> Result<(LoginOutcome, String)> {
        let typed = match &login.subject {
            Subject::Email(email) => email.clone(),
            Subject::UserId(_) => String::new(),
        };
        let mut user = None;
        let outcome = self
            .steps(caller, connector, login, identifier, &mut user)
            .await?;
        let email = user.and_then(|u: EndUser| u.email).unwrap_or(typed);
        Ok((outcome, email))
    }

    async fn steps(
        &self,
        caller: &Caller,
        connector: &Connector,
        login: &Login,
        identifier: &str,
        found: &mut Option<EndUser>,
    ) -> Result<LoginOutcome> {
        let tenant = &caller.tenant_id;
        let rules = &connector.config.pre_validation;
        let typed_email = matches!(login.subject, Subject::Email(_)).then_some(identifier);
        if !pre_validate(rules, identifier, typed_email.or(Some(""))) {
            return Ok(refused(PRE_VALIDATION_FAILED, None));
        }
        let ip_subject = (!login.device.ip.is_empty()).then(|| format!("ip:{}", login.device.ip));
        let Some(user) = self.find_user(tenant, &login.subject).await? else {
            if let Some(ip) = &ip_subject {
                self.count_failure(caller, connector, None, ip, &login.device)
                    .await?;
            }
            return Ok(refused(UNKNOWN_USER, None));
        };
        let user = &*found.insert(user);
        if typed_email.is_none() && !pre_validate(rules, identifier, user.email.as_deref()) {
            return Ok(refused(PRE_VALIDATION_FAILED, None));
        }
        let user_subject = user_subject(&user.user_id);
        let mut subjects = vec![user_subject.as_str()];
        subjects.extend(ip_subject.as_deref());
        let now = self.now();
        if let Some(until) = self
            .vault
            .store
            .locked_until(tenant, &subjects, now)
            .await?
        {
            return Ok(LoginOutcome {
                user_id: user.user_id.clone(),
                retry_at: Some(until),
                ..refused(LOCKED_OUT, None)
            });
        }
        let values = LoginValues {
            user,
            password: &login.password,
            device: &login.device,
        };
        let method = connector.config.authentication.method.http();
        let request = connector.config.authentication.request(&method);
        let basic = connector.config.authentication.basic_auth.then(|| {
            let name = user.email.as_deref().unwrap_or(&user.user_id);
            basic_header(name, &login.password)
        });
        let sent = self
            .send(
                connector,
                request,
                &values,
                basic,
                connector.config.authentication.timeout_ms,
            )
            .await;
        if matches!(sent, Sent::Unbuildable) {
            return Ok(LoginOutcome {
                user_id: user.user_id.clone(),
                ..refused(INVALID_CREDENTIALS, None)
            });
        }
        let Some(answer) = self.upstream(connector, sent) else {
            return Ok(LoginOutcome {
                user_id: user.user_id.clone(),
                ..refused(UPSTREAM_UNAVAILABLE, None)
            });
        };
        if answer.status == 200 {
            return self.accepted(caller, connector, user, &answer).await;
        }
        let (code, message) = answer.refusal(
            &connector.config.error_mapping,
            connector.config.authentication.format,
        );
        if code != UPSTREAM_UNAVAILABLE {
            for subject in subjects {
                self.count_failure(caller, connector, Some(user), subject, &login.device)
                    .await?;
            }
        }
        Ok(LoginOutcome {
            user_id: user.user_id.clone(),
            ..refused(&code, Some(message))
        })
    }

    /// A 200: the user is authenticated, once their external id (if the connector
    /// links users) matches the one on file or is linked now.
    async fn accepted(
        &self,
        caller: &Caller,
        connector: &Connector,
        user: &EndUser,
        answer: &Answer,
    ) -> Result<LoginOutcome> {
        let mut external_id = user.external_id.clone().unwrap_or_default();
        if let (true, Some(location)) = (connector.config.link_users, &connector.config.external_id)
        {
            let Some(found) = answer.external_id(location) else {
                tracing::warn!(connector = %connector.id, "a 200 answer carried no external id where the connector says");
                return Ok(LoginOutcome {
                    user_id: user.user_id.clone(),
                    ..refused(EXTERNAL_ID_MISSING, None)
                });
            };
            let linked = self
                .vault
                .store
                .link_external_id(&caller.tenant_id, &user.user_id, &found, self.now())
                .await?;
            if linked != Linked::Same {
                tracing::warn!(connector = %connector.id, user = %user.user_id, ?linked, "external id mismatch: login refused");
                return Ok(LoginOutcome {
                    user_id: user.user_id.clone(),
                    ..refused(EXTERNAL_ID_MISMATCH, None)
                });
            }
            external_id = found;
        }
        Ok(LoginOutcome {
            authenticated: true,
            user_id: user.user_id.clone(),
            external_id,
            ..LoginOutcome::default()
        })
    }

    async fn find_user(&self, tenant: &str, subject: &Subject) -> Result<Option<EndUser>> {
        Ok(match subject {
            Subject::UserId(id) => self.vault.store.get_user(tenant, id).await?,
            Subject::Email(email) => self.vault.store.find_user_by_email(tenant, email).await?,
        })
    }

    /// Counts a failure of `subject`; a lockout that begins now is reported.
    async fn count_failure(
        &self,
        caller: &Caller,
        connector: &Connector,
        user: Option<&EndUser>,
        subject: &str,
        device: &Device,
    ) -> Result<()> {
        let now = self.now();
        let locked = self
            .vault
            .store
            .count_failure(&caller.tenant_id, subject, now, &self.policy)
            .await?;
        if locked.is_some() {
            let attempt = Attempt {
                tenant_id: &caller.tenant_id,
                connector_id: &connector.id,
                user_id: user.map_or("", |u| u.user_id.as_str()),
                user_email: user.and_then(|u| u.email.as_deref()).unwrap_or_default(),
                device,
                outcome: AttemptOutcome::LockedOut,
                latency_ms: 0,
            };
            self.record(caller, "user.lock", &attempt, "", None).await?;
        }
        Ok(())
    }

    async fn record(
        &self,
        caller: &Caller,
        action: &'static str,
        attempt: &Attempt<'_>,
        request_id: &str,
        forget: Option<&str>,
    ) -> Result<()> {
        let now = self.now();
        let audit = AuditEntry {
            detail: attempt.detail(),
            ..caller.audit(now, action, "", request_id)
        };
        self.vault
            .store
            .record_login(&audit, &attempt.event(now), forget)
            .await?;
        Ok(())
    }

    /// Builds and sends one request through the guarded client, if the connector's
    /// circuit lets it out.
    async fn send(
        &self,
        connector: &Connector,
        request: RequestTemplate<'_>,
        values: &LoginValues<'_>,
        basic: Option<Zeroizing<String>>,
        timeout_ms: u64,
    ) -> Sent {
        if !self.breakers.admit(&connector.id, self.now()) {
            return Sent::CircuitOpen;
        }
        let outbound = self.vault.outbound();
        let built = request
            .build(values, |method, url| outbound.request(method, url))
            .and_then(|b| {
                let b = match &basic {
                    Some(header) => b.header("authorization", header.as_str()),
                    None => b,
                };
                b.build()
                    .map_err(|_| crate::template::request::BuildError::Url)
            });
        let request = match built {
            Ok(request) => request,
            Err(e) => {
                // A value the template cannot carry (a line break in a header).
                tracing::info!(connector = %connector.id, error = %e, "login request not built");
                self.breakers.record(&connector.id, false, self.now());
                return Sent::Unbuildable;
            }
        };
        let guard = Guard {
            allow_http: self.vault.settings.allow_http_urls,
            allow_private: connector.config.allow_private_network
                || self.vault.settings.provider_allow_private,
        };
        let started = Instant::now();
        let sent = outbound
            .send(request, guard, Duration::from_millis(timeout_ms))
            .await;
        match sent {
            Ok(response) => Sent::Answered(Answer::read(response).await, started.elapsed()),
            Err(e) => {
                tracing::warn!(connector = %connector.id, error = %e, "login request failed");
                Sent::Unanswered
            }
        }
    }

    /// The answer, with the circuit breaker told how it went; `None` when there is
    /// no usable answer (not sent, timed out, refused, 5xx counted as such later).
    fn upstream(&self, connector: &Connector, sent: Sent) -> Option<Answer> {
        let now = self.now();
        match sent {
            Sent::Answered(answer, took) => {
                tracing::debug!(connector = %connector.id, status = answer.status, took_ms = took.as_millis() as u64, "login answered");
                self.record_upstream(connector, answer.status >= 500, now);
                Some(answer)
            }
            Sent::CircuitOpen | Sent::Unbuildable => None,
            Sent::Unanswered => {
                self.record_upstream(connector, true, now);
                None
            }
        }
    }

    /// Tells the circuit breaker how a request went, logging when the circuit opens.
    fn record_upstream(&self, connector: &Connector, failed: bool, now: Millis) {
        if self.breakers.record(&connector.id, failed, now) {
            tracing::warn!(connector = %connector.id, "circuit opened: the connector's endpoint keeps failing");
        }
    }

    /// Forwards a forgot-password request as a GET.
    #[tracing::instrument(name = "forgot_password", skip_all, fields(tenant = %caller.tenant_id, connector = %connector_id))]
    pub async fn forgot_password(
        &self,
        caller: &Caller,
        connector_id: &str,
        subject: &Subject,
        device: &Device,
    ) -> Result<ForgotOutcome> {
        let identifier = check_subject(subject)?.to_owned();
        check_device(device)?;
        let connector = self.connector(&caller.tenant_id, connector_id).await?;
        let Some(forgot) = &connector.config.forgot_password else {
            return Err(Error::FailedPrecondition(format!(
                "connector {connector_id} has no forgot_password request"
            )));
        };
        let refuse = |code: &str| ForgotOutcome {
            forwarded: false,
            error_code: code.to_owned(),
            message: answer::default_message(code).to_owned(),
        };
        let typed_email = matches!(subject, Subject::Email(_)).then_some(identifier.as_str());
        if !pre_validate(
            &connector.config.pre_validation,
            &identifier,
            typed_email.or(Some("")),
        ) {
            return Ok(refuse(PRE_VALIDATION_FAILED));
        }
        let Some(user) = self.find_user(&caller.tenant_id, subject).await? else {
            return Ok(refuse(UNKNOWN_USER));
        };
        let values = LoginValues {
            user: &user,
            password: "",
            device,
        };
        let timeout = connector.config.authentication.timeout_ms;
        let sent = self
            .send(&connector, forgot_template(forgot), &values, None, timeout)
            .await;
        let outcome = match self.upstream(&connector, sent) {
            Some(answer) if answer.status == 200 => ForgotOutcome {
                forwarded: true,
                ..ForgotOutcome::default()
            },
            Some(answer) => {
                let (code, message) = answer.refusal(
                    &connector.config.error_mapping,
                    connector.config.authentication.format,
                );
                ForgotOutcome {
                    forwarded: false,
                    error_code: code,
                    message,
                }
            }
            None => refuse(UPSTREAM_UNAVAILABLE),
        };
        let audit = AuditEntry {
            detail: serde_json::json!({
                "userId": user.user_id,
                "connectorId": connector.id,
                "deviceIp": device.ip,
                "outcome": if outcome.forwarded { "forwarded" } else { outcome.error_code.as_str() },
            })
            .to_string(),
            ..caller.audit(self.now(), "user.forgot_password", "", "")
        }
        .for_user(&user.user_id);
        self.vault.store.insert_audit(&audit).await?;
        Ok(outcome)
    }
}

/// `Basic base64(name:password)`, zeroed when dropped.
fn basic_header(name: &str, password: &str) -> Zeroizing<String> {
    let pair = Zeroizing::new(format!("{name}:{password}"));
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
    Zeroizing::new(format!("Basic {}", encoded.as_str()))
}
