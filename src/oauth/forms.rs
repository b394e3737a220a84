//! How end users connect a provider on the hosted page: its auth mode, the form of an
//! API-key or basic provider, and an optional verification request.
use serde::{Deserialize, Serialize};

/// How a provider's credentials are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    #[default]
    OAuth2,
    ApiKey,
    Basic,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OAuth2 => "oauth2",
            Self::ApiKey => "api_key",
            Self::Basic => "basic",
        }
    }
}

/// One input of a provider's form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct FormField {
    pub name: String,
    pub label: String,
    pub placeholder: String,
    pub secret: bool,
    pub pattern: String,
    pub help: String,
    pub optional: bool,
}

impl FormField {
    pub fn new(name: &str, label: &str, secret: bool) -> Self {
        Self {
            name: name.into(),
            label: label.into(),
            secret,
            ..Self::default()
        }
    }
}

/// Name of the BASIC form's user-name field, and of its password field.
pub const USERNAME_FIELD: &str = "username";
pub const PASSWORD_FIELD: &str = "password";

/// The form a provider without one of its own gets.
pub fn default_fields(mode: AuthMode) -> Vec<FormField> {
    match mode {
        AuthMode::OAuth2 => Vec::new(),
        AuthMode::ApiKey => vec![FormField::new("api_key", "API key", true)],
        AuthMode::Basic => vec![
            FormField::new(USERNAME_FIELD, "Username", false),
            FormField::new(PASSWORD_FIELD, "Password", true),
        ],
    }
}

pub use crate::template::request::BodyFormat;

/// A request that checks a typed key before it is stored. Every text may hold
/// `{{field}}` placeholders (see [`crate::template`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Verification {
    pub method: String,
    pub url: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: String,
    pub body_format: BodyFormat,
}

/// Names the hosted page's own form uses; a provider field may not take them.
const RESERVED_FIELD_NAMES: &[&str] = &["csrf", "provider"];
const MAX_FIELDS: usize = 16;

use crate::error::{Error, Result};
use crate::template::request::{FieldNames, RequestTemplate};

/// The fields a provider's form has: its own, or the mode's defaults.
pub fn field_names(mode: AuthMode, fields: &[FormField]) -> Vec<String> {
    let effective = if fields.is_empty() {
        default_fields(mode)
    } else {
        fields.to_vec()
    };
    effective.into_iter().map(|f| f.name).collect()
}

fn bounded(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} characters without control characters"),
        ));
    }
    Ok(())
}

/// A form the page can render and the secret can be built from.
pub fn check_fields(mode: AuthMode, fields: &[FormField]) -> Result<()> {
    if mode == AuthMode::OAuth2 {
        return if fields.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(
                "fields",
                "are for API_KEY and BASIC providers",
            ))
        };
    }
    if fields.len() > MAX_FIELDS {
        return Err(Error::invalid(
            "fields",
            format!("at most {MAX_FIELDS} are allowed"),
        ));
    }
    let mut names: Vec<&str> = Vec::new();
    for f in fields {
        let ok = !f.name.is_empty()
            && f.name.len() <= 63
            && f.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok || RESERVED_FIELD_NAMES.contains(&f.name.as_str()) {
            return Err(Error::invalid(
                "fields.name",
                "must be 1 to 63 letters, digits or '_', and not `csrf` or `provider`",
            ));
        }
        if names.contains(&f.name.as_str()) {
            return Err(Error::invalid("fields.name", "must be unique"));
        }
        names.push(&f.name);
        bounded("fields.label", &f.label, 100)?;
        bounded("fields.placeholder", &f.placeholder, 200)?;
        bounded("fields.help", &f.help, 300)?;
        bounded("fields.pattern", &f.pattern, 500)?;
        if !f.pattern.is_empty() && regex::Regex::new(&f.pattern).is_err() {
            return Err(Error::invalid(
                "fields.pattern",
                "is not a valid regular expression",
            ));
        }
    }
    if fields.is_empty() {
        return Ok(());
    }
    let secrets: Vec<&str> = fields
        .iter()
        .filter(|f| f.secret)
        .map(|f| f.name.as_str())
        .collect();
    match mode {
        AuthMode::ApiKey if secrets.len() != 1 => Err(Error::invalid(
            "fields",
            "an API_KEY form has exactly one secret field (the key)",
        )),
        AuthMode::Basic
            if secrets != [PASSWORD_FIELD]
                || !fields.iter().any(|f| f.name == USERNAME_FIELD && !f.secret) =>
        {
            Err(Error::invalid(
                "fields",
                "a BASIC form has a field `username` and one secret field `password`",
            ))
        }
        _ => Ok(()),
    }
}

