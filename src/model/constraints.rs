//! What a service token may touch beyond its scopes: the credentials of some
//! providers, and those whose labels match a selector. Empty constraints leave the
//! token every credential of its tenant.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::CredentialMeta;

/// A token's limits on which credentials it sees. Stored as JSON with the token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Constraints {
    /// Provider slugs; empty: any provider.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// Every pair must be among the credential's labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Constraints {
    /// No limits: the token sees every credential of its tenant.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty() && self.labels.is_empty()
    }

    /// Whether a credential of `provider` with `labels` is within the limits.
    pub fn admit(&self, provider: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.providers.is_empty() || self.providers.iter().any(|p| p == provider))
            && self
                .labels
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value))
    }

    /// Whether the token may see `meta`.
    pub fn admits(&self, meta: &CredentialMeta) -> bool {
        self.admit(&meta.provider, &meta.labels)
    }

    /// The stored form: empty text for no limits, else JSON.
    pub fn to_text(&self) -> String {
        if self.is_empty() {
            String::new()
        } else {
            // Strings only: serialising cannot fail.
            serde_json::to_string(self).unwrap_or_default()
        }
    }

    /// Reads the stored form; `None` when it is not what [`Self::to_text`] writes.
    pub fn from_text(text: &str) -> Option<Self> {
        if text.is_empty() {
            Some(Self::default())
        } else {
            serde_json::from_str(text).ok()
        }
    }

    /// `provider=a,b label:team=billing` for listings; empty for no limits.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.providers.is_empty() {
            parts.push(format!("provider={}", self.providers.join(",")));
        }
        parts.extend(self.labels.iter().map(|(k, v)| format!("label:{k}={v}")));
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn providers_and_labels_must_all_match() {
        let c = Constraints {
            providers: vec!["stripe".into(), "hubspot".into()],
            labels: labels(&[("team", "billing")]),
        };
        assert!(c.admit("stripe", &labels(&[("team", "billing"), ("env", "prod")])));
        assert!(!c.admit("github", &labels(&[("team", "billing")])));
        assert!(!c.admit("stripe", &labels(&[("team", "sales")])));
        assert!(!c.admit("stripe", &labels(&[])));
        assert!(Constraints::default().admit("anything", &labels(&[])));
    }

    #[test]
    fn the_stored_form_round_trips_and_is_empty_without_limits() {
        assert_eq!(Constraints::default().to_text(), "");
        let c = Constraints {
            providers: vec!["stripe".into()],
            labels: labels(&[("team", "billing")]),
        };
        assert_eq!(Constraints::from_text(&c.to_text()), Some(c.clone()));
        assert_eq!(c.describe(), "provider=stripe label:team=billing");
        assert_eq!(Constraints::from_text("{\"bogus\":1}"), None);
    }
}
