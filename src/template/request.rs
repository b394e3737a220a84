//! A whole templated HTTP request (method, URL, headers, body): checked when it is
//! configured and built when it is sent. Shared by provider verification requests and
//! external auth connectors, so both follow one set of rules:
//! - the URL's scheme and host are written out (a value can never choose where the
//!   request goes), https unless http is allowed;
//! - header names are valid and not ones the client sets itself;
//! - a body goes only with POST or PUT, and a JSON or XML body must still parse when
//!   its placeholders hold sample values (so a placeholder outside quotes is caught
//!   when the template is saved, not when a user signs in).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Escape, Template, TemplateError, Values};
use crate::error::{Error, Result};

/// The body format of a templated request: how values are escaped in the body and
/// which `Content-Type` it is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    #[default]
    Json,
    UrlEncoded,
    Xml,
}

impl BodyFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::UrlEncoded => "application/x-www-form-urlencoded",
            Self::Xml => "application/xml",
        }
    }

    pub fn escape(self) -> Escape {
        match self {
            Self::Json => Escape::JsonString,
            Self::UrlEncoded => Escape::FormField,
            Self::Xml => Escape::XmlText,
        }
    }
}

pub const MAX_HEADERS: usize = 20;
pub const MAX_URL_BYTES: usize = 2048;
pub const MAX_HEADER_VALUE_CHARS: usize = 4096;
pub const MAX_BODY_BYTES: usize = 8192;
/// Headers a template may not set: the client sets them from the request.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "content-type",
];

/// The API's names of a request's parts, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct FieldNames {
    pub url: &'static str,
    pub headers: &'static str,
    pub body: &'static str,
}

/// A templated request, borrowed from whatever configures it.
#[derive(Debug, Clone, Copy)]
pub struct RequestTemplate<'a> {
    pub method: &'a http::Method,
    pub url: &'a str,
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a str,
    pub format: BodyFormat,
}

/// Why a request could not be built from a (checked) template and these values.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("the rendered URL is not valid")]
    Url,
}

fn has_body(method: &http::Method) -> bool {
    method == http::Method::POST || method == http::Method::PUT
}

/// `field: <reason>` for a template error, with the byte where it stands if known.
fn template_error(field: &'static str, e: TemplateError) -> Error {
    Error::invalid(field, e.to_string())
}

fn bounded(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.chars().count() > max || value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} characters without control characters"),
        ));
    }
    Ok(())
}

impl RequestTemplate<'_> {
    /// Checks the template against the placeholders `names` it may use.
    pub fn check(&self, fields: FieldNames, names: &[&str], allow_http: bool) -> Result<()> {
        let parse = |field: &'static str, text: &str| -> Result<Template> {
            let template = Template::parse(text).map_err(|e| template_error(field, e))?;
            template
                .check_names(names)
                .map_err(|e| Error::invalid(field, format!("{e}; known: {}", names.join(", "))))?;
            Ok(template)
        };
        let samples: BTreeMap<String, String> = names
            .iter()
            .map(|n| ((*n).to_owned(), "sample".to_owned()))
            .collect();
        if self.url.len() > MAX_URL_BYTES {
            return Err(Error::invalid(
                fields.url,
                format!("must be at most {MAX_URL_BYTES} bytes"),
            ));
        }
        let url = parse(fields.url, self.url)?;
        check_url(fields.url, &url, self.url, &samples, allow_http)?;
        if self.headers.len() > MAX_HEADERS {
            return Err(Error::invalid(
                fields.headers,
                format!("at most {MAX_HEADERS} are allowed"),
            ));
        }
        for (name, value) in self.headers {
            let valid = http::HeaderName::from_bytes(name.as_bytes()).is_ok();
            if !valid || RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(Error::invalid(
                    fields.headers,
                    "names must be valid header names other than Host, Content-Length, \
                     Transfer-Encoding, Connection and Content-Type",
                ));
            }
            bounded(fields.headers, value, MAX_HEADER_VALUE_CHARS)?;
            parse(fields.headers, value)?;
        }
        if self.body.is_empty() {
            return Ok(());
        }
        if !has_body(self.method) {
            return Err(Error::invalid(
                fields.body,
                format!("is only sent with POST or PUT, not {}", self.method),
            ));
        }
        if self.body.len() > MAX_BODY_BYTES {
            return Err(Error::invalid(
                fields.body,
                format!("must be at most {MAX_BODY_BYTES} bytes"),
            ));
        }
        let body = parse(fields.body, self.body)?;
        check_body_shape(fields.body, &body, &samples, self.format)
    }

    /// The request, with every placeholder filled from `values` escaped for where it
    /// stands; `start` makes the builder (from the guarded client).
    pub fn build(
        &self,
        values: &dyn Values,
        start: impl FnOnce(http::Method, url::Url) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, BuildError> {
        let url = Template::parse(self.url)?.render(values, Escape::UrlComponent)?;
        let url = url::Url::parse(&url).map_err(|_| BuildError::Url)?;
        let mut builder = start(self.method.clone(), url);
        for (name, value) in self.headers {
            let value = Template::parse(value)?.render(values, Escape::HeaderValue)?;
            builder = builder.header(name.as_str(), value.as_str());
        }
        if has_body(self.method) && !self.body.is_empty() {
            let body = Template::parse(self.body)?.render(values, self.format.escape())?;
            builder = builder
                .header("content-type", self.format.content_type())
                .body(body.as_bytes().to_vec());
        }
        Ok(builder)
    }
}

