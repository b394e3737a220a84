//! Request templates: text with `{{name}}` placeholders, filled with values escaped
//! for where they stand, so a value can never change the shape of the request it
//! goes into. Used by provider verification requests on the hosted connect page
//! (and by the external auth connector).
//!
//! Placeholder names are letters, digits and `_` (`{{api_key}}`, `{{USEREMAIL}}`);
//! anything else between `{{` and `}}`, or an unclosed `{{`, is refused when the
//! template is parsed, not when it is used.
use std::fmt;

use zeroize::Zeroizing;

pub mod request;

/// Where a rendered value lands, and so how it is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// A URL path segment or query value: everything but RFC 3986's unreserved
    /// characters is percent-encoded, so `/`, `?`, `#`, `&` and `@` stay data.
    UrlComponent,
    /// An HTTP header value: inserted as is; CR, LF, NUL and other control
    /// characters (but tab) are refused, so no header can be injected.
    HeaderValue,
    /// Inside a JSON string literal: `"`, `\` and control characters escaped.
    JsonString,
    /// An `application/x-www-form-urlencoded` name or value.
    FormField,
    /// XML character data or an attribute value: `& < > " '` escaped.
    XmlText,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{{{` at byte {0} is not closed by `}}}}`")]
    Unclosed(usize),
    #[error("placeholder `{0}` is not a name (letters, digits and '_')")]
    BadName(String),
    #[error("placeholder `{{{{{0}}}}}` is not known here")]
    Unknown(String),
    #[error("placeholder `{{{{{name}}}}}` at byte {at} is not known here")]
    NotAllowed { name: String, at: usize },
    /// The value (never shown) of this placeholder holds a character refused where
    /// it stands.
    #[error("the value of `{{{{{0}}}}}` contains a line break or control character")]
    ControlCharacter(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// A name, and the byte offset of its `{{` in the template's text.
    Placeholder(String, usize),
}

/// A parsed template.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Templates hold no values, only their own text: safe to show.
        f.debug_tuple("Template").field(&self.source()).finish()
    }
}

/// Values by placeholder name.
pub trait Values {
    fn get(&self, name: &str) -> Option<&str>;
}

impl<V: AsRef<str>> Values for std::collections::BTreeMap<String, V> {
    fn get(&self, name: &str) -> Option<&str> {
        std::collections::BTreeMap::get(self, name).map(AsRef::as_ref)
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or(TemplateError::Unclosed(offset + start))?;
            let name = after[..end].trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(TemplateError::BadName(after[..end].to_owned()));
            }
            parts.push(Part::Placeholder(name.to_owned(), offset + start));
            let consumed = start + 2 + end + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The placeholder names, in order of appearance (with repeats).
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.placeholders_at().map(|(name, _)| name)
    }

    /// The placeholder names with the byte offset where each stands.
    pub fn placeholders_at(&self) -> impl Iterator<Item = (&str, usize)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Placeholder(name, at) => Some((name.as_str(), *at)),
            Part::Text(_) => None,
        })
    }

    /// Refuses placeholders not in `known`, saying where the first one stands.
    pub fn check_names(&self, known: &[&str]) -> Result<(), TemplateError> {
        match self.placeholders_at().find(|(n, _)| !known.contains(n)) {
            Some((name, at)) => Err(TemplateError::NotAllowed {
                name: name.to_owned(),
                at,
            }),
            None => Ok(()),
        }
    }

    /// The text before the first placeholder (all of it when there is none).
    pub fn literal_prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Text(text)) => text,
            _ => "",
        }
    }

    /// The template's own text, placeholders included.
    pub fn source(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Placeholder(n, _) => format!("{{{{{n}}}}}"),
            })
            .collect()
    }

    /// Fills in every placeholder, escaped for `escape`. The result may hold secrets:
    /// it is zeroed when dropped.
    pub fn render(
        &self,
        values: &dyn Values,
        escape: Escape,
    ) -> Result<Zeroizing<String>, TemplateError> {
        let mut out = Zeroizing::new(String::new());
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Placeholder(name, _) => {
                    let value = values
                        .get(name)
                        .ok_or_else(|| TemplateError::Unknown(name.clone()))?;
                    escape_into(&mut out, value, escape)
                        .map_err(|()| TemplateError::ControlCharacter(name.clone()))?;
                }
            }
        }
        Ok(out)
    }
}

fn escape_into(out: &mut String, value: &str, escape: Escape) -> Result<(), ()> {
    match escape {
        Escape::UrlComponent => {
            for byte in value.bytes() {
                if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                    out.push(char::from(byte));
                } else {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
        }
        Escape::HeaderValue => {
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(());
            }
            out.push_str(value);
        }
        Escape::JsonString => {
            // serde_json's string form, without its surrounding quotes.
            let quoted = Zeroizing::new(serde_json::Value::from(value).to_string());
            out.push_str(&quoted[1..quoted.len() - 1]);
        }
        Escape::FormField => {
            out.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
        }
        Escape::XmlText => {
            for c in value.chars() {
                match c {
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '"' => out.push_str("&quot;"),
                    '\'' => out.push_str("&apos;"),
                    // XML 1.0 cannot carry these at all, escaped or not.
                    c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => return Err(()),
                    c => out.push(c),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn render(t: &str, v: &[(&str, &str)], e: Escape) -> Result<String, TemplateError> {
        Template::parse(t)?
            .render(&values(v), e)
            .map(|s| s.as_str().to_owned())
    }

    #[test]
    fn placeholders_are_parsed_and_listed() {
        let t = Template::parse("Bearer {{api_key}} for {{ USERID }}{{api_key}}").unwrap();
        assert_eq!(
            t.placeholders().collect::<Vec<_>>(),
            ["api_key", "USERID", "api_key"]
        );
        assert_eq!(t.literal_prefix(), "Bearer ");
        assert!(t.check_names(&["api_key", "USERID"]).is_ok());
        assert_eq!(
            t.check_names(&["api_key"]),
            Err(TemplateError::NotAllowed {
                name: "USERID".into(),
                at: 23
            })
        );
        assert_eq!(t.source(), "Bearer {{api_key}} for {{USERID}}{{api_key}}");
        assert_eq!(
            Template::parse("a {{b").unwrap_err(),
            TemplateError::Unclosed(2)
        );
        assert!(matches!(
            Template::parse("{{a b}}"),
            Err(TemplateError::BadName(_))
        ));
        assert!(matches!(
            Template::parse("{{}}"),
            Err(TemplateError::BadName(_))
        ));
        assert_eq!(
            render("no placeholders", &[], Escape::HeaderValue).unwrap(),
            "no placeholders"
        );
    }

    #[test]
    fn each_context_escapes_what_would_change_the_request() {
        let hostile = "a b/?#&=@\"\\<x>'é";
        let v = [("v", hostile)];
        assert_eq!(
            render("https://api.test/u/{{v}}?q={{v}}", &v, Escape::UrlComponent).unwrap(),
            "https://api.test/u/a%20b%2F%3F%23%26%3D%40%22%5C%3Cx%3E%27%C3%A9?q=a%20b%2F%3F%23%26%3D%40%22%5C%3Cx%3E%27%C3%A9"
        );
        assert_eq!(
            render(r#"{"k":"{{v}}"}"#, &v, Escape::JsonString).unwrap(),
            r#"{"k":"a b/?#&=@\"\\<x>'é"}"#
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(r#"{"k":"{{v}}"}"#, &v, Escape::JsonString).unwrap())
                .unwrap();
        assert_eq!(json["k"], hostile);
        assert_eq!(
            render("k={{v}}", &v, Escape::FormField).unwrap(),
            "k=a+b%2F%3F%23%26%3D%40%22%5C%3Cx%3E%27%C3%A9"
        );
        assert_eq!(
            render("<k>{{v}}</k>", &v, Escape::XmlText).unwrap(),
            "<k>a b/?#&amp;=@&quot;\\&lt;x&gt;&apos;é</k>"
        );
        assert_eq!(
            render("Bearer {{v}}", &v, Escape::HeaderValue).unwrap(),
            format!("Bearer {hostile}")
        );
    }

    #[test]
    fn line_breaks_never_reach_a_header() {
        for bad in ["x\r\nX-Evil: 1", "x\n", "x\0", "x\u{7f}"] {
            assert_eq!(
                render("Bearer {{v}}", &[("v", bad)], Escape::HeaderValue),
                Err(TemplateError::ControlCharacter("v".into())),
                "{bad:?}"
            );
        }
        assert!(render("{{v}}", &[("v", "a\tb")], Escape::HeaderValue).is_ok());
        assert!(render("{{v}}", &[("v", "a\u{1}")], Escape::XmlText).is_err());
        let json = render("\"{{v}}\"", &[("v", "a\r\n\u{1}")], Escape::JsonString).unwrap();
        assert_eq!(json, r#""a\r\n\u0001""#);
    }

    #[test]
    fn a_missing_value_is_an_error_and_errors_never_show_values() {
        assert_eq!(
            render("{{v}}", &[], Escape::HeaderValue),
            Err(TemplateError::Unknown("v".into()))
        );
        let e = render("{{v}}", &[("v", "canary\n")], Escape::HeaderValue).unwrap_err();
        assert!(!e.to_string().contains("canary"));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            #[test]
            fn url_components_stay_one_component(value in ".*") {
                let url = render("https://api.test/x/{{v}}?q={{v}}", &[("v", &value)], Escape::UrlComponent).unwrap();
                let parsed = url::Url::parse(&url).unwrap();
                prop_assert_eq!(parsed.host_str(), Some("api.test"));
                prop_assert_eq!(parsed.path_segments().unwrap().count(), 2);
                let pairs: Vec<_> = parsed.query_pairs().collect();
                prop_assert_eq!(pairs.len(), 1);
                prop_assert_eq!(pairs[0].1.as_ref(), value.as_str());
                prop_assert!(parsed.fragment().is_none());
            }

            #[test]
            fn json_strings_round_trip(value in ".*") {
                let body = render(r#"{"k":"{{v}}","n":1}"#, &[("v", &value)], Escape::JsonString).unwrap();
                let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                prop_assert_eq!(json["k"].as_str(), Some(value.as_str()));
                prop_assert_eq!(json.as_object().unwrap().len(), 2);
            }

            #[test]
            fn form_fields_round_trip(value in ".*") {
                let body = render("a={{v}}&b=1", &[("v", &value)], Escape::FormField).unwrap();
                let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                prop_assert_eq!(pairs, vec![("a".into(), value.clone()), ("b".into(), "1".into())]);
            }
        }
    }
}
