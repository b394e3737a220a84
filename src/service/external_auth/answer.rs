//! What the tenant's system answered: the body (read up to [`MAX_BODY_BYTES`]), the
//! user's external id in a 200, and a refused login mapped to an error code and the
//! message the user sees.
use crate::model::external_auth::{ErrorRule, ExternalIdLocation, IdSource};
use crate::template::request::BodyFormat;

/// Bodies are read up to this; the rest is never read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub const INVALID_CREDENTIALS: &str = "invalid_credentials";
pub const LOGIN_REFUSED: &str = "login_refused";
pub const UPSTREAM_UNAVAILABLE: &str = "upstream_unavailable";
pub const UNKNOWN_USER: &str = "unknown_user";
pub const PRE_VALIDATION_FAILED: &str = "pre_validation_failed";
pub const LOCKED_OUT: &str = "locked_out";
pub const EXTERNAL_ID_MISMATCH: &str = "external_id_mismatch";
pub const EXTERNAL_ID_MISSING: &str = "external_id_missing";

/// The default message for each built-in code (a mapping rule may replace them).
/// An outcome as `/metrics` labels it: one of a fixed set, whatever a connector's
/// rules map an answer to.
pub fn metric_label(outcome: &str) -> &'static str {
    [
        "authenticated",
        INVALID_CREDENTIALS,
        LOGIN_REFUSED,
        UPSTREAM_UNAVAILABLE,
        UNKNOWN_USER,
        PRE_VALIDATION_FAILED,
        LOCKED_OUT,
        EXTERNAL_ID_MISMATCH,
        EXTERNAL_ID_MISSING,
    ]
    .into_iter()
    .find(|known| *known == outcome)
    .unwrap_or("refused_other")
}

pub fn default_message(code: &str) -> &'static str {
    match code {
        INVALID_CREDENTIALS | UNKNOWN_USER => "The email or password is incorrect.",
        PRE_VALIDATION_FAILED => "This account cannot sign in here.",
        LOCKED_OUT => "Too many failed attempts. Try again later.",
        UPSTREAM_UNAVAILABLE | EXTERNAL_ID_MISSING => {
            "Sign-in is unavailable right now. Try again in a few minutes."
        }
        EXTERNAL_ID_MISMATCH => "This account is linked to a different identity. Contact support.",
        _ => "Sign-in was refused.",
    }
}

/// An answer as far as it was read.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// Reads at most [`MAX_BODY_BYTES`] of the body.
    pub async fn read(mut response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            let room = MAX_BODY_BYTES - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_BODY_BYTES {
                break;
            }
        }
        Self {
            status,
            headers,
            body,
        }
    }

    /// The text at `path` (a JSON pointer, or an element path in XML).
    fn value_at(&self, path: &str, xml: bool) -> Option<String> {
        if xml {
            xml_text(&self.body, path)
        } else {
            let json: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
            match json.pointer(path)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        }
    }

    /// The user's id where the connector says it is; `None` if absent or empty.
    pub fn external_id(&self, location: &ExternalIdLocation) -> Option<String> {
        let id = match location.source {
            IdSource::JsonPointer => self.value_at(&location.path, false),
            IdSource::XmlPath => self.value_at(&location.path, true),
            IdSource::Header => self
                .headers
                .get(location.path.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }?;
        let id = id.trim().to_owned();
        (!id.is_empty() && id.chars().count() <= 255 && !id.chars().any(char::is_control))
            .then_some(id)
    }

    /// The error code and message of a refused login: the first matching rule, else
    /// the defaults.
    pub fn refusal(&self, rules: &[ErrorRule], format: BodyFormat) -> (String, String) {
        let xml = format == BodyFormat::Xml;
        let matched = rules.iter().find(|r| {
            let max = if r.status_max == 0 {
                r.status_min
            } else {
                r.status_max
            };
            (r.status_min..=max).contains(&self.status)
                && (r.match_path.is_empty()
                    || self.value_at(&r.match_path, xml).as_deref() == Some(r.match_value.as_str()))
        });
        if let Some(rule) = matched {
            let message = if rule.message.is_empty() {
                default_message(&rule.error_code).to_owned()
            } else {
                rule.message.clone()
            };
            return (rule.error_code.clone(), message);
        }
        let code = match self.status {
            401 | 403 => INVALID_CREDENTIALS,
            500..=599 => UPSTREAM_UNAVAILABLE,
            _ => LOGIN_REFUSED,
        };
        (code.to_owned(), default_message(code).to_owned())
    }
}

/// The text of the element at `path` (`/root/child/…`, first match at each step).
fn xml_text(body: &[u8], path: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let doc = roxmltree::Document::parse(text).ok()?;
    let mut steps = path.trim_start_matches('/').split('/');
    let root = doc.root_element();
    if steps.next()? != root.tag_name().name() {
        return None;
    }
    let mut node = root;
    for step in steps {
        node = node
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == step)?;
    }
    Some(
        node.descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: http::HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn ids_come_from_json_xml_or_a_header() {
        let json = answer(200, r#"{"user":{"id":42,"name":"x"}}"#);
        let at = |source, path: &str| ExternalIdLocation {
            source,
            path: path.into(),
        };
        assert_eq!(
            json.external_id(&at(IdSource::JsonPointer, "/user/id"))
                .as_deref(),
            Some("42")
        );
        assert_eq!(
            json.external_id(&at(IdSource::JsonPointer, "/user/none")),
            None
        );
        let xml = answer(200, "<r><user><id> u-7 </id></user></r>");
        assert_eq!(
            xml.external_id(&at(IdSource::XmlPath, "/r/user/id"))
                .as_deref(),
            Some("u-7")
        );
        assert_eq!(xml.external_id(&at(IdSource::XmlPath, "/x/user/id")), None);
        let mut headed = answer(200, "");
        headed.headers.insert("x-user-id", "h-1".parse().unwrap());
        assert_eq!(
            headed
                .external_id(&at(IdSource::Header, "X-User-Id"))
                .as_deref(),
            Some("h-1")
        );
    }

    #[test]
    fn refusals_follow_the_rules_then_the_defaults() {
        let rules = vec![ErrorRule {
            status_min: 400,
            status_max: 499,
            match_path: "/code".into(),
            match_value: "EXPIRED".into(),
            error_code: "password_expired".into(),
            message: "Your password has expired.".into(),
        }];
        let r = |status, body| answer(status, body).refusal(&rules, BodyFormat::Json);
        assert_eq!(r(403, r#"{"code":"EXPIRED"}"#).0, "password_expired");
        assert_eq!(r(403, r#"{"code":"OTHER"}"#).0, INVALID_CREDENTIALS);
        assert_eq!(r(404, "").0, LOGIN_REFUSED);
        assert_eq!(r(302, "").0, LOGIN_REFUSED);
        assert_eq!(r(503, "").0, UPSTREAM_UNAVAILABLE);
    }
}
