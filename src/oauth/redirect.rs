//! Redirect URLs must be on the provider's allow-list, so the connect flow can never
//! be used as an open redirect.
use url::Url;

/// Parses an absolute http(s) URL, with no credentials in it.
pub fn absolute(value: &str) -> Option<Url> {
    let url = Url::parse(value).ok()?;
    let ok = matches!(url.scheme(), "https" | "http")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none();
    ok.then_some(url)
}

/// True when `target` has the scheme, host and port of an allowed URL and its path
/// lies under that URL's path. Matching is on parsed URLs, so
/// `https://app.example.com.evil.test` never matches `https://app.example.com`.
pub fn allowed(target: &str, allow_list: &[String]) -> bool {
    let Some(target) = absolute(target) else {
        return false;
    };
    allow_list
        .iter()
        .filter_map(|a| absolute(a))
        .any(|allowed| {
            let path = allowed.path();
            target.scheme() == allowed.scheme()
                && target.host_str() == allowed.host_str()
                && target.port_or_known_default() == allowed.port_or_known_default()
                && (target.path() == path
                    || target
                        .path()
                        .starts_with(&format!("{}/", path.trim_end_matches('/'))))
        })
}

/// `base` with `key=value` appended to its query.
pub fn with_param(base: &str, key: &str, value: &str) -> String {
    match Url::parse(base) {
        Ok(mut url) => {
            url.query_pairs_mut().append_pair(key, value);
            url.into()
        }
        Err(_) => base.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_origins_and_paths_pass() {
        let list = vec!["https://app.example.com/integrations/".to_owned()];
        for good in [
            "https://app.example.com/integrations/",
            "https://app.example.com/integrations/done?x=1",
            "https://app.example.com:443/integrations/a/b",
        ] {
            assert!(allowed(good, &list), "{good}");
        }
        for bad in [
            "https://app.example.com.evil.test/integrations/",
            "http://app.example.com/integrations/",
            "https://app.example.com:8443/integrations/",
            "https://app.example.com/integrationsX",
            "https://app.example.com/other",
            "https://user@app.example.com/integrations/",
            "/integrations/relative",
            "javascript:alert(1)",
            "",
        ] {
            assert!(!allowed(bad, &list), "{bad}");
        }
        assert!(allowed(
            "https://a.test/cb",
            &["https://a.test/cb".to_owned()]
        ));
        assert!(!allowed(
            "https://a.test/cb2",
            &["https://a.test/cb".to_owned()]
        ));
    }

    #[test]
    fn params_are_appended_and_encoded() {
        assert_eq!(
            with_param("https://a.test/x?y=1", "error", "a b"),
            "https://a.test/x?y=1&error=a+b"
        );
    }
}