/// The HTTP method of a verification request.
pub fn method(name: &str) -> Option<http::Method> {
    match name.to_ascii_uppercase().as_str() {
        "" | "GET" => Some(http::Method::GET),
        "HEAD" => Some(http::Method::HEAD),
        "POST" => Some(http::Method::POST),
        _ => None,
    }
}

/// A verification request whose placeholders are the form's fields and whose host
/// is literal (a value can never choose where the request goes).
pub fn check_verification(v: &Verification, fields: &[String], allow_http: bool) -> Result<()> {
    let names: Vec<&str> = fields.iter().map(String::as_str).collect();
    let Some(method) = method(&v.method) else {
        return Err(Error::invalid(
            "verification.method",
            "must be GET, HEAD or POST",
        ));
    };
    v.request(&method).check(
        FieldNames {
            url: "verification.url",
            headers: "verification.headers",
            body: "verification.body",
        },
        &names,
        allow_http,
    )
}

impl Verification {
    /// The request as a template, sent with `method`.
    pub fn request<'a>(&'a self, method: &'a http::Method) -> RequestTemplate<'a> {
        RequestTemplate {
            method,
            url: &self.url,
            headers: &self.headers,
            body: &self.body,
            format: self.body_format,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verification(url: &str) -> Verification {
        Verification {
            url: url.into(),
            ..Verification::default()
        }
    }

    #[test]
    fn a_value_can_never_choose_the_host() {
        let fields = vec!["api_key".to_owned(), "subdomain".to_owned()];
        for good in [
            "https://api.stripe.com/v1/balance",
            "https://api.example.com/{{subdomain}}/me?key={{api_key}}",
            "https://api.example.com?key={{api_key}}",
        ] {
            assert!(
                check_verification(&verification(good), &fields, false).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "https://{{subdomain}}.example.com/me",
            "https://api.example.com{{subdomain}}/x",
            "http://api.example.com/me",
            "https://api.example.com/{{unknown}}",
            "ftp://api.example.com/",
        ] {
            assert!(
                check_verification(&verification(bad), &fields, false).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn forms_fit_their_mode() {
        let key = FormField::new("api_key", "Key", true);
        let sub = FormField::new("subdomain", "Subdomain", false);
        assert!(check_fields(AuthMode::ApiKey, &[key.clone(), sub.clone()]).is_ok());
        assert!(check_fields(AuthMode::ApiKey, std::slice::from_ref(&sub)).is_err());
        assert!(check_fields(AuthMode::ApiKey, &[key.clone(), key.clone()]).is_err());
        assert!(check_fields(AuthMode::OAuth2, std::slice::from_ref(&key)).is_err());
        assert!(check_fields(AuthMode::Basic, &default_fields(AuthMode::Basic)).is_ok());
        assert!(check_fields(AuthMode::Basic, &[key]).is_err());
        let mut bad_pattern = sub;
        bad_pattern.pattern = "(".into();
        assert!(check_fields(AuthMode::ApiKey, &[bad_pattern]).is_err());
        let reserved = FormField::new("csrf", "x", true);
        assert!(check_fields(AuthMode::ApiKey, &[reserved]).is_err());
    }
}
