//! Input rules. Each failure names the field as the API spells it, and never echoes
//! the value (it might be a secret pasted into the wrong field).
use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::ids;

pub const MAX_TEXT_CHARS: usize = 255;
pub const MAX_EMAIL_CHARS: usize = 254;
pub const MAX_SLUG_CHARS: usize = 63;
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY_CHARS: usize = 63;
pub const MAX_LABEL_VALUE_CHARS: usize = 256;
pub const MAX_SCOPES: usize = 256;
/// The largest secret payload accepted, as sealed plaintext (its JSON form).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Non-empty, at most `max` characters, no control characters.
pub fn text(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    bounded_text(field, value, max)
}

/// Like [`text`] but may be empty.
pub fn bounded_text(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Lowercase ASCII letters, digits, `-` and `_`, starting with a letter or digit.
pub fn slug(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    let ok = value.len() <= MAX_SLUG_CHARS
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "must be a slug of at most {MAX_SLUG_CHARS} lowercase letters, digits, '-' or '_' \
                 (for example `salesforce`)"
            ),
        ))
    }
}

/// A plausible address: `local@domain.tld`, no spaces or control characters.
pub fn email(field: &'static str, value: &str) -> Result<()> {
    bounded_text(field, value, MAX_EMAIL_CHARS)?;
    let valid = value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
    }) && !value.contains(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must be an email address such as ada@example.com",
        ))
    }
}

pub fn labels(field: &'static str, labels: &BTreeMap<String, String>) -> Result<()> {
    if labels.len() > MAX_LABELS {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_LABELS} labels are allowed"),
        ));
    }
    for (key, value) in labels {
        let key_ok = !key.is_empty()
            && key.len() <= MAX_LABEL_KEY_CHARS
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        if !key_ok {
            return Err(Error::invalid(
                field,
                format!(
                    "label keys must be 1 to {MAX_LABEL_KEY_CHARS} ASCII letters, digits, '-', '_', \
                     '.' or '/'"
                ),
            ));
        }
        bounded_text(field, value, MAX_LABEL_VALUE_CHARS)?;
    }
    Ok(())
}

pub fn scopes(field: &'static str, scopes: &[String]) -> Result<()> {
    if scopes.len() > MAX_SCOPES {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_SCOPES} scopes are allowed"),
        ));
    }
    for scope in scopes {
        text(field, scope, MAX_TEXT_CHARS)?;
        if scope.contains(char::is_whitespace) {
            return Err(Error::invalid(field, "a scope must not contain spaces"));
        }
    }
    Ok(())
}

/// A credential id as the API hands them out.
pub fn credential_id(value: &str) -> Result<()> {
    if ids::is_well_formed(value, ids::CREDENTIAL_PREFIX) {
        Ok(())
    } else {
        Err(Error::invalid(
            "id",
            "must be a credential id such as cred_0190c2b7e5a87d3f9c1e2a4b6d8f0a12",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert!(text("f", "ok", 5).is_ok());
        assert!(text("f", "", 5).is_err());
        assert!(text("f", "toolong", 5).is_err());
        assert!(text("f", "a\u{0}b", 5).is_err());
        assert!(
            text("f", "ééééé", 5).is_ok(),
            "limits count characters, not bytes"
        );
    }

    #[test]
    fn slug_and_email_rules() {
        for good in ["salesforce", "google-drive", "x_1", "9lives"] {
            assert!(slug("provider", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Salesforce",
            "-x",
            "sales force",
            "a/b",
            &"a".repeat(64),
        ] {
            assert!(slug("provider", bad).is_err(), "{bad}");
        }
        for good in ["ada@example.com", "a.b+c@sub.example.org"] {
            assert!(email("user_email", good).is_ok(), "{good}");
        }
        for bad in [
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.com",
            "a@.com",
        ] {
            assert!(email("user_email", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_rules() {
        let mut l = BTreeMap::new();
        l.insert("team/owner".to_owned(), "growth".to_owned());
        assert!(labels("labels", &l).is_ok());
        l.insert("bad key".to_owned(), "x".to_owned());
        assert!(labels("labels", &l).is_err());
        let many: BTreeMap<_, _> = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(labels("labels", &many).is_err());
    }
}