/// An absolute http(s) URL whose scheme and host are literal text.
fn check_url(
    field: &'static str,
    url: &Template,
    source: &str,
    samples: &BTreeMap<String, String>,
    allow_http: bool,
) -> Result<()> {
    let literal = url.literal_prefix();
    let host_is_literal = literal == source
        || literal
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains(['/', '?']));
    let rendered = url
        .render(samples, Escape::UrlComponent)
        .map_err(|e| template_error(field, e))?;
    let parsed = url::Url::parse(&rendered).ok().filter(|u| {
        u.host_str().is_some()
            && u.username().is_empty()
            && u.password().is_none()
            && (u.scheme() == "https" || (allow_http && u.scheme() == "http"))
    });
    if !host_is_literal || parsed.is_none() {
        let schemes = if allow_http { "http(s)" } else { "https" };
        return Err(Error::invalid(
            field,
            format!(
                "must be an absolute {schemes} URL whose scheme and host are written out \
                 (placeholders only in the path and query)"
            ),
        ));
    }
    Ok(())
}

/// A JSON or XML body must parse with sample values in its placeholders.
fn check_body_shape(
    field: &'static str,
    body: &Template,
    samples: &BTreeMap<String, String>,
    format: BodyFormat,
) -> Result<()> {
    let rendered = body
        .render(samples, format.escape())
        .map_err(|e| template_error(field, e))?;
    let problem = match format {
        BodyFormat::Json => serde_json::from_str::<serde_json::Value>(&rendered)
            .err()
            .map(|e| format!("is not valid JSON with sample values (line {}, column {}); a placeholder belongs inside a string, as in \"{{{{USEREMAIL}}}}\"", e.line(), e.column())),
        BodyFormat::Xml => roxmltree::Document::parse(&rendered).err().map(|e| {
            format!("is not valid XML with sample values ({e}); a placeholder belongs in text or an attribute value")
        }),
        BodyFormat::UrlEncoded => None,
    };
    match problem {
        Some(reason) => Err(Error::invalid(field, reason)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: FieldNames = FieldNames {
        url: "t.url",
        headers: "t.headers",
        body: "t.body",
    };

    fn check(method: &http::Method, url: &str, body: &str, format: BodyFormat) -> Result<()> {
        let headers = BTreeMap::from([("X-Key".to_owned(), "k {{A}}".to_owned())]);
        RequestTemplate {
            method,
            url,
            headers: &headers,
            body,
            format,
        }
        .check(FIELDS, &["A"], false)
    }

    #[test]
    fn bodies_must_keep_their_shape_with_sample_values() {
        let post = http::Method::POST;
        assert!(
            check(
                &post,
                "https://x.test/{{A}}",
                r#"{"a":"{{A}}"}"#,
                BodyFormat::Json
            )
            .is_ok()
        );
        let e = check(&post, "https://x.test/", r#"{"a":{{A}}}"#, BodyFormat::Json).unwrap_err();
        assert!(
            e.to_string().starts_with("t.body: is not valid JSON"),
            "{e}"
        );
        assert!(
            check(
                &post,
                "https://x.test/",
                "<a k=\"{{A}}\">{{A}}</a>",
                BodyFormat::Xml
            )
            .is_ok()
        );
        assert!(check(&post, "https://x.test/", "<a k={{A}}></a>", BodyFormat::Xml).is_err());
        assert!(
            check(
                &post,
                "https://x.test/",
                "a={{A}}&b",
                BodyFormat::UrlEncoded
            )
            .is_ok()
        );
        let e = check(&http::Method::GET, "https://x.test/", "a", BodyFormat::Json).unwrap_err();
        assert!(e.to_string().contains("only sent with POST or PUT"), "{e}");
        let e = check(&post, "https://x.test/", "{{B}}", BodyFormat::Json).unwrap_err();
        assert!(
            e.to_string().contains("`{{B}}`") && e.to_string().contains("byte 0"),
            "{e}"
        );
    }

    #[test]
    fn hosts_are_literal_and_https() {
        let get = http::Method::GET;
        for bad in [
            "https://{{A}}/",
            "https://x{{A}}.test/",
            "http://x.test/",
            "/relative",
        ] {
            assert!(check(&get, bad, "", BodyFormat::Json).is_err(), "{bad}");
        }
    }
}
